"""MSBReg: its three losses against hand-computed values and numpy's SVD, the method (composition,
views, teacher, state, exact resume) and the auxiliary on SimCLR and BYOL."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup import auxiliaries
from selfsup import config as C
from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError
from selfsup.losses.dynamics import brownian_directions, brownian_loss, multiview_centroid_loss, singular_value_loss
from selfsup.methods.base import Batch
from selfsup.views import ImageViews, fmnist_views
from tests.conftest import assert_resume_bit_identical

MEAN, STD = [0.286], [0.353]


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def build(name="msbreg", **options):
    torch.manual_seed(0)
    small = {"msbreg": {"hidden_dim": 64, "pred_hidden_dim": 64, "out_dim": 32},
             "byol": {"hidden_dim": 64, "pred_hidden_dim": 64, "out_dim": 32},
             "simclr": {"hidden_dim": 64, "out_dim": 32}}[name]
    backbone = build_backbone("convnet6", in_channels=1, image_size=28, width=8)
    return registry.get("method", name)(backbone, **{**small, **options})


def batch(n=16, n_global=4, seed=0, progress=0.5) -> Batch:
    """`n_global` 28x28 views of random uint8 images (the fmnist preset)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    cfg = fmnist_views()
    cfg = type(cfg)(**{**cfg.__dict__, "n_global": n_global})
    views, params = ImageViews(cfg, MEAN, STD)(images, g)
    return Batch(views, params, images, None, torch.arange(n), progress)


# ---------------------------------------------------------------- losses

def test_singular_value_loss_hand_computed():
    # Orthonormal rows: flat spectrum (1, 1), sum 2 = sqrt(r N) = sqrt(2 * 2) -> 0.
    assert singular_value_loss(t([[3.0, 0.0], [0.0, -2.0]])).item() == pytest.approx(0.0, abs=1e-6)
    # Collapsed rows: normalized to (1, 0) twice, spectrum (sqrt 2, 0) -> 1 - sqrt(2) / 2.
    assert singular_value_loss(t([[1.0, 0.0], [5.0, 0.0]])).item() == pytest.approx(1 - math.sqrt(2) / 2, abs=1e-6)
    # Three unit rows in 2-D at 120 degrees: Z^T Z = (3/2) I, spectrum (sqrt 1.5, sqrt 1.5) = sqrt(r N) / r -> 0.
    a = [[math.cos(k * 2 * math.pi / 3), math.sin(k * 2 * math.pi / 3)] for k in range(3)]
    assert singular_value_loss(t(a)).item() == pytest.approx(0.0, abs=1e-6)


def test_singular_value_loss_against_numpy_svd():
    rng = np.random.default_rng(0)
    zs = rng.normal(size=(3, 5, 4)).astype(np.float32)  # (V, N, D)
    expected = []
    for z in zs:  # one view at a time, plain numpy
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        s = np.linalg.svd(z.astype(np.float64), compute_uv=False)
        expected.append(1 - s.sum() / math.sqrt(min(5, 4) * 5))
    assert singular_value_loss(torch.from_numpy(zs)).item() == pytest.approx(np.mean(expected), abs=1e-5)
    assert singular_value_loss(torch.from_numpy(zs[1])).item() == pytest.approx(expected[1], abs=1e-5)
    # fewer rows than dims (N < D): r = N
    wide = rng.normal(size=(3, 6)).astype(np.float32)
    w = wide / np.linalg.norm(wide, axis=1, keepdims=True)
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    assert singular_value_loss(torch.from_numpy(wide)).item() == pytest.approx(1 - s.sum() / math.sqrt(3 * 3), abs=1e-5)


def test_singular_value_loss_spreads_a_collapsed_batch():
    # gradient descent on the loss alone turns a nearly collapsed batch into a spread one
    torch.manual_seed(0)
    z = (torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.05 * torch.randn(16, 4)).requires_grad_()
    start = singular_value_loss(z).item()
    optimizer = torch.optim.SGD([z], lr=0.5)
    for _ in range(200):
        optimizer.zero_grad()
        singular_value_loss(z).backward()
        optimizer.step()
    assert start > 0.4 and singular_value_loss(z).item() < 0.02
    zn = F.normalize(z.detach(), dim=-1)
    torch.testing.assert_close(zn.T @ zn / 16, torch.eye(4) / 4, atol=0.02, rtol=0)  # the sphere's second moment


