"""DINO and SwAV: their losses against hand-computed values and slow references (centering, Sinkhorn),
their schedules and state (center, teacher, prototypes, queue), multi-crop, and exact resume."""
from __future__ import annotations

import math

import pytest

from tests.conftest import assert_resume_bit_identical
import torch
import torch.nn.functional as F

from selfsup import config as C
from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.losses.clustering import sinkhorn, swav_loss
from selfsup.losses.distillation import dino_center, dino_loss, dino_targets, multi_view_cross_entropy
from selfsup.methods.base import Batch
from selfsup.views import ImageViews, multicrop_views

MEAN, STD = [0.286], [0.353]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def backbone():
    return build_backbone("convnet6", in_channels=1, image_size=28, width=8)


def dino(**options):
    torch.manual_seed(0)
    return registry.get("method", "dino")(backbone(), **{"hidden_dim": 64, "bottleneck_dim": 32, "out_dim": 48, **options})


def swav(**options):
    torch.manual_seed(0)
    return registry.get("method", "swav")(backbone(), **{"hidden_dim": 64, "out_dim": 32, "n_prototypes": 40,
                                                         "queue_length": 0, **options})


def multicrop_batch(n=8, n_local=6, seed=0, progress=0.5) -> Batch:
    """2 global 28x28 views + `n_local` local 12x12 views of random uint8 images (the multicrop preset)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    views, params = ImageViews(multicrop_views(28, n_local), MEAN, STD)(images, g)
    return Batch(views, params, images, None, torch.arange(n), progress, n_global=2, n_local=n_local)


# ---------------------------------------------------------------- losses

def test_dino_loss_hand_computed():
    # K = 2, B = 1. Center (0.02, -0.02); teacher temperature 0.04, student 0.1.
    # teacher view 0: centered logits (0.04 ln 3, 0) -> q0 = (3/4, 1/4); view 1: (0, 0) -> q1 = (1/2, 1/2)
    # student views 0, 1 (global), 2 (local): p0 = (2/3, 1/3), p1 = (1/2, 1/2), p2 = (1/4, 3/4)
    # pairs of different views: (q0,p1) = ln 2; (q0,p2) = 2 ln 2 - ln(3)/4; (q1,p0) = ln 3 - ln(2)/2;
    # (q1,p2) = 2 ln 2 - ln(3)/2  -> mean = (4.5 ln 2 + 0.25 ln 3) / 4
    center = t([[0.02, -0.02]])
    teacher = t([[[0.02 + 0.04 * math.log(3), -0.02]], [[0.02, -0.02]]])  # (T=2, B=1, K=2)
    student = t([[[0.1 * math.log(2), 0.0]], [[0.0, 0.0]], [[0.0, 0.1 * math.log(3)]]])  # (V=3, B=1, K=2)
    expected = (4.5 * math.log(2) + 0.25 * math.log(3)) / 4
    got = dino_loss(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    torch.testing.assert_close(dino_targets(teacher, center, 0.04), t([[[0.75, 0.25]], [[0.5, 0.5]]]))


def test_swav_loss_hand_computed():
    # codes q0 = (1, 0), q1 = (1/2, 1/2); student softmax(scores / 0.1): p0 = (2/3, 1/3), p1 = (1/2, 1/2), p2 = (1/4, 3/4)
    # (q0,p1) = ln 2; (q0,p2) = 2 ln 2; (q1,p0) = ln 3 - ln(2)/2; (q1,p2) = 2 ln 2 - ln(3)/2 -> (4.5 ln 2 + 0.5 ln 3) / 4
    codes = t([[[1.0, 0.0]], [[0.5, 0.5]]])
    scores = t([[[0.1 * math.log(2), 0.0]], [[0.0, 0.0]], [[0.0, 0.1 * math.log(3)]]])
    expected = (4.5 * math.log(2) + 0.5 * math.log(3)) / 4
    assert swav_loss(scores, codes, temperature=0.1).item() == pytest.approx(expected, abs=1e-6)


def test_multi_view_cross_entropy_matches_loop():
    torch.manual_seed(0)
    V, T, B, K, tau = 5, 2, 3, 7, 0.1
    logits, targets = torch.randn(V, B, K), torch.softmax(torch.randn(T, B, K), -1)
    total, pairs = 0.0, 0
    for i in range(T):
        for v in range(V):
            if v == i:
                continue
            for b in range(B):
                z = [x / tau for x in logits[v, b].tolist()]
                log_norm = math.log(sum(math.exp(x) for x in z))
                total += -sum(q * (x - log_norm) for q, x in zip(targets[i, b].tolist(), z)) / B
            pairs += 1
    assert multi_view_cross_entropy(logits, targets, tau).item() == pytest.approx(total / pairs, rel=1e-5)


def test_dino_centering_sharpening_matches_loop():
    torch.manual_seed(1)
    logits, center, tau = torch.randn(2, 4, 6), torch.randn(1, 6), 0.04
    got = dino_targets(logits, center, tau)
    for v in range(2):
        for b in range(4):
            z = [(logits[v, b, k].item() - center[0, k].item()) / tau for k in range(6)]
            top = max(z)
            e = [math.exp(x - top) for x in z]
            for k in range(6):
                assert got[v, b, k].item() == pytest.approx(e[k] / sum(e), abs=1e-6)


def test_dino_center_update_exact():
    center = t([[1.0, -2.0]])
    logits = t([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 0.0]]])  # (T=2, B=2, K=2): mean (4, 3)
    torch.testing.assert_close(dino_center(center, logits, 0.9), t([[0.9 * 1 + 0.1 * 4, 0.9 * -2 + 0.1 * 3]]))


def sinkhorn_reference(scores: list[list[float]], epsilon: float, iterations: int) -> list[list[float]]:
    """SwAV's Algorithm 1 with explicit loops: Q is K x B; rows (prototypes) -> 1/K, columns (samples) -> 1/B."""
    B, K = len(scores), len(scores[0])
    Q = [[math.exp(scores[b][k] / epsilon) for b in range(B)] for k in range(K)]
    total = sum(sum(row) for row in Q)
    Q = [[q / total for q in row] for row in Q]
    for _ in range(iterations):
        for k in range(K):
            r = sum(Q[k])
            Q[k] = [q / r / K for q in Q[k]]
        for b in range(B):
            c = sum(Q[k][b] for k in range(K))
            for k in range(K):
                Q[k][b] = Q[k][b] / c / B
    return [[Q[k][b] * B for k in range(K)] for b in range(B)]


