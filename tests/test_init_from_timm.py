"""Continual pretraining from a timm model: ``train.init_from=timm:MODEL`` (timm's cached pretrained
weights) or ``timm:MODEL=FILE`` (a state dict on disk). Nothing is ever downloaded, the first
convolution is adapted to the data's channels as timm does it, the input normalization is the
model's pretraining one, and the exported encoder rebuilds offline from its spec.

timm is an optional extra that needs torchvision; the tests that build a timm model skip without it
(timm is not in the `test` extra: the torchvision wheels the CI can install are built against
another torch than the CPU one it pins). The refusals that need no timm run everywhere.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import selfsup
from selfsup.config import from_dict
from selfsup.errors import CheckpointError, ConfigError
from selfsup.train.assemble import assemble

MODEL = "test_efficientnet"  # timm's 99k-parameter test model, pretrained on ImageNet statistics
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def needs_timm():
    return pytest.importorskip("timm", reason="timm (and the torchvision it needs) is not installed")


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    """96 one-channel 28x28 images (a smooth random pattern per image), as an .npz file."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28] / 27.0
    phases = rng.uniform(0, 2 * np.pi, (96, 2))
    x = (127.5 * (1 + np.sin(6 * xx[None] + phases[:, :1, None]) * np.cos(4 * yy[None] + phases[:, 1:, None])))
    path = tmp_path_factory.mktemp("gray") / "gray.npz"
    np.savez(path, x=x.astype(np.uint8), y=np.arange(96) % 4)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A state dict of MODEL (with its ImageNet classifier) as .safetensors and .pth, and the tensors."""
    timm = needs_timm()
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in timm.create_model(MODEL, pretrained=False).state_dict().items()}
    root = tmp_path_factory.mktemp("weights")
    save_file(state, str(root / f"{MODEL}.safetensors"))
    torch.save(state, root / f"{MODEL}.pth")
    return root / f"{MODEL}.safetensors", root / f"{MODEL}.pth", state


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt to reach the network for weights fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    for module in ("huggingface_hub", "timm.models._hub"):
        if module in sys.modules and hasattr(sys.modules[module], "hf_hub_download"):
            monkeypatch.setattr(sys.modules[module], "hf_hub_download", refuse)


def config(data, init, tmp_path, **train):
    return {"data": {"name": str(data)}, "method": {"name": "simclr"},
            "train": {"init_from": init, "device": "cpu", "batch_size": 16, "steps": 2, "progress": False,
                      "checkpoint_every": 2, **train},
            "out": str(tmp_path / "run")}


def assert_holds(backbone, state):
    """The timm backbone holds `state` (1 channel: the first convolution is the sum over RGB)."""
    got = backbone.model.state_dict()
    assert set(got) == set(state) - {"classifier.weight", "classifier.bias"}
    for key, value in got.items():
        want = state[key].sum(1, keepdim=True) if key == "conv_stem.weight" else state[key]
        torch.testing.assert_close(value, want, rtol=0, atol=1e-6 if key == "conv_stem.weight" else 0, msg=key)


def test_a_weights_file_starts_the_backbone_with_timm_normalization(gray, weights, tmp_path):
    """Before any step the backbone holds the file's weights, the first convolution summed over RGB
    for the 1-channel data, and the run normalizes with the model's ImageNet mean/std (for one
    channel, their mean), not the data's."""
    run = assemble(from_dict(config(gray, f"timm:{MODEL}={weights[0]}", tmp_path)), torch.device("cpu"))
    assert run.backbone_name == "timm"
    assert run.method.backbone.spec == {"name": "timm", "in_channels": 1, "image_size": 28, "model": MODEL}
    assert_holds(run.method.backbone, weights[2])
    assert run.mean == pytest.approx([sum(IMAGENET_MEAN) / 3]) and run.std == pytest.approx([sum(IMAGENET_STD) / 3])
    assert all(p.requires_grad for p in run.method.backbone.parameters())


def test_pretrain_from_a_pth_file_exports_an_encoder_that_rebuilds_offline(gray, weights, tmp_path, monkeypatch):
    """Two steps from a .pth state dict; the exported encoder's spec names the model only (no
    weights file, no pretrained flag) and it loads with the file gone and timm never asked for
    pretrained weights."""
    import shutil

    import timm

    from selfsup.encoder import load_encoder

    pth = tmp_path / "copy.pth"
    shutil.copy(weights[1], pth)
    run = selfsup.pretrain(config(gray, f"timm:{MODEL}={pth}", tmp_path), evaluate=False, report=False)
    pth.unlink()
    create = timm.create_model

    def offline_create(*args, **kwargs):
        assert not kwargs.get("pretrained") and "pretrained_cfg_overlay" not in kwargs
        return create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline_create)
    encoder = load_encoder(run.run_dir)
    assert encoder.backbone.spec == {"name": "timm", "in_channels": 1, "image_size": 28, "model": MODEL}
    assert encoder.mean.flatten().tolist() == pytest.approx([sum(IMAGENET_MEAN) / 3])
    moved = [k for k, v in encoder.backbone.model.state_dict().items()
             if v.is_floating_point() and k in weights[2] and k != "conv_stem.weight" and not torch.equal(v, weights[2][k])]
    assert moved  # it trained
    x = torch.from_numpy(np.load(gray)["x"][:4, None])
    assert encoder(x).shape == (4, encoder.dim) and torch.isfinite(encoder(x)).all()


