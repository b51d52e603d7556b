"""VICReg: invariance between two views plus variance and covariance regularization of each."""
from __future__ import annotations

import torch
from torch import nn

from ..heads import mlp
from ..losses.redundancy import covariance, invariance, variance
from ..registry import register
from ..samples import cat
from .base import Batch, Method


@register("method", "vicreg")
class VICReg(Method):
    """Recipe: backbone -> expander ``mlp([D, hidden_dim, hidden_dim, out_dim])`` -> the weighted sum
    sim_coeff * invariance + std_coeff * mean variance hinge + cov_coeff * covariance of both views
    (``losses.redundancy.vicreg``).

    The variance hinge keeps every dimension's std near 1 (no collapse), the covariance term
    decorrelates dimensions, the invariance term makes views agree. Coefficients 25/25/1 are the
    paper's; its expander is 8192-8192-8192, the default here is 2048 wide for small images.
    """

    paper = ("Bardes, Ponce, LeCun. VICReg: Variance-Invariance-Covariance Regularization for "
             "Self-Supervised Learning. ICLR 2022, arXiv:2105.04906")
    family = "redundancy"
    batch_terms = "gather"  # variance and covariance over every rank's embeddings
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 2048, sim_coeff: float = 25.0,
                 std_coeff: float = 25.0, cov_coeff: float = 1.0):
        super().__init__(backbone)
        self.sim_coeff, self.std_coeff, self.cov_coeff = sim_coeff, std_coeff, cov_coeff
        self.expander = mlp([backbone.dim, hidden_dim, hidden_dim, out_dim])
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D)
        z = self.expander(h)  # (2B, out_dim)
        z1, z2 = z.chunk(2)  # (B, out_dim) each
        # The terms of losses.redundancy.vicreg, kept apart so each can be logged.
        inv = invariance(z1, z2)
        var = (variance(z1) + variance(z2)) / 2
        cov = covariance(z1) + covariance(z2)
        loss = self.sim_coeff * inv + self.std_coeff * var + self.cov_coeff * cov
        return {"loss": loss, "invariance": inv.detach(), "variance": var.detach(), "covariance": cov.detach(),
                "features": h, "embeddings": z}
