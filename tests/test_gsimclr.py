"""G-SimCLR: the masked NT-Xent, the pseudo-labels of ``prepare`` and a run through the trainer.

The registry-wide smoke test (tests/test_methods.py) covers forward/backward/learning of the
un-prepared method (plain SimCLR); here: the loss against a slow loop, deterministic and
meaningful pseudo-labels, the buffer in the checkpoint, and exact resume.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from selfsup import config as C
from selfsup.errors import ConfigError
from selfsup.losses.contrastive import masked_nt_xent, nt_xent
from selfsup.methods.base import TrainData
from selfsup.methods.gsimclr import GSimCLR
from selfsup.train.loop import train
from tests.conftest import assert_resume_bit_identical, fmnist_arrays
from tests.test_methods import MEAN, STD, make_batch, small_backbone

SMALL = {"hidden_dim": 64, "out_dim": 32}


@pytest.fixture(scope="module")
def data() -> TrainData:
    """The first 500 Fashion-MNIST train images with their labels."""
    x, y = fmnist_arrays(500)
    return TrainData(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y), MEAN, STD)


def gsimclr(seed: int = 0, **options) -> GSimCLR:
    torch.manual_seed(seed)
    return GSimCLR(small_backbone(GSimCLR), **{**SMALL, **options})


# ---------------------------------------------------------------- the loss

def slow_masked_nt_xent(z1, z2, groups, t):
    """The loss written out anchor by anchor, in float64."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    B = len(z1)
    g = groups.tolist() * 2
    total = 0.0
    for a in range(2 * B):
        p = (a + B) % (2 * B)
        pos = math.exp(float(z[a] @ z[p]) / t)
        denom = pos
        for k in range(2 * B):
            if k not in (a, p) and g[k] != g[a]:
                denom += math.exp(float(z[a] @ z[k]) / t)
        total += -math.log(pos / denom)
    return total / (2 * B)


def test_masked_nt_xent_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    groups = torch.tensor([0, 1, 0, 2, 1])
    for t in (0.5, 0.2):
        expected = slow_masked_nt_xent(z1, z2, groups, t)
        assert masked_nt_xent(z1, z2, groups, temperature=t).item() == pytest.approx(expected, rel=1e-5)
    # distinct groups: nothing is masked, it is NT-Xent; one group: only the positive is left, log 1 = 0
    assert masked_nt_xent(z1, z2, torch.arange(5), 0.5).item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-6)
    assert masked_nt_xent(z1, z2, torch.zeros(5, dtype=torch.long), 0.5).item() == pytest.approx(0.0, abs=1e-7)
    # masking negatives can only shrink each denominator
    assert masked_nt_xent(z1, z2, groups, 0.5).item() < nt_xent(z1, z2, 0.5).item()


