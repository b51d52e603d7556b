"""BYOL: a student predicts an EMA teacher's projection of the other view; no negatives."""
from __future__ import annotations

import torch
from torch import nn

from ..heads import mlp
from ..losses.distillation import byol_loss
from ..registry import register
from ..samples import cat
from .base import Batch, Method
from .ema import MomentumSchedule, ema_update, frozen_copy


@register("method", "byol")
class BYOL(Method):
    """Student: backbone -> projector ``mlp([D, hidden_dim, out_dim])`` -> predictor
    ``mlp([out_dim, pred_hidden_dim, out_dim])``. Teacher: an EMA copy of backbone + projector, no
    predictor, no gradient. Loss: ``byol_loss`` of each view's prediction against the teacher's
    projection of the other view, summed over both orders.

    The teacher momentum follows a cosine from `base_momentum` (progress 0) to `final_momentum`
    (progress 1), a pure function of progress. The paper uses 0.996 for its 1000-epoch ImageNet
    runs (a teacher averaging over ~1 / (1 - 0.996) = 250 steps). The default here is 0.99 (~100 steps),
    the usual choice for CIFAR-scale runs of a few thousand steps: a slower teacher lags too far
    behind a student that is still changing quickly. Paper heads: hidden 4096, out 256; the
    default hidden 2048 halves the head cost, which matters next to a small CPU backbone.
    """

    paper = ("Grill, Strub, Altché, Tallec, Richemond, et al. Bootstrap Your Own Latent: A New Approach "
             "to Self-Supervised Learning. NeurIPS 2020, arXiv:2006.07733")
    family = "distillation"
    batch_terms = "local"  # a per-image regression onto the teacher (BatchNorm is the trainer's)
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 256, pred_hidden_dim: int = 2048,
                 base_momentum: float = 0.99, final_momentum: float = 1.0):
        super().__init__(backbone)
        self.momentum_at = MomentumSchedule("byol", base_momentum, final_momentum)
        self.projector = mlp([backbone.dim, hidden_dim, out_dim])
        self.predictor = mlp([out_dim, pred_hidden_dim, out_dim])
        self.embedding_dim = out_dim
        self.teacher = frozen_copy(nn.Sequential(backbone, self.projector))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = cat(batch.views[:2])  # (2B, ...): both views in one pass
        h = self.backbone(x)  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        p1, p2 = self.predictor(z).chunk(2)  # (B, out_dim) each
        with torch.no_grad():
            t1, t2 = self.teacher(x).chunk(2)  # (B, out_dim) each
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return {"loss": loss, "momentum": torch.tensor(self.momentum_at(batch.progress)), "features": h, "embeddings": z}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        ema_update(self.teacher, nn.Sequential(self.backbone, self.projector), self.momentum_at(progress))
