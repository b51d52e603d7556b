"""Every registered method: builds, runs forward/backward on real images, and learns on a fixed batch.

Plus the parts with exact expectations: BYOL's EMA teacher and momentum schedule, the Barlow Twins
and VICReg methods agreeing with their loss functions, MAE's masking.
"""
from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError
from selfsup.losses import barlow_twins, vicreg
from selfsup.methods.base import Batch, Method
from selfsup.views import ImageViews, fmnist_views

FMNIST_TRAIN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
MEAN, STD = [0.286], [0.353]
TOKEN_FAMILIES = {"masked"}  # families whose methods need forward_tokens / patchify (a ViT)
# Small heads so the whole file stays fast on 2 cores; the defaults are checked separately.
SMOKE_OPTIONS = {
    "byol": dict(hidden_dim=128, pred_hidden_dim=128, out_dim=64),
    "barlow_twins": dict(hidden_dim=128, out_dim=128),
    "mixed_barlow_twins": dict(hidden_dim=128, out_dim=128),
    "vicreg": dict(hidden_dim=128, out_dim=128),
    # GroCo at the paper's steepness 1 has a high floor (a perfectly ordered row still costs 0.15 of the 0.20
    # a tied one does), so 10 steps move it only ~5.5%; a steeper Cauchy shows the same learning with margin.
    "groco": dict(hidden_dim=64, out_dim=64, steepness=4.0),
    "mae": dict(decoder_dim=32, decoder_depth=1, decoder_heads=2),
    "moco_v2": dict(hidden_dim=128, out_dim=64, queue_size=512),
    "moco_v3": dict(hidden_dim=128, out_dim=64),
    "simsiam": dict(hidden_dim=128, out_dim=128, pred_hidden_dim=32),
    "nnclr": dict(hidden_dim=128, out_dim=64, pred_hidden_dim=128, support_size=512),
    # Over 10 steps on one batch DINO's loss is dominated by the teacher's entropy rising while the center
    # catches up with its mean output; a slower center and a constant teacher temperature (0.04, the
    # official code's default) leave the student-learns-the-teacher part visible.
    "dino": dict(hidden_dim=128, bottleneck_dim=64, out_dim=256, teacher_temperature=0.04, center_momentum=0.99),
    "swav": dict(hidden_dim=128, out_dim=64, n_prototypes=64, queue_length=0),
    "obow": dict(num_words=256),
    "mugs": dict(hidden_dim=128, out_dim=64, pred_hidden_dim=128, bottleneck_dim=64, n_prototypes=256,
                 queue_size=512, memory_size=512, center_momentum=0.99),
    "msbreg": dict(hidden_dim=128, pred_hidden_dim=128, out_dim=64),
}


# Methods for which "the loss falls on one fixed batch" is false by construction, each with its own learning test.
NOT_ON_A_FIXED_BATCH = {
    "moco_v2": "its queue fills with this batch's own keys, copies of the positives, so the loss has to rise "
               "(test_contrastive_methods.py::test_moco_v2_learns_against_a_fixed_queue checks learning)",
    "mugs": "its two queues fill with this batch's own teacher embeddings, copies of the positives, so the "
            "InfoNCE terms have to rise (test_mugs.py::test_learns_against_fixed_queues checks learning)",
}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """The first 512 Fashion-MNIST train images, uint8 (512, 1, 28, 28)."""
    if not FMNIST_TRAIN.is_file():
        pytest.skip("Fashion-MNIST is not installed at /usr/share/datasets/fashion-mnist")
    n = 512
    with gzip.open(FMNIST_TRAIN) as f:
        x = np.frombuffer(f.read(16 + n * 784), np.uint8, offset=16).reshape(n, 1, 28, 28)
    return torch.from_numpy(x.copy())


def small_backbone(cls: type[Method]):
    if "node_mlp" in getattr(cls, "preferred_backbones", {}).values():  # SCGC refuses any other encoder
        return build_backbone("node_mlp", in_channels=5, hidden_dims=[16], out_dim=8)
    if cls.family in TOKEN_FAMILIES:
        return build_backbone("vit_tiny", in_channels=1, image_size=28, patch_size=7, dim=32, depth=1, heads=2)
    return build_backbone("convnet6", in_channels=1, image_size=28, width=8)


def make_batch(cls: type[Method], images: torch.Tensor, n: int, seed: int = 0) -> Batch:
    layout = cls.views
    config = dataclasses.replace(fmnist_views(), n_global=layout["n_global"], n_local=layout.get("n_local", 0))
    views, params = ImageViews(config, MEAN, STD)(images[:n], torch.Generator().manual_seed(seed))
    labels = torch.arange(n) % 10 if cls.needs_labels else None  # stand-in classes for supervised methods
    return Batch(views, params, images[:n], labels, torch.arange(n), 0.0, layout["n_global"], layout.get("n_local", 0))


def runs_on_images(name: str) -> bool:
    """Whether the method runs on images with this file's backbones (series-only methods need
    per-timestep outputs, graph-only ones graphs: tests/test_modality_smoke.py runs those)."""
    from selfsup.capabilities import unmet
    from selfsup.modalities import modality_of

    cls = registry.get("method", name)
    return not unmet(cls.requires, modality_of("image"), small_backbone(cls))


IMAGE_METHODS = [name for name in registry.names("method") if runs_on_images(name)]


