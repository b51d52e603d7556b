"""Continual pretraining: a run starts its backbone from an earlier run or exported encoder
(``train.init_from`` / ``selfsup pretrain --init-from``), and refuses one that does not fit."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import selfsup
from selfsup.config import from_dict
from selfsup.encoder import load_encoder
from selfsup.errors import CheckpointError, ConfigError
from selfsup.train.assemble import assemble

from tests.conftest import fmnist_arrays


def tiny_run(tmp_path, data, name="first", steps=3, backbone="convnet6"):
    return selfsup.pretrain({"data": {"name": str(data)}, "method": {"name": "simclr"},
                             "backbone": {"name": backbone},
                             "train": {"steps": steps, "batch_size": 32, "progress": False, "checkpoint_every": steps},
                             "out": str(tmp_path / name)}, evaluate=False, report=False)


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """Real Fashion-MNIST images of classes 0-4 and of classes 5-9, 200 each, as two .npz files."""
    x, y = fmnist_arrays(1000)
    root = tmp_path_factory.mktemp("halves")
    old, new = y < 5, y >= 5
    np.savez(root / "old.npz", x=x[old][:200], y=y[old][:200])
    np.savez(root / "new.npz", x=x[new][:200], y=y[new][:200])
    return root / "old.npz", root / "new.npz"


@pytest.fixture(scope="module")
def first(halves, tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("first"), halves[0])


def test_the_backbone_starts_from_the_encoder_with_its_normalization(first, halves, tmp_path):
    """The new run's backbone holds the encoder's weights (and BatchNorm statistics) before its first
    step, and it keeps the encoder's input normalization rather than the new data's."""
    encoder = load_encoder(first.run_dir)
    config = from_dict({"data": {"name": str(halves[1])}, "method": {"name": "simclr"},
                        "train": {"init_from": str(first.run_dir), "device": "cpu", "batch_size": 32}, "out": str(tmp_path / "second")})
    run = assemble(config, torch.device("cpu"))
    assert run.backbone_name == "convnet6"
    for key, value in encoder.backbone.state_dict().items():
        torch.testing.assert_close(run.method.backbone.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert run.mean == encoder.mean.flatten().tolist() and run.std == encoder.std.flatten().tolist()
    new_mean, _ = run.train_set.normalization()
    assert run.mean != list(new_mean)  # the classes 5-9 images have another mean: it is not used


def test_continued_run_trains_and_exports_from_the_encoder(first, halves, tmp_path):
    """`selfsup pretrain --init-from RUN` on new data trains, exports an encoder of the same
    backbone, and its weights moved away from the start."""
    out = tmp_path / "second"
    cmd = [sys.executable, "-m", "selfsup.cli", "pretrain", "--data", str(halves[1]), "--method", "simclr",
           "--init-from", str(first.run_dir), "--steps", "3", "--batch-size", "32", "--out", str(out), "--no-eval",
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    before, after = load_encoder(first.run_dir), load_encoder(out)
    assert after.backbone.spec == before.backbone.spec
    assert after.mean.flatten().tolist() == before.mean.flatten().tolist()
    moved = [k for k, v in after.backbone.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, before.backbone.state_dict()[k])]
    assert moved  # it trained


@pytest.mark.parametrize("case", ["backbone", "shape", "kind", "missing"])
def test_an_encoder_that_does_not_fit_is_refused_before_any_work(case, first, halves, tmp_path):
    data, init, backbone, error = str(halves[1]), str(first.run_dir), "auto", ConfigError
    if case == "backbone":
        backbone = "resnet18"  # the encoder holds a convnet6
    elif case == "shape":
        x = np.zeros((64, 32, 32, 3), np.uint8)  # 3-channel 32x32 images for a 1-channel 28x28 encoder
        np.savez(tmp_path / "rgb.npz", x=x)
        data = str(tmp_path / "rgb.npz")
    elif case == "kind":
        rows = "\n".join(f"{i},{i % 3},{i * 0.5}" for i in range(80))
        (tmp_path / "t.csv").write_text("a,b,c\n" + rows + "\n")
        data = str(tmp_path / "t.csv")
    else:
        init, error = str(tmp_path / "no-such-run"), CheckpointError
    out = tmp_path / "second"
    with pytest.raises(error) as info:
        selfsup.pretrain({"data": {"name": data}, "method": {"name": "simclr"}, "backbone": {"name": backbone},
                          "train": {"init_from": init, "steps": 2, "batch_size": 16, "progress": False},
                          "out": str(out)}, evaluate=False, report=False)
    assert "init_from" in str(info.value) or "no encoder found" in str(info.value)
    assert not out.exists()  # refused before the run directory was written


def test_wsd_and_infinite_schedules_match_hand_computed_values():
    """100 steps, peak 1. WSD: stable at 1, then linear to 0 over the last 20 steps. Infinite: 5
    warmup steps, a 20-step cosine cooldown to 0.25, constant 0.25, then the exponential anneal
    0.25 * 0.4 ** ((step + 1 - 80) / 20) to 0.1 over the last 20 steps."""
    from selfsup.schedules import learning_rate

    wsd = [learning_rate(s, 100, 1.0, 0, "wsd", 0.0) for s in (0, 79, 80, 89, 99)]
    assert wsd == pytest.approx([1.0, 1.0, 0.95, 0.5, 0.0])
    inf = [learning_rate(s, 100, 1.0, 5, "infinite", 0.1, cooldown=20, const_ratio=0.25)
           for s in (0, 4, 5, 14, 24, 25, 79, 80, 99)]
    # step 14: 0.25 + 0.75 / 2 * (1 + cos(0.45 pi)) = 0.68366; step 24: cos(0.95 pi) -> 0.25462
    assert inf == pytest.approx([0.2, 1.0, 1.0, 0.68366, 0.25462, 0.25, 0.25, 0.25 * 0.4 ** 0.05, 0.1], abs=1e-5)
    # a later stage: no warmup, no cooldown: constant from its first step (no re-warming), then the anneal
    later = [learning_rate(s, 50, 1.0, 0, "infinite", 0.1, const_ratio=0.25, decay_steps=10) for s in (0, 39, 49)]
    assert later == pytest.approx([0.25, 0.25, 0.1])


def test_schedules_that_do_not_fit_the_run_are_refused():
    with pytest.raises(ConfigError, match="final_lr_ratio"):
        from_dict({"optim": {"schedule": "infinite"}})  # exponential to 0
    with pytest.raises(ConfigError, match="more than train.steps"):
        from_dict({"train": {"steps": 100}, "optim": {"schedule": "infinite", "final_lr_ratio": 0.1,
                                                      "warmup_steps": 50, "cooldown_steps": 40}})


def test_a_decaying_run_keeps_the_encoder_from_before_its_decay(halves, tmp_path):
    """With wsd or infinite the run also exports `encoder-stable/`, the weights when the final decay
    starts: the checkpoint a next stage continues from (Singh et al.), while `encoder/` is the
    annealed one that is evaluated."""
    run = selfsup.pretrain({"data": {"name": str(halves[0])}, "method": {"name": "simclr"},
                            "optim": {"schedule": "infinite", "final_lr_ratio": 0.1, "decay_steps": 2},
                            "train": {"steps": 5, "batch_size": 32, "progress": False, "checkpoint_every": 5},
                            "out": str(tmp_path / "run")}, evaluate=False, report=False)
    stable, final = load_encoder(run.run_dir / "encoder-stable"), load_encoder(run.run_dir)
    differ = [k for k, v in final.backbone.state_dict().items()
              if v.is_floating_point() and not torch.equal(v, stable.backbone.state_dict()[k])]
    assert differ  # the two decay steps changed the weights after the stable export
    second = selfsup.pretrain({"data": {"name": str(halves[1])}, "method": {"name": "simclr"},
                               "optim": {"schedule": "infinite", "final_lr_ratio": 0.1},
                               "train": {"steps": 5, "batch_size": 32, "progress": False, "checkpoint_every": 5,
                                         "init_from": str(run.run_dir / "encoder-stable")},
                               "out": str(tmp_path / "second")}, evaluate=False, report=False)
    assert (second.run_dir / "encoder-stable").is_dir() and (second.run_dir / "encoder").is_dir()


@pytest.mark.parametrize("name,spec,shape", [
    ("convnet6", {"in_channels": 1, "image_size": 28}, (2, 1, 28, 28)),
    ("resnet18", {"in_channels": 3, "image_size": 32, "stem": "cifar"}, (2, 3, 32, 32)),
    ("vit_tiny", {"in_channels": 3, "image_size": 32, "patch_size": 8}, (2, 3, 32, 32)),
    ("ts2vec_cnn", {"in_channels": 2, "length": 40}, (2, 2, 40)),
    ("patchtst", {"in_channels": 2, "length": 40, "patch_len": 8}, (2, 2, 40)),
])
def test_adapters_start_as_the_identity_and_train_alone(name, spec, shape):
    """Zero-initialized up-projections: the adapted backbone computes what the pretrained one did;
    only adapter parameters train; normalization layers stay in eval mode; the exported encoder
    rebuilds the adapters from its spec and loads its weights."""
    from selfsup.backbones.adapters import add_adapters
    from selfsup.backbones.base import build_backbone
    from selfsup.encoder import Encoder, save_encoder

    torch.manual_seed(0)
    net = build_backbone(name, **spec).eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        before = net(x)
    add_adapters(net, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=0, atol=0)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all(".adapter." in n for n in trainable)
    net.train()
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase))
    assert net.spec["adapters"] == 8
    for p in (p for n, p in net.named_parameters() if p.requires_grad):
        torch.nn.init.normal_(p, std=0.1)  # adapters that learned something
    net.eval()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save_encoder(Encoder(net, [0.0] * spec["in_channels"], [1.0] * spec["in_channels"], "series" if "length" in spec
                             else "image"), tmp)
        loaded = load_encoder(tmp)
    with torch.no_grad():
        torch.testing.assert_close(loaded.backbone(x), net(x))


def test_adapter_pretraining_moves_only_the_adapters(first, halves, tmp_path):
    """Continual pretraining with adapters: after training, every backbone weight and BatchNorm
    statistic is the encoder's, the adapters moved, and the exported encoder carries them."""
    run = selfsup.pretrain({"data": {"name": str(halves[1])}, "method": {"name": "simclr"},
                            "train": {"init_from": str(first.run_dir), "adapters": 8, "steps": 3, "batch_size": 32,
                                      "progress": False, "checkpoint_every": 3}, "out": str(tmp_path / "adapted")},
                           evaluate=False, report=False)
    before, after = load_encoder(first.run_dir).backbone.state_dict(), load_encoder(run.run_dir).backbone.state_dict()
    assert after and all(".adapter." in k or ".base." in k or k in before for k in after)
    for key, value in after.items():
        original = key.replace(".base.", ".")
        if ".adapter." not in key:
            torch.testing.assert_close(value, before[original], rtol=0, atol=0, msg=key)
    assert any(not torch.all(v == 0) for k, v in after.items() if ".adapter.up.weight" in k)


def test_adapters_need_a_pretrained_encoder_and_a_backbone_that_has_room(halves, tmp_path):
    with pytest.raises(ConfigError, match="--init-from"):
        selfsup.pretrain({"data": {"name": str(halves[0])}, "train": {"adapters": 8, "steps": 2, "batch_size": 16},
                          "out": str(tmp_path / "a")}, evaluate=False, report=False)
    from selfsup.backbones.adapters import add_adapters
    from selfsup.backbones.base import build_backbone

    with pytest.raises(ConfigError, match="no place for adapters"):
        add_adapters(build_backbone("mlp", in_channels=5), 4)
