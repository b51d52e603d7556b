"""Differentiable sorting networks and GroCo, the contrastive loss built on them.

A sorting network is a fixed list of layers of comparators (i, j), i < j: a comparator puts the
smaller of its two wires on wire i and the larger on wire j. Its differentiable relaxation
(Petersen, Borgelt, Kuehne, Deussen, "Differentiable Sorting Networks for Scalable Sorting and
Ranking Supervision", ICML 2021, arXiv:2105.04019) replaces the hard swap by a mix with weight
alpha = f(steepness * (b - a)), f a sigmoid-shaped CDF:

    min' = alpha a + (1 - alpha) b,      max' = (1 - alpha) a + alpha b,

and tracks, next to the values, a relaxed permutation matrix P (each comparator mixes two of its
columns the same way). P is doubly stochastic; for a steep f it is the hard sorting permutation.
"Monotonic Differentiable Sorting Networks" (Petersen et al., ICLR 2022, arXiv:2203.09630) shows
that f with tails decaying like 1/x (Cauchy, "optimal") keep the relaxed sort monotonic, so its
gradients never have the wrong sign; the logistic sigmoid does not.

Shape legend: N rows sorted independently, n wires (elements per row), V views, B images, D dim.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .precision import full_precision

NETWORKS = ("odd_even", "bitonic")
RELAXATIONS = ("logistic", "logistic_phi", "cauchy", "optimal")

Network = list[list[tuple[int, int]]]


# ---------------------------------------------------------------- networks: layers of comparators

def odd_even_network(n: int) -> Network:
    """Odd-even transposition sort: n layers, alternately comparing wires (0,1), (2,3), ... and (1,2), (3,4), ...

    n layers suffice for any input; the first layer starts at wire 0, as in the reference
    implementation (github.com/Felix-Petersen/diffsort).
    """
    return [[(i, i + 1) for i in range(layer % 2, n - 1, 2)] for layer in range(n)]


def bitonic_network(n: int) -> Network:
    """Bitonic sort (Batcher 1968) in the form whose comparators all put the minimum on the lower wire.

    Built for N = 2^ceil(log2 n) wires: for each block size 2^(s+1), a "flip" layer compares wire
    i with its mirror in the block, then half-cleaners compare i with i + m for m = 2^(s-1) ... 1;
    log2(N) (log2(N) + 1) / 2 layers. For n < N the missing wires n .. N-1 are taken to hold +inf:
    every comparator touching one of them (it is always its upper wire) leaves both wires where
    they are, so it is dropped. (The reference implementation places the padding at the bottom and
    flips comparator directions instead; this variant needs no special cases.)
    """
    size = 1 << max(n - 1, 0).bit_length()  # N, the next power of two >= n
    layers: Network = []
    block = 2
    while block <= size:
        flip = [(start + i, start + block - 1 - i) for start in range(0, size, block) for i in range(block // 2)]
        layers.append(flip)
        m = block // 4
        while m >= 1:
            layers.append([(start + i, start + i + m) for start in range(0, size, 2 * m) for i in range(m)])
            m //= 2
        block *= 2
    return [[(a, b) for a, b in layer if b < n] for layer in layers]


def sorting_network(kind: str, n: int) -> Network:
    """The comparator layers of an odd-even ("odd_even") or bitonic ("bitonic") network on n wires."""
    if kind == "odd_even":
        return odd_even_network(n)
    if kind == "bitonic":
        return bitonic_network(n)
    raise ValueError(f"unknown sorting network {kind!r}; expected one of {NETWORKS}")


Layer = tuple[torch.Tensor | None, torch.Tensor | None, int, int]


@functools.lru_cache(maxsize=64)
def _plan(kind: str, n: int, device: torch.device) -> tuple[Layer, ...]:
    """Each non-empty layer as (order, inverse, s, m): after reordering the wires by ``order`` its m
    comparators are the adjacent pairs (s, s+1), (s+2, s+3), ...; ``inverse`` puts the wires back.
    Odd-even layers are adjacent pairs already (order None: plain slicing, no gathers)."""
    plan = []
    for layer in sorting_network(kind, n):
        if not layer:
            continue
        s, m = layer[0][0], len(layer)
        if layer == [(s + 2 * i, s + 2 * i + 1) for i in range(m)]:
            plan.append((None, None, s, m))
            continue
        paired = [w for pair in layer for w in pair]
        order = torch.tensor(paired + sorted(set(range(n)) - set(paired)), dtype=torch.long)
        plan.append((order.to(device), torch.argsort(order).to(device), 0, m))
    return tuple(plan)


def _split(t: torch.Tensor, layer: Layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's lower and upper wires (..., m) each, and t with its wires in the layer's order."""
    order, _, s, m = layer
    if order is not None:
        t = t[..., order]
    pairs = t[..., s:s + 2 * m].unflatten(-1, (m, 2))  # (..., m, 2)
    return pairs[..., 0], pairs[..., 1], t


