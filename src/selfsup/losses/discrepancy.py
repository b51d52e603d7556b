"""Discrepancy losses of D-SLA (Kim, Baek, Hwang, "Graph Self-supervised Learning with Accurate
Discrepancy Learning", NeurIPS 2022, arXiv:2202.02989): pure functions of scores, embedding
distances and edit distances. ``methods/dsla.py`` builds the perturbed graphs and calls them.

Shapes: B graphs, each with C candidates: candidate 0 the original, candidates 1..C-1 perturbations
of it; K = C - 1 perturbations.

- ``graph_discrimination`` (the paper's L_GD, eq. 4): softmax cross-entropy over each graph's C
  scores, the original being the class to find;
- ``edit_distance_loss`` (L_edit, eq. 5): the embedding distances d_i to the original, divided by
  the edit distances e_i of the perturbations, should be equal across a graph's perturbations
  (d_i proportional to e_i): the squared difference of every pair i < j;
- ``relative_margin_loss`` (L_margin, eq. 6): every other graph of the batch should be farther from
  the original than its perturbations, by a margin: hinge of alpha + d_i - d'_j.

Each returns the mean over the terms (the authors' code averages; the paper writes sums).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def graph_discrimination(scores: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """L_GD = mean_b -log( exp(s_b0) / sum_c exp(s_bc) ).

    scores: (B, C) discriminator scores, column 0 the original graph. valid: optional (B,) bool,
    the graphs to count (a graph whose perturbations changed nothing cannot be discriminated).
    Returns a scalar (0 when no graph counts)."""
    per_graph = -F.log_softmax(scores.float(), dim=1)[:, 0]  # (B,)
    if valid is None:
        return per_graph.mean()
    weight = valid.to(per_graph.dtype)
    return (per_graph * weight).sum() / weight.sum().clamp_min(1)


def edit_distance_loss(distances: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
    """L_edit = mean over graphs b and pairs i < j of (d_bi / e_bi - d_bj / e_bj)^2.

    distances: (B, K) embedding distances d_bi = ||h(G_b0) - h(G_bi)||_2 of each perturbation to its
    original; edits: (B, K) their graph edit distances e_bi (counts, any dtype). A pair with an
    edit distance of 0 (a perturbation that changed nothing) is left out. Returns a scalar (0 when
    no pair counts, e.g. K < 2)."""
    e = edits.to(distances.dtype)
    ok = e > 0  # (B, K)
    ratio = distances / torch.where(ok, e, torch.ones_like(e))  # (B, K) d / e
    i, j = torch.triu_indices(ratio.shape[1], ratio.shape[1], offset=1, device=ratio.device)  # the pairs i < j
    squared = (ratio[:, i] - ratio[:, j]).pow(2)  # (B, K (K - 1) / 2)
    weight = (ok[:, i] & ok[:, j]).to(squared.dtype)
    return (squared * weight).sum() / weight.sum().clamp_min(1)


def relative_margin_loss(positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """L_margin = mean over b, j != b, i of max(0, margin + d_bi - d'_bj).

    positive: (B, K) distances d_bi of each original to its K perturbations; negative: (B, B)
    distances d'_bj between the originals of graphs b and j (the diagonal is ignored: other graphs
    are the negatives). Returns a scalar (0 for B < 2)."""
    B = positive.shape[0]
    if B < 2:
        return positive.sum() * 0.0
    off = ~torch.eye(B, dtype=torch.bool, device=negative.device)
    neg = negative[off].view(B, B - 1)  # (B, B - 1)
    hinge = (margin + positive[:, None, :] - neg[:, :, None]).clamp_min(0)  # (B, B - 1, K)
    return hinge.mean()


def pairwise_distances(a: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N) Euclidean distances ||a_n - a_m||_2, exactly 0 on the diagonal. Through the
    differences (not the Gram matrix), so that close pairs keep their precision; the gradient of the
    norm at 0 is 0 in torch, so the diagonal is NaN-free. Memory: N * N * D."""
    return (a[:, None, :] - a[None, :, :]).norm(dim=-1)
