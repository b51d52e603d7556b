"""``train.compile``: the student backbone's forward through ``torch.compile`` (inductor) trains as the
eager one does, keeps the eager module's parameter names (checkpoints and the exported encoder load
in an eager run), resumes exactly, and is refused before any work where it cannot build its kernels.
Off by default: on the CPUs measured it does not pay (BENCHMARKS.md, "torch.compile")."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import selfsup
from selfsup.config import from_dict
from selfsup.encoder import load_encoder
from selfsup.errors import ConfigError
from selfsup.train.loop import train

from tests.conftest import assert_resume_bit_identical


def config(data, out, compile: bool, method: str = "simclr", steps: int = 4, threads: int = 1) -> dict:
    return {"data": {"name": str(data)}, "method": {"name": method},
            "backbone": {"name": "convnet6", "width": 8},
            "train": {"steps": steps, "batch_size": 32, "progress": False, "log_every": 1, "checkpoint_every": 2,
                      "precision": "fp32", "compile": compile, "threads": threads, "collapse_check_every": 0},
            "out": str(out)}


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


def largest_gaps(a, b) -> tuple[float, float]:
    """The largest loss gap over the logged steps of two runs, and the largest weight gap of their encoders."""
    wa = load_file(str(a / "encoder" / "encoder.safetensors"))
    wb = load_file(str(b / "encoder" / "encoder.safetensors"))
    assert wa.keys() == wb.keys()  # no "_orig_mod." prefix: a compiled run's files are an eager run's
    loss = max(abs(x - y) for x, y in zip(losses(a), losses(b), strict=True))
    return loss, max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "dino"])  # dino: a teacher copy, and local crops of another shape
def test_a_compiled_backbone_trains_as_the_eager_one_and_exports_the_same_encoder(method, fmnist_npz, tmp_path):
    """Compiled kernels round differently from eager ones, and training amplifies any rounding
    difference within a few steps (Adam moves a weight whose gradient is at rounding level by a whole
    lr, either way). The yardstick is the gap between two eager runs that differ only in their
    thread count (so in the order of their sums): the compiled run stays within 10 times that."""
    for name, compile, threads in (("eager", False, 1), ("eager-2-threads", False, 2), ("compiled", True, 1)):
        run = selfsup.pretrain(config(fmnist_npz, tmp_path / name, compile, method, threads=threads),
                               evaluate=False, report=False)
        assert run.steps == 4
    assert losses(tmp_path / "compiled")[0] == pytest.approx(losses(tmp_path / "eager")[0], rel=1e-4)
    noise = largest_gaps(tmp_path / "eager", tmp_path / "eager-2-threads")
    gap = largest_gaps(tmp_path / "eager", tmp_path / "compiled")
    assert gap[0] <= 10 * noise[0] + 1e-4 and gap[1] <= 10 * noise[1] + 1e-4, (gap, noise)
    ckpt = torch.load(tmp_path / "compiled" / "checkpoints" / "step-00000004.pt", weights_only=True)["method"]
    assert all("_orig_mod" not in k for k in ckpt)
    encoder = load_encoder(tmp_path / "compiled").eval()  # an eager module from the compiled run's files
    assert encoder(torch.rand(3, 1, 28, 28)).shape == (3, encoder.dim)


@pytest.mark.slow
def test_a_compiled_run_resumes_bit_for_bit(fmnist_npz, tmp_path):
    assert_resume_bit_identical(lambda out: from_dict(config(fmnist_npz, out, True)), tmp_path, steps=4, stop=2)


def test_compile_without_a_cpp_compiler_is_refused_before_any_work(fmnist_npz, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"C\+\+ compiler") as err:
        train(from_dict(config(fmnist_npz, tmp_path / "run", True)))
    assert "drop train.compile" in str(err.value)
    assert not (tmp_path / "run").exists()