def build(name: str, seed: int = 0) -> Method:
    torch.manual_seed(seed)
    cls = registry.get("method", name)
    return cls(small_backbone(cls), **SMOKE_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", registry.names("method"))
def test_contract(name):
    cls = registry.get("method", name)
    assert issubclass(cls, Method)
    assert "arXiv:" in cls.paper and cls.family
    assert cls.views["n_global"] >= 1 and cls.views.get("n_local", 0) >= 0
    assert cls.__doc__ and len(cls.__doc__) > 100  # the recipe is explained
    method = cls(small_backbone(cls))  # builds with its own (paper) defaults
    assert method.backbone.dim > 0


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_smoke_learns_on_a_fixed_batch(name, images):
    method = build(name)
    batch = make_batch(type(method), images, n=48)
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=2e-3)
    method.train()
    losses, steps = [], 10
    for step in range(steps):
        torch.manual_seed(step)  # as the trainer does: MAE's masks come from the global RNG
        batch.progress = step / steps
        out = method(batch)
        loss = out["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss), f"{name}: loss {loss}"
        for key, value in out.items():
            assert not (torch.is_tensor(value) and key not in ("loss", "features", "embeddings") and value.requires_grad), f"{name}: log {key} not detached"
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), f"{name}: backbone gradients"
        optimizer.step()
        method.on_step_end((step + 1) / steps)
        losses.append(loss.item())
    if name in NOT_ON_A_FIXED_BATCH:
        return
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.95 * first, f"{name}: loss did not fall on a fixed batch: {losses}"


# ---------------------------------------------------------------- BYOL

def test_byol_momentum_schedule():
    byol = registry.get("method", "byol")(small_backbone(registry.get("method", "byol")), base_momentum=0.99)
    # 1 - (1 - 0.99) * (cos(pi p) + 1) / 2: 0.99 at the start, halfway 0.995, 1.0 at the end
    assert byol.momentum_at(0.0) == pytest.approx(0.99, abs=1e-12)
    assert byol.momentum_at(0.5) == pytest.approx(0.995, abs=1e-12)
    assert byol.momentum_at(1.0) == pytest.approx(1.0, abs=1e-12)
    assert byol.momentum_at(0.25) == pytest.approx(1 - 0.01 * (np.cos(np.pi / 4) + 1) / 2, abs=1e-12)


def test_byol_ema_teacher(images):
    byol = build("byol")
    student = torch.nn.Sequential(byol.backbone, byol.projector)
    assert all(not p.requires_grad for p in byol.teacher.parameters())
    for s, t in zip(student.state_dict().values(), byol.teacher.state_dict().values()):
        assert torch.equal(s, t)  # the teacher starts as a copy of the student
    optimizer = torch.optim.SGD([p for p in byol.parameters() if p.requires_grad], lr=0.1)
    out = byol(make_batch(type(byol), images, n=32))
    out["loss"].backward()
    assert all(p.grad is None for p in byol.teacher.parameters())  # no gradient reaches the teacher
    optimizer.step()
    old = [p.detach().clone() for p in byol.teacher.parameters()]
    byol.on_step_end(0.5)
    m = 0.995
    for t_old, s, t_new in zip(old, student.parameters(), byol.teacher.parameters()):
        expected = t_old.double() * m + s.detach().double() * (1 - m)
        torch.testing.assert_close(t_new.double(), expected, rtol=0, atol=1e-7)
    assert any(not torch.equal(a, b) for a, b in zip(old, byol.teacher.parameters()))  # it did move
    for s, t in zip(student.buffers(), byol.teacher.buffers()):
        assert torch.equal(s, t)  # BatchNorm running statistics copied
    assert not any(k.startswith("teacher.") for k, p in byol.named_parameters() if p.requires_grad)


def test_byol_rejects_bad_momentum():
    with pytest.raises(ConfigError, match="base_momentum"):
        registry.get("method", "byol")(small_backbone(registry.get("method", "byol")), base_momentum=1.2)


# ---------------------------------------------------------------- methods agree with their losses

@pytest.mark.parametrize("name, loss_fn, head", [("barlow_twins", barlow_twins, "projector"), ("vicreg", vicreg, "expander")])
def test_method_loss_matches_loss_function(name, loss_fn, head, images):
    method = build(name)
    batch = make_batch(type(method), images, n=32)
    out = method(batch)
    with torch.no_grad():  # train-mode BatchNorm: the same inputs give the same outputs again
        z1, z2 = getattr(method, head)(method.backbone(torch.cat(batch.views))).chunk(2)
    assert out["loss"].item() == pytest.approx(loss_fn(z1, z2).item(), rel=1e-5)


# ---------------------------------------------------------------- MAE

def test_mae_masking(images):
    mae = build("mae")
    N = mae.backbone.num_patches  # (28 / 7)^2 = 16
    torch.manual_seed(0)
    keep, mask = mae.random_keep(8, torch.device("cpu"))
    assert keep.shape == (8, 4) and mask.shape == (8, N)  # int(16 * 0.25) = 4 visible patches
    assert (mask.sum(1) == N - 4).all()
    assert all(len(set(row.tolist())) == 4 for row in keep)
    assert (mask.gather(1, keep) == 0).all()
    assert len({tuple(sorted(row.tolist())) for row in keep}) > 1  # per-sample masks differ
    x = make_batch(type(mae), images, n=8).views[0]
    pred = mae.forward_decoder(mae.backbone.forward_tokens(x, keep), keep)
    assert pred.shape == (8, N, 7 * 7)


def test_mae_needs_a_token_backbone():
    with pytest.raises(ConfigError, match="token backbone"):
        registry.get("method", "mae")(build_backbone("convnet6", in_channels=1, image_size=28, width=8))
    vit = build_backbone("vit_tiny", in_channels=1, image_size=28, patch_size=7, dim=32, depth=1, heads=2)
    with pytest.raises(ConfigError, match="mask_ratio"):
        registry.get("method", "mae")(vit, mask_ratio=0.99, decoder_dim=32, decoder_depth=1, decoder_heads=2)
