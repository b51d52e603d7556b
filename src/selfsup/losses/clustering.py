"""Clustering losses: online codes from an equal-partition assignment to prototypes (SwAV)."""
from __future__ import annotations

import torch

from .distillation import multi_view_cross_entropy
from .precision import full_precision


@full_precision
@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes for B samples over K prototypes, with every prototype used equally often.

    Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
    NeurIPS 2020, arXiv:2006.09882, Eq. 3 and Algorithm 1 (Sinkhorn-Knopp).

    scores: (B, K) prototype scores (cosines). Q = exp(scores / epsilon), normalized to sum 1, is
    treated as a transport plan whose marginals should be 1/K per prototype and 1/B per sample; each
    iteration rescales the prototype sums to 1/K, then the sample sums to 1/B. Ending on the sample
    step makes each sample's code a distribution: returns (B, K) with rows summing to 1 (the
    prototype marginals are only approximately B/K after few iterations). No gradient.
    """
    from ..distributed import max_over_ranks, sum_over_ranks, world

    B, K = scores.shape
    if world()[1] > 1:  # data parallel: the marginals are over the samples of every rank (SwAV's queue: rank 0's rows)
        B = int(sum_over_ranks(torch.tensor(float(B), device=scores.device)))
    logits = scores / epsilon
    q = torch.exp(logits - max_over_ranks(logits.max()))  # (B, K); a global shift cancels in the first normalization
    q /= sum_over_ranks(q.sum())
    for _ in range(iterations):
        q /= sum_over_ranks(q.sum(dim=0, keepdim=True))  # each prototype's column (over every rank) -> 1
        q /= K                           # ... -> 1/K
        q /= q.sum(dim=1, keepdim=True)  # each sample's row -> 1
        q /= B                           # ... -> 1/B
    return q * B


@full_precision
def swav_loss(scores: torch.Tensor, codes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction: each view's softmax(scores / temperature) predicts the codes of the
    other views. arXiv:2006.09882, Eq. 1-2.

    scores: (V, B, K) prototype scores of all views, the global views first; codes: (T, B, K)
    Sinkhorn codes of the first T views (the global views), without gradient. Returns the mean
    cross-entropy over the T * (V - 1) pairs of different views.
    """
    return multi_view_cross_entropy(scores, codes, temperature)
