"""The scatnet backbone (ScatSimCLR's fixed scattering + trainable adapter): shapes, what is trained and
saved, precision, the error without kymatio, and its speed next to convnet6."""
from __future__ import annotations

import builtins
import copy
import importlib.util
import time

import pytest
import torch
from torch import nn

from selfsup.backbones import build_backbone
from selfsup.backbones.scattering import ScatNet, scattering_channels
from selfsup.errors import ConfigError

needs_kymatio = pytest.mark.skipif(importlib.util.find_spec("kymatio") is None, reason="kymatio is not installed")
TINY = {"in_channels": 1, "image_size": 28, "width": 4, "blocks": 1}


@needs_kymatio
def test_output_shape_channels_and_other_input_sizes():
    torch.manual_seed(0)
    model = build_backbone("scatnet", **TINY)
    assert model.scattering_channels == 81 == 1 + 2 * 8 + 8 * 8 * 2 * 1 // 2  # the paper's J=2, L=8
    assert scattering_channels(3, 1, 4) == 15 and model.dim == 16 and model.map_dims == [8, 16]
    x = torch.randn(5, 1, 28, 28)
    assert model.scatter(x).shape == (5, 81, 7, 7)  # a quarter of the resolution (2^J = 4)
    assert model(x).shape == (5, 16)
    assert model(torch.randn(3, 1, 12, 12)).shape == (3, 16)  # a local view: its own cached filters
    rgb = build_backbone("scatnet", in_channels=3, image_size=32, J=1, L=4, width=4, blocks=1)
    assert rgb.scatter(torch.randn(2, 3, 32, 32)).shape == (2, 15, 16, 16) and rgb(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    with pytest.raises(ConfigError, match="at least 4 pixels"):
        model(torch.randn(2, 1, 3, 3))
    with pytest.raises(ConfigError, match="J >= 1"):
        build_backbone("scatnet", in_channels=1, J=0)


@needs_kymatio
def test_scattering_is_not_trained_nor_saved_and_gradients_reach_the_adapter():
    torch.manual_seed(0)
    model = build_backbone("scatnet", **TINY)
    model(torch.randn(4, 1, 28, 28))
    filters = [m for m in model._filters.values()]
    assert filters and all(isinstance(m, nn.Module) for m in filters)
    assert not any(m in filters for m in model.modules())  # outside the module tree
    filter_ids = {id(t) for m in filters for t in list(m.buffers()) + list(m.parameters())}
    assert not filter_ids & {id(p) for p in model.parameters()}
    assert all(name.split(".")[0] in ("scatter_norm", "stem", "layer1", "layer2") for name, _ in model.named_parameters())
    # state_dict = parameters + BatchNorm statistics only: no scattering filters in checkpoints/encoders.
    assert all(name.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")
               for name, _ in model.named_buffers())
    state = model.state_dict()
    assert sum(v.numel() for v in state.values()) == (sum(p.numel() for p in model.parameters())
                                                       + sum(b.numel() for b in model.buffers()))
    # Gradients: every trainable parameter gets one; the scattering builds no graph for a data input.
    x = torch.randn(4, 1, 28, 28)
    assert not model.scatter(x).requires_grad
    model(x).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # An input that wants a gradient gets one through the (fixed) scattering.
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    # A deep copy (EMA teachers) has the same buffers and gives the same output.
    model.eval()
    teacher = copy.deepcopy(model)
    assert len(list(teacher.buffers())) == len(list(model.buffers()))
    with torch.no_grad():
        assert torch.equal(teacher(x), model(x))


@needs_kymatio
def test_exported_encoder_holds_only_the_adapter_and_reproduces_the_features(tmp_path):
    from selfsup.encoder import WEIGHTS, Encoder, load_encoder, save_encoder

    torch.manual_seed(0)
    model = build_backbone("scatnet", **TINY)
    model(torch.randn(8, 1, 28, 28))  # BatchNorm statistics move away from their initial values
    encoder = Encoder(model.eval(), [0.3], [0.3], "image")
    save_encoder(encoder, tmp_path)
    n_floats = sum(v.numel() for v in model.state_dict().values())
    assert (tmp_path / WEIGHTS).stat().st_size < 4 * n_floats + 20_000  # weights + header, no filters
    loaded = load_encoder(tmp_path)
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))


@needs_kymatio
def test_bf16_autocast_and_channels_last_run_the_scattering_in_float32():
    torch.manual_seed(0)
    model = build_backbone("scatnet", in_channels=3, image_size=16, width=4, blocks=1).eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        reference_s, reference = model.scatter(x), model(x)
    model = model.to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    assert not xc.is_contiguous()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        s, out = model.scatter(xc), model(xc)
    assert s.dtype == torch.float32 and torch.equal(s, reference_s)  # exactly the float32 coefficients
    assert s.is_contiguous(memory_format=torch.channels_last)  # handed to the adapter in its format
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)  # bf16 adapter, float32 scattering


def test_missing_kymatio_is_a_config_error_with_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def no_kymatio(name, *args, **kwargs):
        if name == "kymatio" or name.startswith("kymatio."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kymatio)
    with pytest.raises(ConfigError, match=r"pip install selfsup\[scatter\]") as info:
        build_backbone("scatnet", in_channels=1, image_size=28)
    assert "kymatio" in str(info.value)
    with pytest.raises(ConfigError, match=r"pip install selfsup\[scatter\]"):
        ScatNet(in_channels=1)


@needs_kymatio
def test_speed_of_forward_backward_at_batch_256_against_convnet6(capsys):
    # Timed, printed and reported; not asserted (the machine is shared). Paper sizes: J=2, L=8, w=32, 4+4 blocks.
    x = torch.rand(256, 1, 28, 28)
    times = {}
    for name, kwargs in [("convnet6", {}), ("scatnet", {})]:
        torch.manual_seed(0)
        model = build_backbone(name, in_channels=1, image_size=28, **kwargs)
        model(x[:8]).sum().backward()  # warm up (and build the scattering filters)
        model.zero_grad()
        wall, cpu = time.perf_counter(), time.process_time()  # CPU time: less sensitive to other load (1 thread)
        model(x).square().mean().backward()
        times[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        if name == "scatnet":
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                model.scatter(x)
            times["scattering"] = (time.perf_counter() - wall, time.process_time() - cpu)
        times[name + " params"] = sum(p.numel() for p in model.parameters())

    def ms(key):
        return f"{times[key][0] * 1e3:.0f} ms wall / {times[key][1] * 1e3:.0f} ms CPU"

    with capsys.disabled():
        print(f"\nforward+backward, batch 256, 1x28x28, 1 thread: convnet6 {ms('convnet6')} "
              f"({times['convnet6 params']:,} params); scatnet {ms('scatnet')} ({times['scatnet params']:,} params), "
              f"of which the scattering forward {ms('scattering')}")
    assert min(times["scatnet"] + times["convnet6"]) > 0
