"""OBoW's bag-of-visual-words targets and loss (Gidaris, Bursuc, Puy, Komodakis, Pérez, Cord. OBoW:
Online Bag-of-Visual-Words Generation for Self-Supervised Learning. CVPR 2021, arXiv:2012.11552):
pure functions of feature maps, words and predictions; the method (``methods/obow.py``) owns the
vocabulary and the predictors."""
from __future__ import annotations

import torch

from .precision import full_precision


def trim_border(maps: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H - 2, W - 2): drop the outer ring of locations, whose features see the
    convolutions' zero padding (as the official code); maps smaller than 3 x 3 are kept whole."""
    if min(maps.shape[-2:]) < 3:
        return maps
    return maps[:, :, 1:-1, 1:-1]


@full_precision
def squared_distances(maps: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """||u - v_k||^2 for every local feature u of maps (B, C, H, W) and word v_k of words (K, C): (B, K, H, W)."""
    B, C, H, W = maps.shape
    u = maps.reshape(B, C, H * W)  # (B, C, HW)
    dist = u.square().sum(1, keepdim=True) + words.square().sum(1)[None, :, None] - 2 * (words @ u)  # (B, K, HW)
    return dist.clamp_min(0).view(B, -1, H, W)


@full_precision
def bow_from_distances(dist: torch.Tensor, inv_delta: float, mean_min_distance: torch.Tensor) -> torch.Tensor:
    """Soft-assign each location to the words, max-pool over space, L1-normalize: (B, K, H, W) -> (B, K).

    q_k(u) = softmax_k(-inv_delta * d_k(u) / mu): the temperature mu / inv_delta follows mu, the running
    mean of each location's distance to its nearest word, so the assignment stays equally soft as the
    features' scale changes during training.
    """
    codes = torch.softmax(dist * (-inv_delta / mean_min_distance), dim=1)  # (B, K, H, W)
    bow = codes.amax(dim=(2, 3))  # (B, K)
    return bow / bow.sum(dim=1, keepdim=True)


@full_precision
def bow_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicted BoW distributions against targets: logits (V, B, K), targets (B, K)
    -> -sum_k y_k log softmax(logits)_k, averaged over the V views and the B images."""
    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


@torch.no_grad()
def perplexities(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) L1-normalized BoWs -> (mean per-image perplexity, perplexity of the batch's mean BoW):
    exp of the entropy, the number of words effectively in use; a batch value near 1 means collapse."""
    def perplexity(p):
        return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum(-1))
    targets = targets.float()
    return perplexity(targets).mean(), perplexity(targets.mean(0))
