"""Losses on per-timestep representations of two views of a batch of series.

Shapes: B series, T timesteps, D feature dim; z1, z2 (B, T, D) are the two views' representations
of the same B series at the same T timesteps (TS2Vec's overlap) or any two views (TS-TCC).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import full_precision


def _pair_loss(z: torch.Tensor, n: int) -> torch.Tensor:
    """z (G, 2n, D): in each of the G groups, row i (< n) and row n + i are positives, every other
    row of the group a negative (itself excluded). Mean over groups and rows of -log softmax."""
    sim = z @ z.transpose(1, 2)  # (G, 2n, 2n)
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logp = torch.log_softmax(sim.masked_fill(eye, float("-inf")), dim=-1)  # (G, 2n, 2n), self left out
    i = torch.arange(n, device=z.device)
    return -(logp[:, i, n + i].mean() + logp[:, n + i, i].mean()) / 2


@full_precision
def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's instance-wise contrast: at every timestep t, series i's two views are positives and
    the other 2B - 2 representations at t are negatives (dot products, no temperature, as the paper).
    z1, z2 (B, T, D) -> scalar; 0 for B = 1."""
    B = z1.shape[0]
    if B == 1:
        return z1.sum() * 0
    return _pair_loss(torch.cat([z1, z2]).transpose(0, 1), B)  # (T, 2B, D)


@full_precision
def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """TS2Vec's temporal contrast: in every series, timestep t of the two views are positives and the
    other 2T - 2 timesteps of both views negatives. z1, z2 (B, T, D) -> scalar; 0 for T = 1."""
    T = z1.shape[1]
    if T == 1:
        return z1.sum() * 0
    return _pair_loss(torch.cat([z1, z2], dim=1), T)  # (B, 2T, D)


@full_precision
def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                                  temporal_unit: int = 0) -> torch.Tensor:
    """TS2Vec's hierarchical contrastive loss (Yue et al., AAAI 2022, Algorithm 1): at every scale,
    alpha * instance + (1 - alpha) * temporal contrast, then both views max-pooled over time with
    kernel 2, until one timestep is left (instance contrast only there); the mean over the scales.
    Temporal contrast starts at scale `temporal_unit` (0: the finest). z1, z2 (B, T, D)."""
    loss, scales = z1.new_zeros(()), 0
    while z1.shape[1] > 1:
        if alpha:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if scales >= temporal_unit and alpha != 1:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        scales += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)  # (B, T // 2, D)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    if alpha:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
    return loss / (scales + 1)


@full_precision
def future_prediction_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """TS-TCC's temporal contrast (Eldele et al., IJCAI 2021, eq. 2): for each horizon k, series i's
    prediction W_k c_t should score its own future z_{t+k} above the other series' in the batch.
    predictions, targets (K, B, D) -> -mean over k and i of log softmax_j(z_{t+k, j} . W_k c_{t, i})."""
    from ..distributed import gather, world

    rank, size = world()
    if size > 1:  # data parallel: the other series of every rank are the negatives
        B = targets.shape[1]
        every = gather(targets.transpose(0, 1).contiguous()).transpose(0, 1)  # (K, NB, D)
        scores = torch.einsum("kid,kjd->kij", predictions, every)  # (K, B, NB)
        i = torch.arange(B, device=scores.device)
        return -torch.log_softmax(scores, dim=-1)[:, i, rank * B + i].mean()
    scores = torch.einsum("kid,kjd->kij", predictions, targets)  # (K, B, B): prediction i against future j
    return -torch.log_softmax(scores, dim=-1).diagonal(dim1=1, dim2=2).mean()
