"""Barlow Twins: make the cross-correlation of two views' embeddings the identity matrix."""
from __future__ import annotations

import torch
from torch import nn

from ..heads import mlp
from ..losses.redundancy import cross_correlation, off_diagonal_loss, on_diagonal_loss
from ..registry import register
from ..samples import cat
from .base import Batch, Method


@register("method", "barlow_twins")
class BarlowTwins(Method):
    """Recipe: backbone -> projector ``mlp([D, hidden_dim, hidden_dim, out_dim])`` -> each view's
    projections standardized over the batch -> cross-correlation C (out_dim, out_dim) ->
    sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2 (``losses.redundancy.barlow_twins``).

    The diagonal term makes the views agree, the off-diagonal one decorrelates the dimensions,
    which rules out collapse without negatives or a teacher. The paper's projector is 8192-8192-8192
    (wider keeps improving on ImageNet); 2048 is the default here, plenty for small images and
    4x cheaper in the (out_dim, out_dim) correlation. lambda 5e-3 is the paper's value.
    """

    paper = ("Zbontar, Jing, Misra, LeCun, Deny. Barlow Twins: Self-Supervised Learning via Redundancy "
             "Reduction. ICML 2021, arXiv:2103.03230")
    family = "redundancy"
    batch_terms = "gather"  # the cross-correlation over every rank's embeddings
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 2048, lambda_offdiag: float = 5e-3):
        super().__init__(backbone)
        self.lambda_offdiag = lambda_offdiag
        self.projector = mlp([backbone.dim, hidden_dim, hidden_dim, out_dim])
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D): both views in one pass
        z = self.projector(h)  # (2B, out_dim)
        c = cross_correlation(*z.chunk(2))  # (out_dim, out_dim)
        # The terms of losses.redundancy.barlow_twins, kept apart to log them without a second matmul.
        on_diag, off_diag = on_diagonal_loss(c), off_diagonal_loss(c)
        return {"loss": on_diag + self.lambda_offdiag * off_diag, "on_diag": on_diag.detach(), "off_diag": off_diag.detach(),
                "features": h, "embeddings": z}
