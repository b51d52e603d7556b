"""Masked-modeling losses: reconstruct what was hidden from what was seen."""
from __future__ import annotations

import torch

from .precision import full_precision


@full_precision
def masked_patch_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True,
                     eps: float = 1e-6) -> torch.Tensor:
    """MAE's pixel loss: mean squared error over the masked patches only.

    He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, arXiv:2111.06377.

    pred, target: (B, N, P) predicted and true pixels of the N patches; mask: (B, N), 1 where the
    patch was hidden from the encoder, 0 where it was seen. With `norm_pix`, each target patch is
    standardized by its own mean and (unbiased) variance plus `eps`, which the paper found gives
    better representations. Returns the mean over masked patches of the per-patch mean squared error.
    """
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)  # (B, N, 1)
        var = target.var(dim=-1, keepdim=True)  # (B, N, 1)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)  # (B, N)
    mask = mask.to(per_patch.dtype)
    return (per_patch * mask).sum() / mask.sum()
