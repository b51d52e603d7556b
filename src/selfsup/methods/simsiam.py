"""SimSiam: a Siamese network whose predictor regresses the other view's projection, with stop-gradient."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..heads import mlp
from ..losses.contrastive import simsiam_loss
from ..registry import register
from ..samples import cat
from .base import Batch, Method


@register("method", "simsiam")
class SimSiam(Method):
    """Encoder: backbone -> projector ``mlp([D, hidden_dim, hidden_dim, out_dim], last_norm="bn_noaffine")``
    (3 layers, BatchNorm on every layer including the output); predictor: the bottleneck
    ``mlp([out_dim, pred_hidden_dim, out_dim])`` (BN + ReLU on the hidden layer only). Loss:
    ``simsiam_loss`` = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2, D the negative cosine. No negatives,
    no momentum encoder: the stop-gradient sg is what prevents collapse.

    ``stop_gradient=False`` removes it, the paper's collapsing ablation (Fig. 2): a run meant to show
    collapse, which the logged ``z_std`` makes visible (the std over the batch of the normalized
    projections, averaged over channels: about 1/sqrt(out_dim) when healthy, 0 when collapsed).
    Widths are the paper's ImageNet ones (2048, 2048, bottleneck 512).
    """

    paper = ("Chen, He. Exploring Simple Siamese Representation Learning. CVPR 2021, arXiv:2011.10566")
    family = "distillation"
    batch_terms = "local"  # a per-image cosine (BatchNorm is the trainer's)
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 2048, pred_hidden_dim: int = 512,
                 stop_gradient: bool = True):
        super().__init__(backbone)
        self.stop_gradient = stop_gradient
        # The output Linear feeds a BatchNorm, so its bias would be dead weight.
        self.projector = mlp([backbone.dim, hidden_dim, hidden_dim, out_dim], last_norm="bn_noaffine", bias_last=False)
        self.predictor = mlp([out_dim, pred_hidden_dim, out_dim])
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        p1, p2 = self.predictor(z).chunk(2)  # (B, out_dim) each
        z1, z2 = z.chunk(2)
        if self.stop_gradient:
            z1, z2 = z1.detach(), z2.detach()
        loss = simsiam_loss(p1, p2, z1, z2)
        with torch.no_grad():
            z_std = F.normalize(z.float(), dim=1).std(dim=0).mean()
        return {"loss": loss, "z_std": z_std, "features": h, "embeddings": z}
