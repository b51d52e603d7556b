"""Contrastive losses: pull two views of an image together, push the other images away."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import full_precision


@full_precision
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR.

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", arXiv:2002.05709.

    z1, z2: (B, D) embeddings of two views; row i of z1 and row i of z2 are the positive pair.
    Each of the 2B embeddings is an anchor whose positive is its partner and whose negatives are
    the other 2B - 2; similarities are cosines divided by `temperature`; returns the mean over
    the 2B anchors of the cross-entropy of picking the positive (a scalar).
    """
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    # An embedding is trivially most similar to itself: remove it from its own softmax.
    logits.fill_diagonal_(float("-inf"))
    positive = torch.arange(2 * B, device=z.device).roll(B)  # anchor i < B pairs with i + B, and back
    return F.cross_entropy(logits, positive)