@pytest.mark.parametrize("iterations", [1, 3, 10])
def test_sinkhorn_matches_loop_reference(iterations):
    torch.manual_seed(2)
    scores = F.normalize(torch.randn(6, 8), dim=1) @ F.normalize(torch.randn(5, 8), dim=1).T  # (B=6, K=5) cosines
    expected = torch.tensor(sinkhorn_reference(scores.double().tolist(), 0.05, iterations), dtype=torch.float64)
    got = sinkhorn(scores, epsilon=0.05, iterations=iterations)
    assert got.shape == (6, 5) and not got.requires_grad
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-6)


def test_sinkhorn_marginals():
    torch.manual_seed(3)
    B, K = 32, 8
    scores = F.normalize(torch.randn(B, 16), dim=1) @ F.normalize(torch.randn(K, 16), dim=1).T
    for iterations in (3, 500):
        q = sinkhorn(scores, epsilon=0.05, iterations=iterations)
        torch.testing.assert_close(q.sum(1), torch.ones(B))  # each sample's code is a distribution
    # the equal partition: every prototype gets B / K of the mass once the iterations converge
    torch.testing.assert_close(q.sum(0), torch.full((K,), B / K), rtol=1e-3, atol=1e-3)
    # and each iteration brings the prototype marginals closer to it than the plain softmax's
    def gap(q):
        return (q.sum(0) - B / K).abs().max().item()

    gaps = [gap(torch.softmax(scores / 0.05, dim=1))] + [gap(sinkhorn(scores, 0.05, n)) for n in (3, 30, 500)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3, gaps


# ---------------------------------------------------------------- DINO

def test_dino_schedules():
    m = dino()
    assert m.teacher_temperature_at(0.0) == pytest.approx(0.04, abs=1e-12)
    assert m.teacher_temperature_at(0.15) == pytest.approx(0.055, abs=1e-12)
    assert m.teacher_temperature_at(0.3) == pytest.approx(0.07, abs=1e-12)  # warmup end
    assert m.teacher_temperature_at(1.0) == pytest.approx(0.07, abs=1e-12)
    assert m.momentum_at(0.0) == pytest.approx(0.99, abs=1e-12)
    assert m.momentum_at(0.5) == pytest.approx(0.995, abs=1e-12)
    assert m.momentum_at(1.0) == pytest.approx(1.0, abs=1e-12)


def test_dino_multicrop_forward_center_and_teacher():
    m = dino()
    batch = multicrop_batch(n=8)
    assert [tuple(v.shape[-2:]) for v in batch.views] == [(28, 28)] * 2 + [(12, 12)] * 6
    assert torch.equal(m.center, torch.zeros(1, 48))
    with torch.no_grad():
        teacher = m.teacher(torch.cat(batch.views[:2])).view(2, 8, 48)  # train-mode BN: same outputs again
    out = m(batch)
    expected = 0.9 * torch.zeros(1, 48) + 0.1 * teacher.reshape(-1, 48).mean(0, keepdim=True)
    torch.testing.assert_close(m.center, expected, rtol=0, atol=1e-7)
    out["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert m.head.prototypes.grad is not None and all(p.grad is not None for p in m.backbone.parameters())
    assert out["teacher_temperature"].item() == pytest.approx(0.07, abs=1e-6)  # past the warmup (0.3)
    # last layer frozen during the first 1% of training
    m.zero_grad(set_to_none=True)
    m(multicrop_batch(n=8, progress=0.0))["loss"].backward()
    assert m.head.prototypes.grad is None and m.head.mlp[0].weight.grad is not None


def test_dino_eval_mode_leaves_center():
    m = dino().eval()
    with torch.no_grad():
        m(multicrop_batch(n=4, n_local=2))
    assert torch.equal(m.center, torch.zeros(1, 48))


# ---------------------------------------------------------------- SwAV

def test_swav_prototypes_normalized_and_frozen_early():
    m = swav()
    torch.testing.assert_close(m.prototypes.weight.norm(dim=1), torch.ones(40))
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m(multicrop_batch(n=8, progress=0.0))["loss"].backward()  # progress < freeze_prototypes = 0.01
    assert m.prototypes.weight.grad is None
    m(multicrop_batch(n=8, progress=0.5))["loss"].backward()
    assert m.prototypes.weight.grad is not None
    opt.step()
    assert (m.prototypes.weight.norm(dim=1) - 1).abs().max() > 1e-3  # the step moved them off the sphere
    m.on_step_end(0.5)
    torch.testing.assert_close(m.prototypes.weight.norm(dim=1), torch.ones(40))


def test_swav_queue_fill_and_use():
    B = 8
    m = swav(queue_length=2 * B, queue_start=0.5)
    assert m.queue.shape == (2, 16, 32) and not m.queue_in_use(1.0)  # empty
    b1, b2, b3 = (multicrop_batch(n=B, seed=s, n_local=2, progress=0.6) for s in (1, 2, 3))

    def projections(batch):  # (4, B, out_dim) normalized projections; the projector's BN sees all views at once
        with torch.no_grad():
            feats = torch.cat([m.backbone(torch.cat(batch.views[:2])), m.backbone(torch.cat(batch.views[2:]))])
            return F.normalize(m.projector(feats), dim=-1).view(4, B, -1)

    z1 = projections(b1)[:2]
    m(b1)
    torch.testing.assert_close(m.queue[:, :B], z1)
    assert torch.equal(m.queue[:, B:], torch.zeros(2, B, 32)) and not m.queue_in_use(0.6)  # half full
    z2 = projections(b2)[:2]
    out = m(b2)
    assert out["queue_in_use"].item() == 0.0
    torch.testing.assert_close(m.queue, torch.cat([z2, z1], dim=1))  # newest first
    assert m.queue_in_use(0.6) and not m.queue_in_use(0.4)  # full, and used only after queue_start

    # the codes of the third batch come from Sinkhorn over [queue; batch] scores, the batch rows only
    queue = m.queue.clone()
    with torch.no_grad():
        scores = projections(b3) @ m.prototypes.weight.T  # (4, B, K)
        codes = torch.stack([sinkhorn(torch.cat([queue[i] @ m.prototypes.weight.T, scores[i]]))[-B:] for i in range(2)])
        expected = swav_loss(scores, codes, 0.1)
    out = m(b3)
    assert out["queue_in_use"].item() == 1.0
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    without = swav_loss(scores, torch.stack([sinkhorn(scores[i]) for i in range(2)]), 0.1)
    assert abs(without.item() - expected.item()) > 1e-4  # the queue changed the codes


def test_swav_multicrop_forward():
    m = swav()
    out = m(multicrop_batch(n=8))
    out["loss"].backward()
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert all(p.grad is not None for p in m.backbone.parameters())


# ---------------------------------------------------------------- state

@pytest.mark.parametrize("build", [lambda: dino(), lambda: swav(queue_length=16, queue_start=0.0)], ids=["dino", "swav"])
def test_state_dict_round_trip(build):
    a = build()
    opt = torch.optim.SGD([p for p in a.parameters() if p.requires_grad], lr=0.1)
    for step in range(3):
        opt.zero_grad()
        a(multicrop_batch(n=8, n_local=2, seed=step))["loss"].backward()
        opt.step()
        a.on_step_end((step + 1) / 10)
    state = a.state_dict()
    assert {"center"} <= state.keys() or {"queue"} <= state.keys()
    torch.manual_seed(123)
    b = build()
    b.load_state_dict(state)
    for key, value in b.state_dict().items():
        assert torch.equal(value, state[key]), key
    batch = multicrop_batch(n=8, n_local=2, seed=9)
    assert a(batch)["loss"].item() == b(batch)["loss"].item()
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), key  # the same state afterwards too (center, queue)


def tiny(data, out, method, steps=6, **extra):
    options = {"dino": ["method.out_dim=32", "method.bottleneck_dim=16"],
               "swav": ["method.out_dim=16", "method.n_prototypes=20", "method.queue_length=128", "method.queue_start=0.3"]}
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"method.name={method}", f"train.steps={steps}",
                             "train.batch_size=64", "train.checkpoint_every=3", "train.progress=false",
                             "backbone.width=8", "method.hidden_dim=32", "views.n_local=2", "optim.warmup_steps=2",
                             *options[method], *[f"{k}={v}" for k, v in extra.items()]])