def test_multiview_centroid_loss_hand_computed():
    # 3 views (V) of 2 images (B) in 2-D.
    # image 0: target views (1,0), (0,1), (2,0) -> unit (1,0), (0,1), (1,0) -> centroid direction (2,1)/sqrt5;
    #   online (1,0), (0,2), (3,0): cosines 2/sqrt5, 1/sqrt5, 2/sqrt5 -> losses 2 - 4/sqrt5, 2 - 2/sqrt5, 2 - 4/sqrt5
    # image 1: target (0,1), (0,1), (0,3) -> centroid (0,1); online (0,1), (1,0), (0,-1): losses 0, 2, 4
    # mean over the 6 = (12 - 10/sqrt5) / 6 = 2 - sqrt(5)/3
    target = t([[[1, 0], [0, 1]], [[0, 1], [0, 1]], [[2, 0], [0, 3]]])  # (V=3, B=2, 2)
    online = t([[[1, 0], [0, 1]], [[0, 2], [1, 0]], [[3, 0], [0, -1]]])  # (V=3, B=2, 2)
    assert multiview_centroid_loss(online, target).item() == pytest.approx(2 - math.sqrt(5) / 3, abs=1e-6)
    # all views on the centroid: 0; the same online centroid but spread views: > 0 (it pulls views together)
    assert multiview_centroid_loss(t([[[2, 1]]] * 3), target[:, :1]).item() == pytest.approx(0.0, abs=1e-6)


def test_brownian_directions_and_loss_with_a_fixed_generator():
    r = brownian_directions(2, 3, generator=torch.Generator().manual_seed(7))  # (B=2, D=3)
    g = torch.randn(2, 3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(r, g / g.norm(dim=1, keepdim=True))
    torch.testing.assert_close(r.norm(dim=1), torch.ones(2))
    z = t([[[1, 0, 0], [0, 2, 0]], [[0, 0, 3], [1, 1, 0]]]).requires_grad_()  # (V=2, B=2, D=3)
    expected = sum(F.cosine_similarity(z[v, b], r[b], dim=0) for v in range(2) for b in range(2)) / 4
    loss = brownian_loss(z, r)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # hand value, kicks e1 (image 0) and e2 (image 1): cosines 1 (e1), 1 (2 e2), 0 (3 e3), 1/sqrt2 ((1,1,0))
    e = t([[1, 0, 0], [0, 1, 0]])
    assert brownian_loss(z, e).item() == pytest.approx((2 + 1 / math.sqrt(2)) / 4, abs=1e-6)
    # the force: on a unit embedding u, the gradient is r projected on the sphere's tangent plane, / (V B)
    loss.backward()
    u = z[0, 0].detach()  # already unit
    torch.testing.assert_close(z.grad[0, 0], (r[0] - (u @ r[0]) * u) / 4)


def test_losses_run_in_float32_under_bf16_autocast():
    z = torch.randn(2, 8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        zb = z.bfloat16()
        for value in (singular_value_loss(zb), brownian_loss(zb, brownian_directions(8, 4)),
                      multiview_centroid_loss(zb, zb)):
            assert value.dtype == torch.float32 and torch.isfinite(value)


# ---------------------------------------------------------------- method

def test_method_loss_is_the_weighted_sum_of_its_terms():
    m = build(centroid_weight=0.7, singular_weight=2.0, brownian_weight=0.3)
    b = batch(n=8, n_global=4)
    torch.manual_seed(5)
    out = m(b)
    V, B = 4, 8
    assert out["features"].shape == (V * B, m.backbone.dim) and out["embeddings"].shape == (V * B, 32)
    with torch.no_grad():
        x = torch.cat(b.views)
        z = m.projector(m.backbone(x)).view(V, B, -1)
        p = m.predictor(z.view(V * B, -1)).view(V, B, -1)
        target = m.teacher(x).view(V, B, -1)
        torch.manual_seed(5)
        r = brownian_directions(B, 32)
    terms = {"centroid": multiview_centroid_loss(p, target), "singular": singular_value_loss(z),
             "brownian": brownian_loss(z, r)}
    for key, value in terms.items():
        assert out[key].item() == pytest.approx(value.item(), abs=1e-5), key
    expected = 0.7 * terms["centroid"] + 2.0 * terms["singular"] + 0.3 * terms["brownian"]
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-5)
    out["loss"].backward()
    assert all(q.grad is None for q in m.teacher.parameters())
    assert all(q.grad is not None for q in m.backbone.parameters())


def test_method_views_and_options():
    m = build()
    assert type(m).views == {"n_global": 4, "n_local": 0}
    out = m(batch(n=8, n_global=2))  # views.n_global can be lowered to 2
    assert out["embeddings"].shape == (16, 32)
    # the layout is checked before training (the trainer calls check_views), not inside forward
    assert type(m).check_views(1, 0) == "n_global=1, and it takes at least 2"
    assert type(m).check_views(4, 2) == "n_local=2, and it takes 0"
    assert type(m).check_views(6, 0) is None
    with pytest.raises(ConfigError, match="momentum"):
        build(base_momentum=1.0, final_momentum=0.9)
    with pytest.raises(ConfigError, match="weights"):
        build(brownian_weight=-0.1)


def test_teacher_is_an_ema_of_the_student():
    m = build(base_momentum=0.9)
    before = [q.clone() for q in m.teacher.parameters()]
    optimizer = torch.optim.SGD([q for q in m.parameters() if q.requires_grad], lr=0.1)
    m(batch(n=8))["loss"].backward()
    optimizer.step()
    m.on_step_end(0.0)  # momentum 0.9 at progress 0
    student = list(m.backbone.parameters()) + list(m.projector.parameters())
    for old, new, s in zip(before, m.teacher.parameters(), student):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * s)
    assert m.momentum_at(1.0) == 1.0


