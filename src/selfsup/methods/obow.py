"""OBoW: from perturbed crops, a student predicts the bag of visual words an EMA teacher sees in the whole image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather, sum_over_ranks, world
from ..errors import ConfigError
from ..heads import mlp
from ..losses.bow import bow_from_distances, bow_loss, perplexities, squared_distances, trim_border
from ..registry import register
from .base import Batch, Method, TrainData, encode_views
from .ema import MomentumSchedule, ema_update, frozen_copy


# ---------------------------------------------------------------- BoW targets (teacher side)

class Vocabulary(nn.Module):
    """K visual words of one feature level, a queue of teacher local features (buffers, in the checkpoint).

    ``words`` (K, C) starts as non-negative random vectors (the features it will hold come after a
    ReLU), newest words first; ``mean_min_distance`` is the running mean of the squared distance of a
    local feature to its nearest word, starting at 0.5 as in the official code.
    """

    def __init__(self, num_words: int, dim: int, samples_per_image: int = 1, distance_momentum: float = 0.99):
        super().__init__()
        self.samples_per_image, self.distance_momentum = samples_per_image, distance_momentum
        self.register_buffer("words", torch.randn(num_words, dim).clamp_min(0))  # (K, C)
        self.register_buffer("mean_min_distance", torch.tensor(0.5))  # the official code's start

    @torch.no_grad()
    def encode(self, maps: torch.Tensor, inv_delta: float, update: bool) -> torch.Tensor:
        """Teacher maps (B, C, H, W) -> BoW targets (B, K). With ``update`` (training), first moves
        ``mean_min_distance`` and, after the targets are computed, pushes new words (``push``)."""
        maps = trim_border(maps.float())
        dist = squared_distances(maps, self.words)  # (B, K, H, W)
        if update:
            m = self.distance_momentum
            nearest = dist.amin(dim=1)  # (B, H, W); data parallel: the mean over every rank's locations
            mean = sum_over_ranks(nearest.sum()) / (nearest.numel() * world()[1])
            self.mean_min_distance.mul_(m).add_((1 - m) * mean)
        bow = bow_from_distances(dist, inv_delta, self.mean_min_distance)
        if update:
            self.push(self.sample(maps))
        return bow

    @torch.no_grad()
    def sample(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * samples_per_image, C), image-major: the map averaged over 3 x 3
        neighbourhoods (no padding; smaller maps over their whole size), read at random locations."""
        B, C, H, W = maps.shape
        local = F.avg_pool2d(maps, kernel_size=(min(3, H), min(3, W)), stride=1).flatten(2)  # (B, C, L)
        where = torch.randint(local.shape[2], (B, self.samples_per_image), device=maps.device)  # (B, s)
        picked = local.gather(2, where[:, None, :].expand(B, C, -1))  # (B, C, s)
        return picked.transpose(1, 2).reshape(-1, C)

    @torch.no_grad()
    def push(self, new: torch.Tensor) -> None:
        """Queue update: the rows of new (n, C) become the newest words, the n oldest are dropped."""
        K = self.words.shape[0]
        new = gather(new)  # data parallel: every rank's new words, rank-major, so the vocabularies stay equal
        self.words.copy_(torch.cat([new.to(self.words.dtype)[:K], self.words])[:K])


# ---------------------------------------------------------------- BoW prediction (student side)

