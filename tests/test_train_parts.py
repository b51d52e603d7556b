import math
import os

import pytest
import torch

from selfsup.errors import CheckpointError
from selfsup.files import atomic_write
from selfsup.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from selfsup.train.optim import LARS, build_optimizer
from selfsup.schedules import cosine, learning_rate


def test_cosine_and_warmup_values():
    assert cosine(0.0, 1.0, 0.0) == pytest.approx(1.0)
    assert cosine(0.5, 1.0, 0.0) == pytest.approx(0.5)
    assert cosine(1.0, 1.0, 0.1) == pytest.approx(0.1)
    # warmup: steps 0..3 of 4 reach the peak linearly
    assert [learning_rate(s, 100, 0.4, warmup=4) for s in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # after warmup, cosine over the remaining 96 steps: halfway at step 4 + 48
    assert learning_rate(52, 100, 0.4, warmup=4) == pytest.approx(0.2)
    assert learning_rate(10, 100, 0.4, schedule="constant") == pytest.approx(0.4)


def test_lars_step_matches_hand_computation():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([dict(params=[w], weight_decay=0.0), dict(params=[b], weight_decay=0.0, lars=False)],
               lr=0.1, momentum=0.9, eta=0.02)
    w.grad = torch.tensor([0.0, 1.0])  # ||g|| = 1 -> trust = 0.02 * 5 / 1 = 0.1
    b.grad = torch.tensor([2.0])
    opt.step()
    assert w.detach().tolist() == pytest.approx([3.0, 4.0 - 0.1 * 0.1 * 1.0])
    assert b.item() == pytest.approx(1.0 - 0.1 * 2.0)
    w.grad = torch.tensor([0.0, 1.0])
    b.grad = torch.tensor([2.0])
    opt.step()  # momentum buffer: 0.9 * 0.1 + trust' * 1, trust' = 0.02 * ||w|| / 1
    trust = 0.02 * math.hypot(3.0, 3.99)
    assert w[1].item() == pytest.approx(3.99 - 0.1 * (0.9 * 0.1 + trust), rel=1e-6)


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.ones(2) * step}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-00000020.pt", "step-00000030.pt"]
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 30
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_write_leaves_no_file_under_final_name(tmp_path):
    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "step-00000001.pt", broken)
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_malicious_checkpoints_are_refused(tmp_path):
    good = save_checkpoint(tmp_path, 1, {"step": 1, "w": torch.arange(1000.0)})
    truncated = tmp_path / "step-00000002.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="step-00000002.pt"):
        load_checkpoint(truncated)

    canary = tmp_path / "canary"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    evil = tmp_path / "step-00000003.pt"
    torch.save({"step": 3, "payload": Evil()}, evil)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(evil)
    assert not canary.exists()


@pytest.mark.parametrize("env, expected", [
    ({}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    ({"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}, True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, False),
])
def test_bf16_is_not_chosen_when_the_instruction_set_is_capped_below_it(monkeypatch, tmp_path, env, expected):
    """precision=auto picks bf16 only where it is native: a CPU flag (amx_bf16 / avx512_bf16) and no
    ISA cap below it (capped, oneDNN emulates bf16 ~10x slower than fp32)."""
    from selfsup.train import hardware
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    hardware.cpu_has_fast_bf16.cache_clear()
    try:
        assert hardware.cpu_has_fast_bf16() is expected
        assert (hardware.resolve_precision("auto", torch.device("cpu")) == torch.bfloat16) is expected
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")  # ATEN_CPU_CAPABILITY=avx2
        hardware.cpu_has_fast_bf16.cache_clear()
        assert hardware.cpu_has_fast_bf16() is False
        cpuinfo.write_text("flags\t\t: fpu sse avx2\n")
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
        hardware.cpu_has_fast_bf16.cache_clear()
        assert hardware.cpu_has_fast_bf16() is False
    finally:
        hardware.cpu_has_fast_bf16.cache_clear()
