"""Differentiable sorting networks and GroCo against plain-loop references and hand-computed values."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError
from selfsup.losses.sorting import (
    NETWORKS,
    RELAXATIONS,
    bitonic_network,
    diff_sort,
    diff_sort_rank_mass,
    groco_loss,
    group_order_loss,
    sorting_network,
)
from selfsup.methods.base import Batch

# ---------------------------------------------------------------- slow references, plain Python

def ref_alpha(d: float, relaxation: str, beta: float, art_lambda: float = 0.25) -> float:
    v = beta * d
    if relaxation == "logistic":
        return 1 / (1 + math.exp(-v))
    if relaxation == "logistic_phi":
        return 1 / (1 + math.exp(-v / (abs(d) + 1e-10) ** art_lambda))
    if relaxation == "cauchy":
        return math.atan(v) / math.pi + 0.5
    if relaxation == "optimal":
        if v < -0.25:
            return -1 / (16 * v)
        if v > 0.25:
            return 1 - 1 / (16 * v)
        return v + 0.5
    raise AssertionError(relaxation)


def ref_network(kind: str, n: int) -> list[list[tuple[int, int]]]:
    if kind == "odd_even":  # written out again: layer l compares (l % 2, l % 2 + 1), (l % 2 + 2, ...), ...
        layers = []
        for layer in range(n):
            pairs, i = [], layer % 2
            while i + 1 < n:
                pairs.append((i, i + 1))
                i += 2
            layers.append(pairs)
        return layers
    return bitonic_network(n)  # its sorting is proven by test_networks_sort_every_binary_input


def ref_sort(row: list[float], kind: str, relaxation: str, beta: float) -> tuple[list[float], list[list[float]]]:
    """One comparator at a time (comparators of a layer touch disjoint wires, so the order is free)."""
    x, n = list(row), len(row)
    P = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for layer in ref_network(kind, n):
        for a, b in layer:
            al = ref_alpha(x[b] - x[a], relaxation, beta)
            x[a], x[b] = al * x[a] + (1 - al) * x[b], (1 - al) * x[a] + al * x[b]
            for i in range(n):
                P[i][a], P[i][b] = al * P[i][a] + (1 - al) * P[i][b], (1 - al) * P[i][a] + al * P[i][b]
    return x, P


def safe_log(p: float) -> float:
    return -100.0 if p <= 0 else max(math.log(p), -100.0)


def ref_groco(z: torch.Tensor, n_positive_views: int, k: int, kind: str, relaxation: str, beta: float) -> float:
    """Loop over every anchor: its sorted positives and k most similar same-view negatives, sorted, BCE."""
    V, B, _ = z.shape
    unit = [[[float(c) / float(z[v, i].norm()) for c in z[v, i]] for i in range(B)] for v in range(V)]
    cos = lambda u, w: sum(p * q for p, q in zip(u, w))
    total = 0.0
    for v in range(V):
        for i in range(B):
            pos = sorted(cos(unit[v][i], unit[u][i]) for u in range(n_positive_views) if u != v)
            neg = sorted(cos(unit[v][i], unit[v][j]) for j in range(B) if j != i)[-k:]
            row = neg + pos
            n = len(row)
            _, P = ref_sort(row, kind, relaxation, beta)
            per_element = 0.0
            for e in range(n):
                q = min(max(sum(P[e][k:]), 0.0), 1.0)  # mass on the positive ranks
                r = min(max(sum(P[e][:k]), 0.0), 1.0)  # mass on the negative ranks
                t = 1.0 if e >= k else 0.0
                per_element += 0.5 * (-(t * safe_log(q) + (1 - t) * safe_log(1 - q))
                                      - ((1 - t) * safe_log(r) + t * safe_log(1 - r)))
            total += per_element / n
    return total / (V * B)


# ---------------------------------------------------------------- sorting networks

@pytest.mark.parametrize("kind", NETWORKS)
def test_networks_sort_every_binary_input(kind):
    # The 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input.
    for n in range(1, 11):
        network = sorting_network(kind, n)
        for layer in network:  # comparators of a layer are parallel: disjoint wires, lower wire first
            wires = [w for pair in layer for w in pair]
            assert len(wires) == len(set(wires)) and all(a < b < n for a, b in layer)
        for bits in itertools.product((0, 1), repeat=n):
            w = list(bits)
            for layer in network:
                for a, b in layer:
                    if w[a] > w[b]:
                        w[a], w[b] = w[b], w[a]
            assert w == sorted(w), (kind, n, bits)
    assert len(sorting_network("odd_even", 11)) == 11
    assert len(sorting_network("bitonic", 8)) == 6  # log2(8) (log2(8) + 1) / 2


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_diff_sort_matches_the_loop_reference(kind, relaxation):
    g = torch.Generator().manual_seed(0)
    for n, beta in ((5, 0.7), (6, 3.0), (7, 1.0)):
        x = torch.randn(3, n, generator=g)
        values, P = diff_sort(x, kind, relaxation, beta)
        for row in range(3):
            ref_values, ref_P = ref_sort(x[row].tolist(), kind, relaxation, beta)
            torch.testing.assert_close(values[row], torch.tensor(ref_values), rtol=0, atol=2e-6)
            torch.testing.assert_close(P[row], torch.tensor(ref_P), rtol=0, atol=2e-6)
        # P is doubly stochastic and carries the inputs to the relaxed sorted values
        torch.testing.assert_close(P.sum(-1), torch.ones(3, n), rtol=0, atol=1e-6)
        torch.testing.assert_close(P.sum(-2), torch.ones(3, n), rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.einsum("ri,rij->rj", x, P), values, rtol=0, atol=1e-5)
        # the vector-only path used by the loss: P @ w without forming P
        w = torch.randn(n, 2, generator=g)
        _, mass = diff_sort_rank_mass(x, w, kind, relaxation, beta)
        torch.testing.assert_close(mass, P @ w, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", NETWORKS)
@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_a_steep_relaxation_is_the_hard_permutation_of_torch_sort(kind, relaxation):
    g = torch.Generator().manual_seed(1)
    x = torch.stack([torch.randperm(11, generator=g) for _ in range(8)]).float() * 0.1 - 0.5  # distinct, gaps >= 0.1
    values, P = diff_sort(x, kind, relaxation, steepness=1e6)
    order = torch.sort(x, dim=-1)
    hard = torch.zeros(8, 11, 11).scatter_(1, order.indices[:, None, :], 1.0)  # hard[r, order[r, j], j] = 1
    torch.testing.assert_close(P, hard, rtol=0, atol=1e-4)
    torch.testing.assert_close(values, order.values, rtol=0, atol=1e-5)


def test_diff_sort_gradient_is_finite_and_flows():
    x = torch.randn(4, 9, requires_grad=True)
    for kind, relaxation in itertools.product(NETWORKS, RELAXATIONS):
        values, P = diff_sort(x, kind, relaxation, 2.0)
        (values * torch.arange(9.0)).sum().add(P[..., -1].pow(2).sum()).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        x.grad = None


# ---------------------------------------------------------------- GroCo loss

def test_group_order_loss_counts_misplaced_elements_in_the_hard_limit():
    # Hard sort (logistic, huge steepness): a misplaced element costs BCE = 100 (torch's log clamp) in
    # both halves, a correctly placed one 0; the loss is 100 x the share of misplaced elements.
    rows = torch.tensor([[0.1, 0.2, 0.8, 0.9],    # positives above both negatives: 0 misplaced
                         [0.1, 0.5, 0.3, 0.9],    # positive 0.3 below negative 0.5: 2 of 4 misplaced
                         [0.6, 0.9, 0.1, 0.2]])   # both positives at the bottom: 4 of 4 misplaced
    got = group_order_loss(rows, n_positive=2, relaxation="logistic", steepness=1e6)
    torch.testing.assert_close(got, torch.tensor([0.0, 50.0, 100.0]), rtol=0, atol=1e-4)
    # Order inside a group is free: shuffling the negatives among themselves changes nothing.
    swapped = torch.tensor([[0.2, 0.1, 0.8, 0.9]])
    assert group_order_loss(swapped, 2, relaxation="logistic", steepness=1e6).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_groco_loss_hand_computed(beta):
    # B = 3 images, 2 views of 2-d embeddings at angles (deg): view 0 at 0, 90, 180; view 1 at 60, 90, 120
    # (lengths vary: cosines ignore them). k = 1: each row is [hardest same-view negative, positive],
    # a 2-wire odd-even network is one comparator with alpha = f(pos - neg), P = [[a, 1-a], [1-a, a]],
    # and both BCE halves are -log(a) for both elements: the loss is mean over anchors of -log(a).
    #   view 0: pos cos(0-60)=1/2, cos 0=1, cos(180-120)=1/2; hardest negatives: cos 90=0 for all three.
    #   view 1: same positives; hardest negatives: cos 30 = sqrt(3)/2 for all three.
    def at(deg, length):
        return [length * math.cos(math.radians(deg)), length * math.sin(math.radians(deg))]

    z = torch.tensor([[at(0, 1.0), at(90, 2.0), at(180, 0.5)], [at(60, 3.0), at(90, 1.0), at(120, 2.0)]])
    s3 = math.sqrt(3) / 2
    diffs = [0.5, 1.0, 0.5, 0.5 - s3, 1.0 - s3, 0.5 - s3]
    expected = sum(-math.log(math.atan(beta * d) / math.pi + 0.5) for d in diffs) / 6
    got = groco_loss(z, n_negatives=1, steepness=beta)  # Cauchy, odd-even: the paper's
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind, relaxation, n_positive_views", [
    ("odd_even", "cauchy", None), ("odd_even", "cauchy", 2), ("bitonic", "optimal", 2), ("odd_even", "logistic", 3)])
def test_groco_loss_matches_the_loop_reference(kind, relaxation, n_positive_views):
    # V = 3 views; n_positive_views=2 makes view 2 a local crop: an anchor only, positives = views 0 and 1.
    z = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(2))
    P = n_positive_views or 3
    got = groco_loss(z, n_positive_views=n_positive_views, n_negatives=3, steepness=2.0, relaxation=relaxation, network=kind)
    assert got.item() == pytest.approx(ref_groco(z, P, 3, kind, relaxation, 2.0), rel=1e-5)


def test_groco_gradient_is_finite_and_reaches_every_view():
    z = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(3), requires_grad=True)
    loss = groco_loss(z, n_negatives=4)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    assert (z.grad.abs().sum(-1) > 0).all()  # every embedding is an anchor once
    # Stop-gradient changes the gradient, not the value.
    z2 = z.detach().clone().requires_grad_(True)
    loss2 = groco_loss(z2, n_negatives=4, stop_grad=False)
    loss2.backward()
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    assert not torch.allclose(z2.grad, z.grad)


def test_groco_loss_is_lower_for_a_separated_batch():
    g = torch.Generator().manual_seed(4)
    centers = torch.randn(16, 32, generator=g)
    aligned = torch.stack([centers, centers + 0.05 * torch.randn(16, 32, generator=g)])  # views agree
    unrelated = torch.randn(2, 16, 32, generator=g)
    assert groco_loss(aligned, n_negatives=5).item() < groco_loss(unrelated, n_negatives=5).item()


# ---------------------------------------------------------------- the method

def small_groco(**options):
    torch.manual_seed(0)
    backbone = build_backbone("convnet6", in_channels=1, image_size=28, width=8)
    return registry.get("method", "groco")(backbone, hidden_dim=32, out_dim=16, **options)


def test_method_loss_is_groco_loss_of_its_embeddings():
    method = small_groco(n_negatives=5)
    g = torch.Generator().manual_seed(5)
    views = [torch.randn(12, 1, 28, 28, generator=g) for _ in range(2)]
    out = method(Batch(views, n_global=2, n_local=len(views) - 2))
    assert out["features"].shape == (24, method.backbone.dim) and out["embeddings"].shape == (24, 16)
    assert method.embedding_dim == 16 and 0.0 <= out["ordered"].item() <= 1.0
    with torch.no_grad():  # train-mode BatchNorm: the same inputs give the same outputs again
        z = method.projector(method.backbone(torch.cat(views)))
    assert out["loss"].item() == pytest.approx(groco_loss(z.view(2, 12, -1), n_negatives=5).item(), rel=1e-5)


def test_method_with_local_crops():
    # 2 global views at 28 px and 2 local crops at 14 px: the crops are anchors whose positives are both globals.
    method = small_groco(n_negatives=4)
    g = torch.Generator().manual_seed(6)
    views = [torch.randn(10, 1, 28, 28, generator=g) for _ in range(2)] + [torch.randn(10, 1, 14, 14, generator=g) for _ in range(2)]
    out = method(Batch(views, n_global=2, n_local=len(views) - 2))
    assert out["embeddings"].shape == (20, 16)  # global views only
    with torch.no_grad():
        h = torch.cat([method.backbone(torch.cat(views[:2])), method.backbone(torch.cat(views[2:]))])
        z = method.projector(h)
    expected = groco_loss(z.view(4, 10, -1), n_positive_views=2, n_negatives=4)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)


def test_method_rejects_bad_options():
    with pytest.raises(ConfigError, match="relaxation"):
        small_groco(relaxation="sigmoid")
    with pytest.raises(ConfigError, match="network"):
        small_groco(network="bubble")
    with pytest.raises(ConfigError, match="steepness"):
        small_groco(steepness=0.0)
    method = small_groco()  # k = 10 needs a batch of at least 11
    with pytest.raises(ConfigError, match="batch"):
        method(Batch([torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)]))