def _mix(t: torch.Tensor, alpha: torch.Tensor, layer: Layer) -> torch.Tensor:
    """The relaxed swap along the last dim of t: wire a <- alpha a + (1 - alpha) b, wire b <- (1 - alpha) a + alpha b."""
    _, inverse, s, m = layer
    a, b, t = _split(t, layer)
    low = b + alpha * (a - b)  # alpha a + (1 - alpha) b
    high = a + b - low  # (1 - alpha) a + alpha b: a swap keeps the sum
    t = torch.cat([t[..., :s], torch.stack([low, high], dim=-1).flatten(-2), t[..., s + 2 * m:]], dim=-1)
    return t if inverse is None else t[..., inverse]


# ---------------------------------------------------------------- relaxations of the conditional swap

def swap_weight(diff: torch.Tensor, relaxation: str = "cauchy", steepness: float = 1.0,
                art_lambda: float = 0.25) -> torch.Tensor:
    """alpha = f(diff), the weight of the lower wire's value a in the relaxed minimum, diff = b - a.

    With v = steepness * diff:
    - "logistic":     1 / (1 + exp(-v))                                                (arXiv:2105.04019)
    - "logistic_phi": logistic of v / (|diff| + 1e-10)^art_lambda, the activation replacement trick
      that pushes small differences away from 0 against blurring                       (arXiv:2105.04019)
    - "cauchy":       atan(v) / pi + 1/2, the Cauchy CDF, monotonic                    (arXiv:2203.09630)
    - "optimal":      -1/(16 v) for v < -1/4, v + 1/2 in between, 1 - 1/(16 v) for v > 1/4, the
      paper's optimal monotonic sigmoid                                               (arXiv:2203.09630)
    Each is 1/2 at diff = 0 and tends to the step function as steepness grows.
    """
    if relaxation == "logistic":
        return torch.sigmoid(steepness * diff)
    if relaxation == "logistic_phi":
        return torch.sigmoid(steepness * diff / (diff.abs() + 1e-10).pow(art_lambda))
    if relaxation == "cauchy":
        return torch.atan(steepness * diff) / math.pi + 0.5
    if relaxation == "optimal":
        v = steepness * diff
        tail = 1 / (16 * v.abs().clamp_min(0.25))  # the 1/(16|v|) tails; 1/4 where the linear part applies
        return torch.where(v > 0.25, 1 - tail, torch.where(v < -0.25, tail, v + 0.5))
    raise ValueError(f"unknown relaxation {relaxation!r}; expected one of {RELAXATIONS}")


def _relaxed_values(x: torch.Tensor, network: str, relaxation: str, steepness: float,
                    art_lambda: float) -> tuple[torch.Tensor, list[tuple[Layer, torch.Tensor]]]:
    """Run the relaxed network on the values x (..., n): the sorted values and each layer's alpha (..., m)."""
    alphas = []
    for layer in _plan(network, x.shape[-1], x.device):
        a, b, _ = _split(x, layer)
        alpha = swap_weight(b - a, relaxation, steepness, art_lambda)  # (..., m)
        x = _mix(x, alpha, layer)
        alphas.append((layer, alpha))
    return x, alphas


