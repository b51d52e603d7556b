"""The contrastive family's methods: their state (queues, momentum encoders) and exact resume.

The registry-wide smoke test (tests/test_methods.py) covers forward/backward/learning for each;
here: what each method keeps between steps, that it agrees with its loss function, and that a
resumed run continues bit for bit with the queue or support set it had.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_resume_bit_identical
import torch
import torch.nn.functional as F

from selfsup import config as C
from selfsup import registry
from selfsup.errors import ConfigError, DataError
from selfsup.losses.contrastive import info_nce, moco_v3_loss
from selfsup.train.loop import train
from tests.conftest import fmnist_arrays
from tests.test_methods import build, make_batch, small_backbone


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """The first 64 Fashion-MNIST train images, uint8 (64, 1, 28, 28)."""
    return torch.from_numpy(fmnist_arrays(64)[0]).unsqueeze(1)




# ---------------------------------------------------------------- MoCo v2

def test_moco_v2_uses_the_queue_then_enqueues_normalized_keys(images):
    moco = build("moco_v2")  # queue_size 512, out_dim 64
    batch = make_batch(type(moco), images, n=32)
    before = moco.queue.entries.clone()
    out = moco(batch)
    with torch.no_grad():  # train-mode BatchNorm: the same inputs give the same outputs again
        q = moco.projector(moco.backbone(batch.views[0]))
        k = moco.key_encoder(batch.views[1])
    assert out["loss"].item() == pytest.approx(info_nce(q, k, 0.2, before).item(), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is None for p in moco.key_encoder.parameters())
    moco.on_step_end(0.1)
    assert int(moco.queue.ptr) == 32
    torch.testing.assert_close(moco.queue.entries[:32], F.normalize(k, dim=1))
    assert torch.equal(moco.queue.entries[32:], before[32:])  # the rest untouched


def test_moco_v2_learns_against_a_fixed_queue(images):
    # On one fixed batch the queue would fill with copies of its own keys (see NOT_ON_A_FIXED_BATCH);
    # with the queue held fixed, the query must learn to find its key among the negatives.
    moco = build("moco_v2")
    moco.queue.push = lambda x: None
    batch = make_batch(type(moco), images, n=48)
    optimizer = torch.optim.AdamW([p for p in moco.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(10):
        loss = moco(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        moco.on_step_end((step + 1) / 10)
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses


def test_moco_v2_options():
    cls = registry.get("method", "moco_v2")
    with pytest.raises(ConfigError, match="temperature"):
        cls(small_backbone(cls), temperature=0)
    moco = cls(small_backbone(cls), hidden_dim=32, out_dim=16, queue_size=8)
    with pytest.raises(ConfigError, match="queue_size"):
        moco(make_batch(cls, torch.zeros(16, 1, 28, 28, dtype=torch.uint8), n=16))


def test_moco_v2_symmetric_enqueues_both_views(images):
    cls = registry.get("method", "moco_v2")
    moco = cls(small_backbone(cls), hidden_dim=32, out_dim=16, queue_size=64, symmetric=True)
    moco(make_batch(cls, images, n=16))["loss"].backward()
    moco.on_step_end(0.5)
    assert int(moco.queue.ptr) == 32


def test_moco_v2_state_round_trips(images):
    a, b = build("moco_v2", seed=0), build("moco_v2", seed=1)
    batch = make_batch(type(a), images, n=32)
    for _ in range(2):
        a(batch)["loss"].backward()
        a.on_step_end(0.5)
    b.load_state_dict(a.state_dict())
    assert {"queue.entries", "queue.ptr", "queue.count"} <= set(a.state_dict())
    assert torch.equal(a.queue.entries, b.queue.entries) and int(b.queue.ptr) == 64
    assert a(batch)["loss"].item() == b(batch)["loss"].item()


# ---------------------------------------------------------------- MoCo v3

def test_moco_v3_loss_momentum_and_heads(images):
    moco = build("moco_v3")
    assert moco.momentum_at(0.0) == pytest.approx(0.99) and moco.momentum_at(1.0) == pytest.approx(1.0)
    assert isinstance(moco.projector[-1], torch.nn.BatchNorm1d) and not moco.projector[-1].affine
    assert isinstance(moco.predictor[-1], torch.nn.Linear) and moco.predictor[-1].bias is None
    # the momentum encoder is backbone + projector, no predictor
    n_teacher = sum(p.numel() for p in moco.momentum_encoder.parameters())
    assert n_teacher == sum(p.numel() for p in moco.backbone.parameters()) + sum(p.numel() for p in moco.projector.parameters())
    batch = make_batch(type(moco), images, n=32)
    out = moco(batch)
    with torch.no_grad():
        x = torch.cat(batch.views)
        q1, q2 = moco.predictor(moco.projector(moco.backbone(x))).chunk(2)
        k1, k2 = moco.momentum_encoder(x).chunk(2)
    assert out["loss"].item() == pytest.approx(moco_v3_loss(q1, q2, k1, k2, 1.0).item(), rel=1e-5)


# ---------------------------------------------------------------- SimSiam

def test_simsiam_stop_gradient_flag(images):
    batch = make_batch(registry.get("method", "simsiam"), images, n=32)
    grads = {}
    for flag in (True, False):
        torch.manual_seed(0)
        cls = registry.get("method", "simsiam")
        model = cls(small_backbone(cls), hidden_dim=64, out_dim=64, pred_hidden_dim=16, stop_gradient=flag)
        out = model(batch)
        assert 0 < out["z_std"].item() <= 1 and not out["z_std"].requires_grad
        out["loss"].backward()
        grads[flag] = torch.cat([p.grad.flatten() for p in model.projector.parameters() if p.grad is not None])
    assert grads[True].shape == grads[False].shape and not torch.allclose(grads[True], grads[False])
    assert isinstance(model.projector[-1], torch.nn.BatchNorm1d) and not model.projector[-1].affine


# ---------------------------------------------------------------- NNCLR

def test_nnclr_support_set_fills_and_supplies_neighbours(images):
    nnclr = build("nnclr")  # support_size 512, out_dim 64
    batch = make_batch(type(nnclr), images, n=32)
    assert int(nnclr.support.count) == 0
    nnclr(batch)["loss"].backward()
    nnclr.on_step_end(0.1)
    assert int(nnclr.support.count) == 32 and int(nnclr.support.ptr) == 32
    with torch.no_grad():
        z1 = nnclr.projector(nnclr.backbone(torch.cat(batch.views)))[:32]
    torch.testing.assert_close(nnclr.support.entries[:32], F.normalize(z1, dim=1))
    picked = nnclr.support.nearest(z1)  # each projection's neighbour: its own entry, now in the support set
    torch.testing.assert_close(picked, nnclr.support.entries[:32])


def test_nnclr_state_round_trips(images):
    a, b = build("nnclr", seed=0), build("nnclr", seed=1)
    batch = make_batch(type(a), images, n=32)
    for _ in range(2):
        a(batch)["loss"].backward()
        a.on_step_end(0.5)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.support.entries, b.support.entries) and int(b.support.count) == 64
    assert a(batch)["loss"].item() == b(batch)["loss"].item()


# ---------------------------------------------------------------- SupCon

def test_supcon_without_labels_is_a_data_error(images):
    supcon = build("supcon")
    batch = make_batch(type(supcon), images, n=16)
    batch.labels = None
    with pytest.raises(DataError, match="label"):
        supcon(batch)


def test_trainer_refuses_supcon_on_unlabelled_data(tmp_path, images):
    path = tmp_path / "unlabelled.npz"
    np.savez(path, x=images[:, 0].numpy())
    with pytest.raises(DataError, match="labels"):
        train(tiny(path, tmp_path / "run", **{"method.name": "supcon"}))
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------- exact resume through the trainer

def tiny(data, out, steps=6, **options):
    sets = [f"{k}={v}" for k, v in options.items()]
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"train.steps={steps}", "train.batch_size=64",
                             "train.checkpoint_every=3", "train.progress=false", "train.monitor_every=0",
                             "backbone.width=8", "optim.warmup_steps=2", *sets])


@pytest.mark.parametrize("name, options", [
    ("moco_v2", {"method.hidden_dim": 64, "method.out_dim": 32, "method.queue_size": 256}),
    ("nnclr", {"method.hidden_dim": 64, "method.out_dim": 32, "method.pred_hidden_dim": 64, "method.support_size": 256}),
])
def test_resume_is_bit_identical_with_the_queue(name, options, fmnist_npz, tmp_path):
    options = {"method.name": name, **options}
    sa = assert_resume_bit_identical(lambda out: tiny(fmnist_npz, out, **options), tmp_path)
    queue = "queue" if name == "moco_v2" else "support"
    assert int(sa[f"{queue}.ptr"]) == (6 * 64) % 256  # six batches of 64 went through a queue of 256