def test_state_dict_round_trip():
    a = build()
    optimizer = torch.optim.SGD([q for q in a.parameters() if q.requires_grad], lr=0.1)
    for step in range(3):
        torch.manual_seed(step)
        optimizer.zero_grad()
        a(batch(n=8, seed=step))["loss"].backward()
        optimizer.step()
        a.on_step_end((step + 1) / 10)
    state = a.state_dict()
    assert any(key.startswith("teacher.") for key in state)
    torch.manual_seed(123)
    b = build()
    b.load_state_dict(state)
    nxt = batch(n=8, seed=9)
    torch.manual_seed(4)
    la = a(nxt)["loss"].item()
    torch.manual_seed(4)
    assert b(nxt)["loss"].item() == la


def test_resume_is_bit_identical(fmnist_npz, tmp_path):
    def tiny(out):
        return C.load(overrides=[f"data.name={fmnist_npz}", f"out={out}", "method.name=msbreg", "train.steps=6",
                                 "train.batch_size=32", "train.checkpoint_every=3", "train.progress=false",
                                 "backbone.width=8", "method.hidden_dim=32", "method.pred_hidden_dim=32",
                                 "method.out_dim=16", "optim.warmup_steps=2"])

    state = assert_resume_bit_identical(tiny, tmp_path)
    assert any(key.startswith("teacher.") for key in state)


# ---------------------------------------------------------------- auxiliary

def test_auxiliary_contract():
    cls = registry.get("auxiliary", "msbreg")
    assert cls.needs == ("embeddings",) and "arXiv:2207.03552" in cls.paper and cls.default_weight == 1.0
    m = auxiliaries.attach(build("simclr"), [{"name": "msbreg"}])
    assert m.aux_weights == {"msbreg": 1.0}
    with pytest.raises(ConfigError, match="no option"):
        auxiliaries.attach(build("simclr"), [{"name": "msbreg", "temperature": 0.1}])
    with pytest.raises(ConfigError, match="brownian_weight"):
        auxiliaries.attach(build("simclr"), [{"name": "msbreg", "brownian_weight": -1.0}])


@pytest.mark.parametrize("name", ["simclr", "byol"])
def test_auxiliary_weight_is_applied_exactly(name):
    m = auxiliaries.attach(build(name), [{"name": "msbreg", "weight": 0.37, "brownian_weight": 0.5}])
    b = batch(n=8, n_global=2)
    out = m(b)
    base = out["loss"].item()
    torch.manual_seed(11)
    terms = m.auxiliaries["msbreg"](b, out)
    B = 8
    z = out["embeddings"].detach().view(2, B, -1)
    torch.manual_seed(11)
    r = brownian_directions(B, z.shape[-1])
    assert terms["loss"].item() == pytest.approx((singular_value_loss(z) + 0.5 * brownian_loss(z, r)).item(), abs=1e-6)
    torch.manual_seed(11)
    total = auxiliaries.add_losses(m, b, dict(out))
    assert total["loss"].item() == pytest.approx(base + 0.37 * terms["loss"].item(), abs=1e-6)
    assert total["msbreg_loss"].item() == pytest.approx(terms["loss"].item(), abs=1e-7)
    assert {"msbreg_singular", "msbreg_brownian"} <= total.keys()


def test_auxiliary_on_single_view_embeddings():
    # an asymmetric method may cover one view only ((B, D) embeddings): V = 1
    m = auxiliaries.attach(build("simclr"), [{"name": "msbreg"}])
    b = batch(n=8, n_global=2)
    z = torch.randn(8, 32)
    terms = m.auxiliaries["msbreg"](b, {"embeddings": z})
    assert terms["singular"].item() == pytest.approx(singular_value_loss(z).item(), abs=1e-6)


@pytest.mark.parametrize("name", ["simclr", "byol"])
def test_auxiliary_learns_with_the_method_on_a_fixed_batch(name):
    m = auxiliaries.attach(build(name), [{"name": "msbreg", "weight": 1.0}])
    b = batch(n=32, n_global=2)
    optimizer = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=2e-3)
    losses, singular = [], []
    for step in range(8):
        torch.manual_seed(step)
        b.progress = step / 8
        out = auxiliaries.add_losses(m, b, m(b))
        assert torch.isfinite(out["loss"])
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        m.on_step_end((step + 1) / 8)
        losses.append(out["loss"].item())
        singular.append(out["msbreg_singular"].item())
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses
    assert singular[-1] < singular[0], singular  # the spectrum got flatter
