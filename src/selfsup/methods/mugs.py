"""Mugs: instance, local-group and group discrimination on one EMA student/teacher pair, with multi-crop."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..heads import DINOHead, mlp
from ..losses.contrastive import multi_crop_info_nce
from ..losses.distillation import dino_center, mugs_group_loss
from ..registry import register
from ..samples import cat
from ..schedules import linear_warmup
from .base import Batch, Method, encode_views
from .ema import MomentumSchedule, ema_update, frozen_copy
from .queue import FeatureQueue


@torch.no_grad()
def top_k_neighbours(query: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor,
                     k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k rows of ``memory`` most cosine-similar to each row of ``query``, most similar first.

    query: (N, D); memory: (M, D); valid: (M,) bool, the rows written so far. Returns the neighbours
    (N, k, D) as stored (not normalized), ``found`` (N, k) bool (False where fewer than k rows are
    valid; those neighbours are zeros) and their row indices (N, k).
    """
    with torch.autocast(device_type=query.device.type, enabled=False):  # bf16 would reorder near-ties
        sim = F.normalize(query.detach().float(), dim=1) @ F.normalize(memory.float(), dim=1).T  # (N, M)
    index = sim.masked_fill(~valid, float("-inf")).topk(k, dim=1).indices  # (N, k)
    found = valid[index]  # (N, k)
    return memory[index] * found[..., None], found, index