@pytest.mark.parametrize("method", ["dino", "swav"])
def test_resume_is_bit_identical(method, fmnist_npz, tmp_path):
    sa = assert_resume_bit_identical(lambda out: tiny(fmnist_npz, out, method), tmp_path)
    state = "center" if method == "dino" else "queue"
    assert sa[state].abs().sum() > 0  # the state really moved (SwAV: the queue is full and in use from step 2)


@pytest.mark.parametrize("build", [lambda: dino(), lambda: swav(queue_length=16, queue_start=0.0)], ids=["dino", "swav"])
def test_prototype_scores_in_float32_under_bf16_autocast(build):
    m = build()
    batch = multicrop_batch(n=8, n_local=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if hasattr(m, "head"):
            assert m.head(m.backbone(batch.views[0])).dtype == torch.float32
        out = m(batch)
        out = m(batch)  # SwAV: the second step uses the (float32) queue
    assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32
    out["loss"].backward()


def test_dino_bn_head_option():
    m = dino(use_bn_in_head=True)
    assert sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.head.mlp) == 2
    assert sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.teacher[1].mlp) == 2
    out = m(multicrop_batch(n=8, n_local=2))
    out["loss"].backward()
    m.on_step_end(0.5)  # the EMA sees the same parameters and buffers in student and teacher
    assert torch.isfinite(out["loss"])