def test_masked_nt_xent_is_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    groups = torch.tensor([0, 0, 1, 1, 2, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = masked_nt_xent(z1.bfloat16(), z2.bfloat16(), groups, 0.2)
    assert loss.dtype == torch.float32
    expected = slow_masked_nt_xent(z1.bfloat16().float(), z2.bfloat16().float(), groups, 0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- pseudo-labels

def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    return sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters)) / len(labels)


@pytest.mark.parametrize("first_stage, min_nmi, min_purity", [
    # measured on these 500 images, cluster_seed 0-2: pixels NMI 0.53-0.54, purity 0.55-0.60;
    # the autoencoder after only 30 steps NMI 0.42-0.47, purity 0.46-0.51; chance: NMI 0.03-0.05, purity ~0.15
    ("pixels", 0.45, 0.48),
    ("dae", 0.35, 0.40),
])
def test_prepare_is_deterministic_and_agrees_with_the_classes(first_stage, min_nmi, min_purity, data):
    from sklearn.metrics import normalized_mutual_info_score

    options = {"first_stage": first_stage, "first_stage_steps": 30}
    a, b = gsimclr(**options), gsimclr(**options)
    assert a.pseudo_labels.shape == (0,)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    a.prepare(data)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    torch.manual_seed(123)  # a different global RNG state must not matter
    b.prepare(data)
    assert a.pseudo_labels.dtype == torch.long and a.pseudo_labels.shape == (500,)
    assert torch.equal(a.pseudo_labels, b.pseudo_labels)
    assert set(a.pseudo_labels.tolist()) == set(range(10))
    clusters, labels = a.pseudo_labels.numpy(), data.labels.numpy()
    assert normalized_mutual_info_score(labels, clusters) > min_nmi
    assert purity(labels, clusters) > min_purity
    c = gsimclr(**options, cluster_seed=1)
    c.prepare(data)
    assert not torch.equal(a.pseudo_labels, c.pseudo_labels)  # the seed is really used


def test_prepare_needs_enough_images(data):
    small = TrainData(data.samples[:5], None, MEAN, STD)
    with pytest.raises(ConfigError, match="n_clusters"):
        gsimclr(first_stage="pixels").prepare(small)


def test_bad_options():
    with pytest.raises(ConfigError, match="first_stage"):
        gsimclr(first_stage="/no/such/encoder")
    with pytest.raises(ConfigError, match="n_clusters"):
        gsimclr(n_clusters=1)
    with pytest.raises(ConfigError, match="temperature"):
        gsimclr(temperature=0.0)


# ---------------------------------------------------------------- the guided loss

def test_forward_masks_same_pseudo_label_pairs_through_batch_index(data):
    method = gsimclr()
    method.pseudo_labels = torch.arange(500) % 7  # known labels: image i has label i % 7
    batch = make_batch(GSimCLR, data.samples, n=16)
    batch.index = torch.arange(100, 116)  # the images of the batch stand at 100..115 of the dataset
    out = method(batch)
    groups = torch.arange(100, 116) % 7  # labels 2, 3, 4, 5, 6, 0, 1, 2, ...: counts 2, 2, 3, 3, 2, 2, 2
    same = sum(int(n) * (int(n) - 1) for n in torch.bincount(groups))
    assert out["masked_frac"].item() == pytest.approx(same / (16 * 15))
    assert not out["masked_frac"].requires_grad
    with torch.no_grad():  # train-mode BatchNorm: the same inputs give the same outputs again
        z1, z2 = method.projector(method.backbone(torch.cat(batch.views))).chunk(2)
    assert out["loss"].item() == pytest.approx(masked_nt_xent(z1, z2, groups, 0.5).item(), rel=1e-5)
    assert out["loss"].item() < nt_xent(z1, z2, 0.5).item() - 1e-3
    assert out["features"].shape == (32, method.backbone.dim) and out["embeddings"].shape == (32, method.embedding_dim)

    unmasked = gsimclr(mask=False)
    unmasked.load_state_dict(method.state_dict())
    assert unmasked(batch)["loss"].item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-5)


def test_unprepared_method_is_simclr_and_says_so(data):
    method = gsimclr()
    batch = make_batch(GSimCLR, data.samples, n=16)
    with pytest.warns(UserWarning, match="plain SimCLR"):
        out = method(batch)
    assert out["masked_frac"].item() == 0.0
    with torch.no_grad():
        z1, z2 = method.projector(method.backbone(torch.cat(batch.views))).chunk(2)
    assert out["loss"].item() == pytest.approx(nt_xent(z1, z2, 0.5).item(), rel=1e-5)


def test_state_dict_round_trip_keeps_pseudo_labels(data):
    method = gsimclr(first_stage="pixels")
    method.prepare(data)
    restored = gsimclr(seed=1, first_stage="pixels")  # other weights, no pseudo-labels yet
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.pseudo_labels, method.pseudo_labels)
    batch = make_batch(GSimCLR, data.samples, n=32)
    batch.index = torch.arange(200, 232)
    assert method(batch)["loss"].item() == restored(batch)["loss"].item()  # the next loss, exactly


# ---------------------------------------------------------------- through the trainer

def tiny(data, out, steps=6, **options):
    sets = [f"{k}={v}" for k, v in options.items()]
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"train.steps={steps}", "train.batch_size=64",
                             "train.checkpoint_every=3", "train.progress=false", "train.monitor_every=0",
                             "backbone.width=8", "optim.warmup_steps=2", "method.name=gsimclr",
                             "method.hidden_dim=64", "method.out_dim=32", *sets])


def test_train_end_to_end_and_resume_bit_identical(fmnist_npz, tmp_path, data):
    state = assert_resume_bit_identical(lambda out: tiny(fmnist_npz, out, **{"method.first_stage": "pixels"}), tmp_path)
    assert state["pseudo_labels"].shape == (600,) and state["pseudo_labels"].max() == 9
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 < r["masked_frac"] < 0.5 and math.isfinite(r["loss"]) for r in records if "loss" in r)

    # the paper's first stage through the trainer, and an exported encoder as a first stage
    run = train(tiny(fmnist_npz, tmp_path / "dae", steps=2, **{"method.first_stage": "dae",
                                                                  "method.first_stage_steps": 20}))
    assert (run.run_dir / "encoder" / "encoder.safetensors").is_file()
    method = gsimclr(first_stage=str(tmp_path / "full"))
    method.prepare(data)
    assert method.pseudo_labels.shape == (500,) and len(set(method.pseudo_labels.tolist())) == 10