def test_adapters_in_a_timm_backbone(gray, weights, tmp_path):
    """train.adapters wraps the timm model's convolutions wider than 1: only the adapters train, and
    the exported encoder rebuilds them from its spec."""
    from selfsup.encoder import load_encoder

    run = selfsup.pretrain(config(gray, f"timm:{MODEL}={weights[0]}", tmp_path, adapters=4), evaluate=False,
                           report=False)
    encoder = load_encoder(run.run_dir)
    assert encoder.backbone.spec["adapters"] == 4
    state = encoder.backbone.model.state_dict()
    adapters = [k for k in state if ".adapter." in k]
    assert adapters and any(not torch.all(state[k] == 0) for k in adapters if ".up.weight" in k)
    for key, value in state.items():
        if ".adapter." in key:
            continue
        original = key.replace(".base.", ".")
        want = weights[2][original].sum(1, keepdim=True) if original == "conv_stem.weight" else weights[2][original]
        torch.testing.assert_close(value, want, rtol=0, atol=1e-6, msg=key)  # frozen, statistics included


def fake_hub_cache(root, weights_file):
    """timm's cached pretrained weights as huggingface_hub lays them out (refs/main -> a snapshot)."""
    import shutil

    import timm

    repo = timm.models.get_pretrained_cfg(MODEL).hf_hub_id
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    shutil.copy(weights_file, folder / "snapshots" / ("0" * 40) / "model.safetensors")


def test_timm_model_from_the_local_cache_and_not_cached(gray, weights, tmp_path, monkeypatch):
    """timm:MODEL takes the weights from the Hugging Face cache on this machine; with an empty cache
    it is a ConfigError naming the model and the ways out, before the run directory is written."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match=f"weights of timm model '{MODEL}' are not on this machine.*"
                                          f"timm:{MODEL}=PATH"):
        assemble(from_dict(config(gray, f"timm:{MODEL}", tmp_path)), torch.device("cpu"))
    fake_hub_cache(tmp_path / "hub", weights[0])
    run = assemble(from_dict(config(gray, f"timm:{MODEL}", tmp_path)), torch.device("cpu"))
    assert_holds(run.method.backbone, weights[2])
    assert not (tmp_path / "run").exists()  # assemble writes nothing


@pytest.mark.parametrize("case", ["unknown", "missing", "mismatch", "empty", "backbone", "kind"])
def test_a_timm_start_that_cannot_work_is_refused_before_any_work(case, gray, tmp_path):
    if case not in ("empty", "kind"):
        needs_timm()
    data, init, backbone, error, match = gray, f"timm:{MODEL}", "auto", ConfigError, ""
    if case == "unknown":
        init, match = "timm:resnet10q=w.safetensors", "unknown timm model 'resnet10q'"
    elif case == "missing":
        init, match = f"timm:{MODEL}={tmp_path / 'no-such.safetensors'}", "no-such.safetensors' for timm model .*does not exist"
    elif case == "mismatch":
        import timm
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()},
                  str(tmp_path / "resnet.safetensors"))
        init, error = f"timm:{MODEL}={tmp_path / 'resnet.safetensors'}", CheckpointError
        match = f"cannot be loaded into timm model '{MODEL}'"
    elif case == "empty":
        init, match = "timm:=w.pth", "names no timm model"
    elif case == "backbone":
        backbone, match = "resnet18", "gives a 'timm' backbone; the config asks for 'resnet18'"
    else:
        rows = "\n".join(f"{i},{i % 3},{i * 0.5}" for i in range(80))
        (tmp_path / "t.csv").write_text("a,b,c\n" + rows + "\n")
        data, match = tmp_path / "t.csv", "is a timm image model"
    cfg = config(data, init, tmp_path)
    cfg["backbone"] = {"name": backbone}
    with pytest.raises(error, match=match):
        selfsup.pretrain(cfg, evaluate=False, report=False)
    assert not (tmp_path / "run").exists()


def test_without_timm_the_error_says_how_to_install_it(gray, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ConfigError, match=r"timm is not installed Fix: pip install 'selfsup\[timm\]'"):
        selfsup.pretrain(config(gray, f"timm:{MODEL}=w.safetensors", tmp_path), evaluate=False, report=False)
    assert not (tmp_path / "run").exists()


def test_a_timm_that_cannot_be_imported_says_what_is_missing(monkeypatch):
    """timm present without its torchvision (or with one built for another torch) is not reported as
    'timm is not installed'."""
    import builtins

    from selfsup.backbones.timm_backbone import _import_timm

    real = builtins.__import__
    for raised, match in [(ModuleNotFoundError("No module named 'torchvision'", name="torchvision"),
                           "timm is installed but cannot be imported.*Fix: install torchvision"),
                          (RuntimeError("operator torchvision::nms does not exist"),
                           "timm cannot be imported: operator torchvision::nms does not exist")]:
        def fake(name, *args, raised=raised, **kwargs):
            if name == "timm":
                raise raised
            return real(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", fake)
        with pytest.raises(ConfigError, match=match):
            _import_timm()
        monkeypatch.undo()