@full_precision
def diff_sort(x: torch.Tensor, network: str = "odd_even", relaxation: str = "cauchy", steepness: float = 1.0,
              art_lambda: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Relaxed ascending sort of the last dim of x (..., n): returns (sorted values (..., n), P (..., n, n)).

    P[..., i, j] is how much of input i ends at rank j (0 = smallest): sorted = x @ P row-wise,
    i.e. ``sorted[..., j] = sum_i x[..., i] P[..., i, j]``. Rows and columns of P sum to 1. For distinct
    values and a steep relaxation P[..., i, j] -> 1 exactly where ``torch.sort(x).indices[..., j] == i``.
    All rows are processed at once; a layer mixes pairs of columns of P as it mixes pairs of values.
    """
    n = x.shape[-1]
    values, alphas = _relaxed_values(x, network, relaxation, steepness, art_lambda)
    P = torch.eye(n, dtype=x.dtype, device=x.device).expand(*x.shape, n)  # (..., n, n)
    for layer, alpha in alphas:
        P = _mix(P, alpha.unsqueeze(-2), layer)  # the same mix of rank columns for every input row
    return values, P


@full_precision
def diff_sort_rank_mass(x: torch.Tensor, weights: torch.Tensor, network: str = "odd_even", relaxation: str = "cauchy",
                        steepness: float = 1.0, art_lambda: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted values (..., n), P @ weights (..., n, c)) without forming P; weights (n, c) weigh the ranks.

    P = M_1 M_2 ... M_L, one symmetric doubly stochastic mixing matrix per layer (``diff_sort`` builds
    it left to right), so P w = M_1 (M_2 (... (M_L w))): the layers applied in reverse to the c
    columns of w cost O(n c) per layer instead of O(n^2). GroCo needs only the mass each input puts
    on the positive and the negative ranks, c = 2.
    """
    values, alphas = _relaxed_values(x, network, relaxation, steepness, art_lambda)
    v = weights.to(x.dtype).T.expand(*x.shape[:-1], *weights.T.shape)  # (..., c, n)
    for layer, alpha in reversed(alphas):
        v = _mix(v, alpha.unsqueeze(-2), layer)
    return values, v.transpose(-1, -2)


# ---------------------------------------------------------------- GroCo

@full_precision
def groco_groups(z: torch.Tensor, n_positive_views: int | None = None, n_negatives: int = 10,
                 stop_grad: bool = True) -> list[tuple[torch.Tensor, int]]:
    """The pre-ordered score groups of GroCo: for every anchor, its k hardest negatives then its positives.

    z: (V, B, D) embeddings of V views of B images (cosines are taken, so their scale does not matter).
    The first ``n_positive_views`` views (default: all) are the positives: an anchor of view v has as
    positives the other positive views of its image (P - 1 of them when v < P, P when v is an extra,
    e.g. a local crop), and as negatives the k most similar embeddings of *other images in its own
    view* (the reference implementation's choice). Each group is sorted ascending on its own, so the
    ground-truth order of the row [negatives, positives] is the identity.
    stop_grad: positives and negatives are detached; gradient reaches z only through the anchor
    (every embedding is an anchor once, so all of z still gets a gradient).

    Returns one (scores (N, k + p), p) per distinct positive count p: anchors v < P first, then v >= P.
    """
    from ..distributed import gather, world

    rank, size = world()
    V, B, _ = z.shape
    P = V if n_positive_views is None else n_positive_views
    if not 2 <= P <= V:
        raise ValueError(f"groco needs 2 <= n_positive_views <= V (an anchor needs a positive), got {P} of {V} views")
    if not 1 <= n_negatives <= size * B - 1:
        raise ValueError(f"groco takes the {n_negatives} hardest negatives, but a batch of {size * B} has {size * B - 1}")
    anchor = F.normalize(z, dim=-1)  # (V, B, D)
    other = anchor.detach() if stop_grad else anchor
    # data parallel: the negatives are the hardest among the images of every rank, (V, NB, D)
    candidates = other if size == 1 else gather(other.transpose(0, 1).contiguous()).transpose(0, 1)

    negative = anchor @ candidates.transpose(1, 2)  # (V, B, NB) cosines within each view
    rows = torch.arange(B, device=z.device)
    self_mask = torch.zeros(B, size * B, dtype=torch.bool, device=z.device)
    self_mask[rows, rows + rank * B] = True  # each anchor's own image
    negative = negative.masked_fill(self_mask, float("-inf")).topk(n_negatives, dim=-1).values.flip(-1)  # (V, B, k) ascending
    positive = torch.einsum("vbd,ubd->vbu", anchor, other[:P])  # (V, B, P) cosines to each positive view

    # anchors that are positive views themselves: the other P - 1
    keep = torch.tensor([[u for u in range(P) if u != v] for v in range(P)], device=z.device)  # (P, P - 1)
    pos = positive[:P].gather(2, keep[:, None, :].expand(P, B, P - 1)).sort(dim=-1).values  # (P, B, P - 1)
    groups = [(torch.cat([negative[:P], pos], dim=-1).flatten(0, 1), P - 1)]  # (P B, k + P - 1)
    if V > P:  # extra views (local crops): every positive view
        pos = positive[P:].sort(dim=-1).values  # (V - P, B, P)
        groups.append((torch.cat([negative[P:], pos], dim=-1).flatten(0, 1), P))  # ((V - P) B, k + P)
    return groups


@full_precision
def group_order_loss(scores: torch.Tensor, n_positive: int, network: str = "odd_even", relaxation: str = "cauchy",
                     steepness: float = 1.0, art_lambda: float = 0.25) -> torch.Tensor:
    """GroCo's per-row loss: BCE of the relaxed group assignment against the ground truth.

    scores: (N, n), each row its n - p negatives then its p = ``n_positive`` positives (similarities,
    each group ascending). With P (N, n, n) the relaxed sort's matrix, summed over the ranks of a
    group, q_i = sum_{j >= n - p} P[i, j] is the probability that element i lands among the top p
    ranks (``diff_sort_rank_mass`` computes these sums without forming P).
    The target is 1 for the positives and 0 for the negatives, so only positives ranked among the
    negatives (and negatives ranked among the positives, the same mass since P is doubly stochastic)
    cost anything; the order inside a group is free. As in the reference implementation the loss is
    (BCE(q, t) + BCE(r, 1 - t)) / 2 with r_i = sum_{j < n - p} P[i, j] the mass on the negative
    ranks (r = 1 - q up to rounding, so both halves agree), averaged over the n elements; q and r
    are clipped to [0, 1] against rounding and each log to >= -100 (torch's BCE). Returns (N,).
    """
    n = scores.shape[-1]
    k = n - n_positive
    positive_rank = (torch.arange(n, device=scores.device) >= k).to(scores.dtype)  # (n,) t, also the target
    _, mass = diff_sort_rank_mass(scores, torch.stack([positive_rank, 1 - positive_rank], dim=1),
                                  network, relaxation, steepness, art_lambda)  # (N, n, 2) = P @ [t, 1 - t]
    to_positive, to_negative = mass.clamp(0, 1).unbind(-1)  # (N, n) each: mass on the positive / negative ranks
    target = positive_rank.expand_as(to_positive)  # (N, n)
    bce_pos = F.binary_cross_entropy(to_positive, target, reduction="none")
    bce_neg = F.binary_cross_entropy(to_negative, 1 - target, reduction="none")
    return 0.5 * (bce_pos + bce_neg).mean(-1)


@full_precision
def groco_loss(z: torch.Tensor, n_positive_views: int | None = None, n_negatives: int = 10, steepness: float = 1.0,
               relaxation: str = "cauchy", network: str = "odd_even", art_lambda: float = 0.25,
               stop_grad: bool = True) -> torch.Tensor:
    """GroCo: the mean over all V B anchors of ``group_order_loss`` on their ``groco_groups``.

    Shvetsova, Petersen, Kukleva, Schiele, Kuehne 2023, "Learning by Sorting: Self-supervised Learning
    with Group Ordering Constraints", ICCV 2023, arXiv:2301.02009.

    z: (V, B, D). For each anchor: its positives (other views of its image) and its k = ``n_negatives``
    most similar negatives, each group pre-sorted, are sorted by a relaxed ``network`` with swap
    weight ``relaxation`` at ``steepness``; the loss counts how much of the positives ends below
    negatives. Defaults are the paper's (odd-even network, Cauchy, steepness 1, k = 10, stop-gradient
    on positives and negatives). Returns a scalar.
    """
    total = 0.0
    for scores, p in groco_groups(z, n_positive_views, n_negatives, stop_grad):
        total = total + group_order_loss(scores, p, network, relaxation, steepness, art_lambda).sum()
    return total / (z.shape[0] * z.shape[1])