class BoWPredictor(nn.Module):
    """The dynamic BoW-prediction head of one level: weights generated from the current vocabulary.

    w_k = G(v_k / |v_k|) / |G(.)|, G = ``mlp([C, hidden, D])`` (Linear, BatchNorm over the K words,
    ReLU, Linear); logits_k = kappa * <w_k, z> for the student's pooled features z (B, D), which are not
    normalized (as the official code): unit weights with a fixed scale kappa (``learn_kappa`` makes it
    a parameter).
    """

    def __init__(self, word_dim: int, feature_dim: int, hidden_dim: int, kappa: float, learn_kappa: bool = False):
        super().__init__()
        self.generator = mlp([word_dim, hidden_dim, feature_dim])
        self.kappa = nn.Parameter(torch.tensor(float(kappa)), requires_grad=learn_kappa)

    def weights(self, words: torch.Tensor) -> torch.Tensor:
        """(K, C) -> (K, D) unit-norm classifier weights, float32."""
        w = self.generator(F.normalize(words, dim=1))
        return F.normalize(w.float(), dim=1)

    def forward(self, features: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """features (N, D), words (K, C) -> logits (N, K), float32: kappa times features of norm 2-5 (convnet6)
        or tens (ResNets) makes logits of tens, where bf16's 3 significant digits would blur the softmax."""
        w = self.weights(words)  # (K, D)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.kappa * (features.float() @ w.T)


# ---------------------------------------------------------------- the method

@register("method", "obow")
class OBoW(Method):
    """Teacher: an EMA copy of the backbone (momentum cosine from ``base_momentum`` 0.99 to 1, the
    paper's). It sees the un-augmented image ``Batch.samples`` (normalized with the dataset's mean and
    std, flipped with probability 1/2) and, for each of the last ``levels`` stages of
    ``backbone.forward_maps`` (1: the last; 2: also the penultimate, the paper's full recipe), builds a
    bag of visual words:

    - d_k(u) = ||phi(u) - v_k||^2 for every local feature phi(u) (border ring dropped) and word v_k;
    - q_k(u) = softmax_k(-d_k(u) / delta), delta = mu / ``inv_delta``, mu the running mean (momentum
      0.99) of min_k d_k(u), so the temperature follows the features' scale;
    - y_k = max_u q_k(u), then y / ||y||_1.

    Vocabulary (``Vocabulary``, buffers): a queue of ``num_words`` teacher local features per level;
    each step every image adds ``samples_per_image`` features of its 3 x 3-averaged map at random
    locations, and the oldest words leave. Student: the backbone on every perturbed view (2 global and
    ``views.n_local`` local ones, one pass per resolution), pooled features z; the dynamic head
    (``BoWPredictor``) turns the vocabulary into unit weights w_k = G(v_k) and predicts
    softmax_k(kappa <w_k, z>). Loss: cross-entropy -sum_k y_k log p_k averaged over the global views,
    plus the same averaged over the local views (the official code's sum over crop types, so the loss
    is about twice one cross-entropy; ``global_loss`` and ``local_loss`` log the two terms), averaged
    over levels. The student's prediction and the teacher's targets both use the vocabulary before
    this step's push. ``bow_perplexity`` (of the batch's mean target) and ``image_perplexity`` (mean
    per image) count the words in use; a batch perplexity near 1 would mean collapsed targets.

    Differences from the paper (ImageNet, ResNet-50, batch 256, 200 epochs), for small images, small
    batches and short runs: ``num_words`` 2048 instead of 8192 (a 28 px image has 25 locations in its
    last map, and the queue then refreshes every 2048 / B steps, not 32); ``kappa`` 5 and
    ``inv_delta`` 10, the authors' ResNet-18 values (ResNet-50: 8 and 15), as the small convnets here
    have 128-512-d features; ``levels`` 1, as the authors' "vanilla" recipe (the penultimate map is 4x
    larger and costs 4x the distances). mu starts at 0.5 as in the official code, below the squared
    distances of these features (5-25 for convnet6 on Fashion-MNIST), so the first ~100 steps have
    sharper, nearly hard assignments while it catches up (starting it at the first batch's value was
    tried: that batch is measured against the random initial words, so mu then stays too large and
    the targets too flat for several hundred steps). The teacher's image is the dataset's stored image
    (the paper: a 224 px center crop with flip; the student 2 x 160 px crops + 5 x 96 px patches); the
    student's views come from the multicrop preset (2 global views + ``n_local`` = 5 local ones, the
    paper's patch count). The queue keeps its newest words first (a shift, not the official code's
    write pointer), so any batch size works. Outside the trainer (``prepare`` not called), the teacher
    normalizes with the batch's own mean and std.
    """

    requires = ("pixels", "feature_maps")  # flipped clean images through the teacher's stages (see the docstring)
    paper = ("Gidaris, Bursuc, Puy, Komodakis, Cord, Pérez. OBoW: Online Bag-of-Visual-Words Generation for "
             "Self-Supervised Learning. CVPR 2021, arXiv:2012.11552")
    family = "distillation"
    batch_terms = "gather"  # the vocabulary and its distance scale take every rank's features
    aux_outputs = ("features",)  # the head outputs word scores, not an embedding
    views = {"n_global": 2, "n_local": 5}
    view_limits = {"n_global": (2, 2), "n_local": (0, None)}

    def __init__(self, backbone: nn.Module, num_words: int = 2048, levels: int = 1, inv_delta: float = 10.0,
                 kappa: float = 5.0, learn_kappa: bool = False, hidden_dim: int | None = None,
                 samples_per_image: int = 1, distance_momentum: float = 0.99,
                 base_momentum: float = 0.99, final_momentum: float = 1.0):
        super().__init__(backbone)
        if not callable(getattr(backbone, "forward_maps", None)) or not getattr(backbone, "map_dims", None):
            raise ConfigError(f"obow needs a convolutional backbone with forward_maps, got {type(backbone).__name__}.",
                              "use a convnet or resnet backbone (e.g. backbone.name=convnet6).")
        n_maps = len(backbone.map_dims)
        if not 1 <= levels <= n_maps:
            raise ConfigError(f"obow levels={levels} must be between 1 and the backbone's {n_maps} stages.",
                              "use levels=1 (last stage) or levels=2 (last two, the paper's full recipe).")
        if num_words < 2 or samples_per_image < 1:  # the weight generator's BatchNorm runs over the words
            raise ConfigError(f"obow needs num_words >= 2 and samples_per_image >= 1, got {num_words}, "
                              f"{samples_per_image}.", "use e.g. num_words=2048, samples_per_image=1.")
        if inv_delta <= 0 or kappa <= 0 or (hidden_dim is not None and hidden_dim < 1):
            raise ConfigError(f"obow needs inv_delta > 0, kappa > 0 and hidden_dim >= 1, got {inv_delta}, {kappa}, "
                              f"{hidden_dim}.", "use e.g. inv_delta=10, kappa=5, hidden_dim=null (twice the feature width).")
        if not 0.0 <= distance_momentum < 1.0:
            raise ConfigError(f"obow needs distance_momentum in [0, 1), got {distance_momentum}.",
                              "use e.g. distance_momentum=0.99.")
        self.levels, self.inv_delta = levels, inv_delta
        self.momentum_at = MomentumSchedule("obow", base_momentum, final_momentum)
        dims = backbone.map_dims[-levels:]
        hidden = hidden_dim or 2 * backbone.dim
        self.vocabularies = nn.ModuleList(Vocabulary(num_words, c, samples_per_image, distance_momentum) for c in dims)
        self.predictors = nn.ModuleList(BoWPredictor(c, backbone.dim, hidden, kappa, learn_kappa) for c in dims)
        self.teacher = frozen_copy(backbone)
        self._pixel_stats: tuple[torch.Tensor, torch.Tensor] | None = None  # (1, C, 1, 1) mean, std; set by prepare

    @torch.no_grad()
    def prepare(self, data: TrainData) -> None:
        self._pixel_stats = (torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1))

    @torch.no_grad()
    def teacher_input(self, batch: Batch) -> torch.Tensor:
        """The un-augmented images, normalized, each flipped horizontally with probability 1/2: (B, C, H, W)."""
        if batch.samples is None:
            raise ConfigError("obow's teacher reads the un-augmented images, but Batch.samples is None.",
                              "pass the uint8 images of the batch in Batch.samples (the trainer does).")
        x = batch.samples.float() / 255  # (B, C, H, W)
        if self._pixel_stats is not None:
            mean, std = (t.to(x.device) for t in self._pixel_stats)
        else:
            mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
        x = (x - mean) / std
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        B, n_global = batch.size, batch.n_global
        h, all_feats = encode_views(self.backbone, batch)  # (2B, D), (V B, D): one backbone pass per resolution
        feats = [h] if len(batch.views) == n_global else [h, all_feats[n_global * B:]]  # global, then local
        words = [v.words.clone() for v in self.vocabularies]  # this step's vocabulary; the push below must not touch it
        with torch.no_grad():
            maps = self.teacher.forward_maps(self.teacher_input(batch))[-self.levels:]
            targets = [v.encode(m, self.inv_delta, update=self.training) for v, m in zip(self.vocabularies, maps)]
        per_group = torch.stack([  # (levels, groups): global views, then local views
            torch.stack([bow_loss(predictor(f, w).view(-1, B, w.shape[0]), y) for f in feats])
            for predictor, w, y in zip(self.predictors, words, targets)])
        loss = per_group.sum(1).mean()
        image_perplexity, batch_perplexity = perplexities(targets[-1])
        logs = {"global_loss": per_group[:, 0].mean().detach(), "bow_perplexity": batch_perplexity,
                "image_perplexity": image_perplexity}
        if len(feats) > 1:
            logs["local_loss"] = per_group[:, 1].mean().detach()
        return {"loss": loss, **logs, "features": feats[0]}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        ema_update(self.teacher, self.backbone, self.momentum_at(progress))