class RelationBlock(nn.Module):
    """A pre-norm transformer block over a short sequence (an image's feature and its neighbours):
    ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, GELU MLP of width ``mlp_ratio * dim``.

    mask: (N, L) bool, False for tokens nobody attends to (neighbours the memory did not have).
    first_only: only position 0's output is computed (keys and values still come from every token):
    the last block of the aggregator needs no more, which saves the MLP on the k neighbours.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        N, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(N, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (N, H, L, D/H) each
        if first_only:
            x, q = x[:, :1], q[:, :, :1]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (N, H, L_q, D/H)
        x = x + self.proj(out.transpose(1, 2).reshape(N, -1, D))
        return x + self.mlp(self.norm2(x))


class LocalGroupAggregator(nn.Module):
    """(N, D) features + (N, k, D) neighbours -> (N, D) local-group features: ``depth`` relation
    blocks over [feature; neighbours], then LayerNorm of position 0 (the image's own token)."""

    def __init__(self, dim: int, depth: int = 1, heads: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList(RelationBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([x[:, None], neighbours.to(x.dtype)], dim=1)  # (N, 1 + k, D)
        mask = torch.cat([found.new_ones(len(x), 1), found], dim=1)  # (N, 1 + k): the image itself always counts
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, mask, first_only=i == len(self.blocks) - 1)
        return self.norm(tokens[:, 0])  # (N, D)


@register("method", "mugs")
class Mugs(Method):
    """Three granular supervisions of the backbone features h, student vs an EMA teacher, multi-crop:

    1. Instance discrimination (IDS): student ``projector -> L2-normalize -> predictor``, teacher
       ``projector``; ``multi_crop_info_nce`` of each student view's prediction against the teacher's
       embedding of the other global view(s), the negatives a queue of earlier teacher embeddings
       (the paper's Eq. 1, MoCo-style, temperature 0.2).
    2. Local-group discrimination (LGDS): each network keeps a memory of its own past features of
       global view 0; a feature's top-k cosine neighbours there (``top_k_neighbours``) and the
       feature itself go through a small transformer (``LocalGroupAggregator``: the paper's relation
       block, 1 layer), whose output at the image's position is the local-group feature. Projector +
       predictor (student) and projector (teacher) as for IDS, then the same InfoNCE with its own
       queue: local groups of crops of one image are pulled together, those of other images pushed apart.
    3. Group discrimination (GDS): DINO's head and loss (``DINOHead``, centered and sharpened teacher
       softmax over ``n_prototypes``, center momentum 0.9), ``mugs_group_loss``.

    Loss: ``(w_i L_IDS + w_lg L_LGDS + w_g L_GDS) / (w_i + w_lg + w_g)``; weights 1, 1, 1 as in the
    authors' code (each term 1/3). Each term averages its global-view and local-view pairs one half
    each (``crop_balanced_mean``), as the authors' code does. The teacher (backbone, the three
    projectors, the aggregator) follows the student by a fused EMA, momentum cosine from
    ``base_momentum`` to 1; the teacher sees the global views, the student every view, each
    resolution in one backbone pass. The two memories, the two queues and the center are buffers
    (checkpointed); memories and queues take this step's entries after the optimizer step.

    Defaults and deviations (the paper trains ViTs on ImageNet; the defaults here suit convnet6 with
    128-d features, batches of 256 and a few hundred to a few thousand steps on small images):
    heads ``hidden_dim`` 512 (paper 2048, predictor 4096), embeddings 128 (256), 1024 prototypes
    (65536), queues and memories of 4096 (65536; 16 batches, so an image's own entry from its last
    epoch is rarely there); teacher momentum 0.99 (0.996): a slower teacher lags a fast-changing
    student in short runs. The group teacher temperature is 0.04, constant, as in the authors' code.
    The aggregator works on pooled backbone features, not ViT tokens, so it fits any backbone; it has
    its own final LayerNorm (the authors share the ViT's) and ``relation_heads`` 4. The memories start
    empty and neighbours not yet written are masked out of the attention (the authors start from
    random vectors, which would be aggregated as if they were images). Teacher embeddings enter the
    queues after the step (the authors push the first global view's before scoring the second, so
    an image's own other view is among its negatives). The authors' teacher also sees separately
    drawn, weakly augmented global crops and the student strong ones (RandAugment) half the time;
    here both see the same global views, as in DINO. ``use_bn_in_head`` puts BatchNorm in the
    projectors and the group head (off in the paper for ViTs; it can help small convnets, see ``dino``).
    """

    paper = ("Zhou, Zhou, Si, Yu, Ng, Yan. Mugs: A Multi-Granular Self-Supervised Learning Framework. "
             "arXiv:2203.14415, 2022")
    family = "distillation"
    batch_terms = "gather"  # queues, memories and the center take every rank's samples
    aux_outputs = ("features",)  # the heads' outputs are not one embedding; auxiliaries get the features
    views = {"n_global": 2, "n_local": 6}
    view_limits = {"n_global": (2, 2), "n_local": (0, None)}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128, pred_hidden_dim: int = 512,
                 bottleneck_dim: int = 128, n_prototypes: int = 1024, queue_size: int = 4096, memory_size: int = 4096,
                 top_k: int = 8, relation_depth: int = 1, relation_heads: int = 4,
                 instance_temperature: float = 0.2, local_group_temperature: float = 0.2,
                 student_temperature: float = 0.1, warmup_teacher_temperature: float = 0.04,
                 teacher_temperature: float = 0.04, teacher_temperature_warmup: float = 0.0,
                 center_momentum: float = 0.9, instance_weight: float = 1.0, local_group_weight: float = 1.0,
                 group_weight: float = 1.0, base_momentum: float = 0.99, final_momentum: float = 1.0,
                 freeze_last_layer: float = 0.01, norm_last_layer: bool = True, use_bn_in_head: bool = False):
        super().__init__(backbone)
        D = backbone.dim
        temperatures = (instance_temperature, local_group_temperature, student_temperature,
                        warmup_teacher_temperature, teacher_temperature)
        if min(temperatures) <= 0:
            raise ConfigError(f"mugs temperatures must be positive, got {temperatures}.",
                              "use e.g. 0.2 for the InfoNCE terms, 0.1 (student) and 0.04 (teacher) for the group term.")
        weights = (instance_weight, local_group_weight, group_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(f"mugs loss weights must be >= 0 with a positive sum, got {weights}.",
                              "use e.g. instance_weight=local_group_weight=group_weight=1.")
        if not 0.0 <= center_momentum < 1.0 or not 0.0 <= teacher_temperature_warmup <= 1.0:
            raise ConfigError(f"mugs needs center_momentum in [0, 1) and teacher_temperature_warmup in [0, 1], got "
                              f"{center_momentum}, {teacher_temperature_warmup}.", "use e.g. 0.9 and 0.0.")
        if not 1 <= top_k <= memory_size:
            raise ConfigError(f"mugs needs 1 <= top_k <= memory_size, got top_k={top_k}, memory_size={memory_size}.",
                              "use e.g. top_k=8 with memory_size=4096.")
        if relation_depth < 1 or relation_heads < 1 or D % relation_heads:
            raise ConfigError(f"mugs needs relation_depth >= 1 and relation_heads dividing the backbone's {D}-d "
                              f"features, got depth {relation_depth}, heads {relation_heads}.",
                              "use e.g. relation_depth=1, relation_heads=4.")
        self.top_k = top_k
        self.instance_temperature, self.local_group_temperature = instance_temperature, local_group_temperature
        self.student_temperature = student_temperature
        self.warmup_teacher_temperature, self.teacher_temperature = warmup_teacher_temperature, teacher_temperature
        self.teacher_temperature_warmup, self.center_momentum = teacher_temperature_warmup, center_momentum
        self.weights = weights
        self.momentum_at = MomentumSchedule("mugs", base_momentum, final_momentum)
        self.freeze_last_layer = freeze_last_layer
        self.find_unused_parameters = freeze_last_layer > 0  # the frozen last layer gets no gradient (under DDP)
        norm = "bn" if use_bn_in_head else None
        self.instance_projector = mlp([D, hidden_dim, hidden_dim, out_dim], norm=norm, act=nn.GELU)
        self.instance_predictor = mlp([out_dim, pred_hidden_dim, out_dim], norm=None, act=nn.GELU)
        self.relation = LocalGroupAggregator(D, relation_depth, relation_heads)
        self.local_group_projector = mlp([D, hidden_dim, hidden_dim, out_dim], norm=norm, act=nn.GELU)
        self.local_group_predictor = mlp([out_dim, pred_hidden_dim, out_dim], norm=None, act=nn.GELU)
        self.group_head = DINOHead(D, n_prototypes, hidden_dim, bottleneck_dim, norm_last_layer, use_bn_in_head)
        self.teacher = frozen_copy(self._student())
        self.register_buffer("center", torch.zeros(1, n_prototypes))  # (1, K)
        self.instance_queue = FeatureQueue(queue_size, out_dim, filled=True)  # teacher instance embeddings
        self.local_group_queue = FeatureQueue(queue_size, out_dim, filled=True)  # teacher local-group embeddings
        self.student_memory = FeatureQueue(memory_size, D, filled=False)  # student features, for neighbours
        self.teacher_memory = FeatureQueue(memory_size, D, filled=False)  # teacher features, for neighbours
        self._pending: tuple[torch.Tensor, ...] | None = None  # this step's entries, pushed after the optimizer step

    def _student(self) -> nn.ModuleDict:
        """The parts the teacher mirrors, in the teacher's order (a view, not a registered module)."""
        return nn.ModuleDict({"backbone": self.backbone, "instance_projector": self.instance_projector,
                              "relation": self.relation, "local_group_projector": self.local_group_projector,
                              "group_head": self.group_head})

    def teacher_temperature_at(self, progress: float) -> float:
        """Linear from the warmup temperature (progress 0) to the final one (progress `teacher_temperature_warmup`)."""
        return linear_warmup(progress, self.warmup_teacher_temperature, self.teacher_temperature,
                             self.teacher_temperature_warmup)

    def local_group(self, net: nn.ModuleDict, h: torch.Tensor, memory: FeatureQueue) -> torch.Tensor:
        """(N, D) features -> (N, D) local-group features: aggregated with their top-k neighbours in `memory`."""
        neighbours, found, _ = top_k_neighbours(h, memory.entries, memory.valid(), self.top_k)  # (N, k, D), (N, k)
        return net["relation"](h, neighbours, found)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        n_global, B, V = batch.n_global, batch.size, len(batch.views)
        if n_global * B > self.instance_queue.size:
            raise ConfigError(f"mugs enqueues {n_global * B} teacher embeddings a step, more than queue_size={self.instance_queue.size}.",
                              f"set method.queue_size to at least {n_global * B} (a multiple of it, e.g. {16 * n_global * B}).")
        globals_ = cat(batch.views[:n_global])  # (2B, ...)
        h_global, h = encode_views(self.backbone, batch)  # (2B, D), (V B, D): one backbone pass per resolution
        student = self._student()
        instance = self.instance_predictor(F.normalize(self.instance_projector(h), dim=-1))  # (V B, out_dim)
        local_group = self.local_group_projector(self.local_group(student, h, self.student_memory))
        local_group = self.local_group_predictor(F.normalize(local_group, dim=-1))  # (V B, out_dim)
        group = self.group_head(h, freeze_last_layer=batch.progress < self.freeze_last_layer)  # (V B, K)
        with torch.no_grad():
            t = self.teacher
            ht = t["backbone"](globals_)  # (2B, D)
            t_instance = F.normalize(t["instance_projector"](ht), dim=-1)  # (2B, out_dim)
            t_local_group = F.normalize(t["local_group_projector"](self.local_group(t, ht, self.teacher_memory)), dim=-1)
            t_group = t["group_head"](ht).view(n_global, B, -1)  # (2, B, K)
        temperature = self.teacher_temperature_at(batch.progress)
        terms = (multi_crop_info_nce(instance.view(V, B, -1), t_instance.view(n_global, B, -1),
                                     self.instance_queue.entries, self.instance_temperature),
                 multi_crop_info_nce(local_group.view(V, B, -1), t_local_group.view(n_global, B, -1),
                                     self.local_group_queue.entries, self.local_group_temperature),
                 mugs_group_loss(group.view(V, B, -1), t_group, self.center, self.student_temperature, temperature))
        loss = sum(w * term for w, term in zip(self.weights, terms)) / sum(self.weights)
        if self.training:
            self.center.copy_(dino_center(self.center, t_group, self.center_momentum))
            # The queues hold the negatives of this step's graph: they change only after the backward pass.
            self._pending = (h[:B].detach(), ht[:B], t_instance, t_local_group)
        return {"loss": loss, "instance_loss": terms[0].detach(), "local_group_loss": terms[1].detach(),
                "group_loss": terms[2].detach(), "teacher_temperature": torch.tensor(temperature), "features": h_global}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        ema_update(self.teacher, self._student(), self.momentum_at(progress))
        if self._pending is not None:
            student_features, teacher_features, instance, local_group = self._pending
            self.student_memory.push(student_features)  # global view 0 only, as the authors do
            self.teacher_memory.push(teacher_features)
            for queue, rows in ((self.instance_queue, instance), (self.local_group_queue, local_group)):
                for view in rows.chunk(2):  # both global views, view by view: every rank's view 0, then view 1
                    queue.push(view)
            self._pending = None
