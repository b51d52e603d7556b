"""Self-distillation losses: a student predicts a teacher's embedding of another view."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import full_precision


@full_precision
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalized regression: mean over the batch of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z).

    Grill et al. 2020, "Bootstrap Your Own Latent", NeurIPS 2020, arXiv:2006.07733.

    p: (B, D) student predictions; z: (B, D) teacher projections of the other view (the caller
    passes them without gradient). Returns a scalar in [0, 4]; BYOL sums it over both view orders.
    """
    return 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean()
