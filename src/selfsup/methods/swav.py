"""SwAV: predict one view's cluster codes (Sinkhorn-Knopp over prototypes) from the other views, with multi-crop."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather, world
from ..errors import ConfigError
from ..heads import mlp
from ..losses.clustering import sinkhorn, swav_loss
from ..registry import register
from .base import Batch, Method, encode_views


@register("method", "swav")
class SwAV(Method):
    """Backbone -> projector ``mlp([D, hidden_dim, out_dim])`` -> L2-normalize -> prototypes (a Linear
    without bias to K = ``n_prototypes`` unit vectors, renormalized after every optimizer step).
    The codes of each global view come from ``sinkhorn`` on its prototype scores (no gradient: an
    equal-partition soft assignment, epsilon 0.05, 3 iterations); ``swav_loss`` makes every other view
    predict them, softmax at temperature 0.1.

    Multi-crop: 2 global views and ``views.n_local`` local views (6 by default; set it in the config),
    one backbone pass per resolution, one projector pass for all views (as the paper's code).
    Queue: with ``queue_length`` > 0, the projections of the last ``queue_length`` samples of each
    global view are kept (a buffer in the checkpoint) and, once full and after ``queue_start`` of
    training, their scores join the current batch's in Sinkhorn, so the equal partition holds over
    more samples than a small batch (the authors' small-batch recipe: 3840 for batches of 256, from
    epoch 15); only the current batch's codes are used. Prototypes get no gradient during the first
    ``freeze_prototypes`` of training (the paper: the first epoch; here 1% of the run).

    Paper defaults: projector [D, 2048, 128], 3000 prototypes, temperature 0.1, epsilon 0.05, 3
    Sinkhorn iterations, 2x224 + 6x96 crops. The queue defaults to 3840 as recommended for small
    batches; ``queue_start`` 0.15 places it after the first 15 of 100 epochs. Its cost: Sinkhorn over
    (3840 + B) x 3000 scores per global view, about 0.14 s per view on one CPU core.
    """

    paper = ("Caron, Misra, Mairal, Goyal, Bojanowski, Joulin. Unsupervised Learning of Visual Features by "
             "Contrasting Cluster Assignments. NeurIPS 2020, arXiv:2006.09882")
    family = "clustering"
    batch_terms = "gather"  # Sinkhorn's marginals and the queue over every rank
    views = {"n_global": 2, "n_local": 6}
    view_limits = {"n_global": (2, None), "n_local": (0, None)}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 128, n_prototypes: int = 3000,
                 temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 queue_length: int = 3840, queue_start: float = 0.15, freeze_prototypes: float = 0.01):
        super().__init__(backbone)
        if temperature <= 0 or epsilon <= 0 or sinkhorn_iterations < 1:
            raise ConfigError(f"swav needs temperature > 0, epsilon > 0 and sinkhorn_iterations >= 1, got "
                              f"{temperature}, {epsilon}, {sinkhorn_iterations}.", "use 0.1, 0.05 and 3.")
        if queue_length < 0 or not 0.0 <= queue_start <= 1.0:
            raise ConfigError(f"swav needs queue_length >= 0 and queue_start in [0, 1], got {queue_length}, {queue_start}.",
                              "use e.g. queue_length=3840, queue_start=0.15, or queue_length=0 for no queue.")
        self.temperature, self.epsilon, self.sinkhorn_iterations = temperature, epsilon, sinkhorn_iterations
        self.queue_start, self.freeze_prototypes = queue_start, freeze_prototypes
        self.find_unused_parameters = freeze_prototypes > 0  # the frozen prototypes get no gradient (under DDP)
        self.projector = mlp([backbone.dim, hidden_dim, out_dim])
        self.prototypes = nn.Linear(out_dim, n_prototypes, bias=False)  # weight (K, out_dim)
        self.embedding_dim = out_dim
        self.normalize_prototypes()
        n_global = self.views["n_global"]
        # (2, Q, out_dim): past projections of each global view, newest first; rows of zeros are not filled yet.
        self.register_buffer("queue", torch.zeros(n_global, queue_length, out_dim))
        self._queue_full = False  # seen full on the host (queue_in_use)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def queue_in_use(self, progress: float) -> bool:
        """Whether the queue joins Sinkhorn: it exists, is full (a projection is a unit vector, never zero)
        and `queue_start` of training has passed."""
        if self.queue.shape[1] == 0 or progress < self.queue_start:
            return False
        if not self._queue_full:  # read on the host until it is full; a full queue stays full (every push adds)
            self._queue_full = bool(self.queue[:, -1].any())
        return self._queue_full

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        n_global, B, V = batch.n_global, batch.size, len(batch.views)
        h, feats = encode_views(self.backbone, batch)  # (n_global B, D), (V B, D): one pass per resolution
        z = self.projector(feats)  # (V B, out_dim)
        w = self.prototypes.weight
        if batch.progress < self.freeze_prototypes:
            w = w.detach()
        # Cosines divided by epsilon = 0.05 and temperature 0.1 need float32: bf16 would put errors of
        # ~0.08 into Sinkhorn's logits. The prototype layer and the codes are small next to the backbone.
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=-1)
            scores = (z @ w.T).view(V, B, -1)  # (V, B, K)
            with torch.no_grad():
                use_queue = self.queue_in_use(batch.progress)
                codes = []
                for i in range(n_global):
                    s = scores[i].detach()  # (B, K)
                    if use_queue and world()[0] == 0:  # data parallel: the (shared) queue counts once
                        s = torch.cat([self.queue[i] @ w.detach().T, s])  # (Q + B, K)
                    codes.append(sinkhorn(s, self.epsilon, self.sinkhorn_iterations)[-B:])  # (B, K)
                if self.training and self.queue.shape[1] > 0:
                    Q = self.queue.shape[1]
                    z_global = gather(z[:n_global * B].detach().view(n_global, B, -1).transpose(0, 1))
                    z_global = z_global.transpose(0, 1)  # (2, N B, out_dim): every rank's, in the global order
                    self.queue.copy_(torch.cat([z_global, self.queue], dim=1)[:, :Q])  # newest first
        loss = swav_loss(scores, torch.stack(codes), self.temperature)
        return {"loss": loss, "queue_in_use": torch.tensor(float(use_queue)), "features": feats[0],
                "embeddings": z[:n_global * B]}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        self.normalize_prototypes()

    def changed_at_step_end(self) -> list[torch.Tensor]:
        return [self.prototypes.weight]
