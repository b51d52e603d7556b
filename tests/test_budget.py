"""Training for a time budget (`train.budget`, `selfsup pretrain --budget 10m`): the step count is
fixed after timing the first steps, written to config.yaml and the checkpoints, and kept by --resume."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from selfsup.config import budget_seconds, from_dict
from selfsup.errors import ConfigError
from selfsup.train.loop import BUDGET_SKIP, BUDGET_TIMED, _budget_steps, train


def test_durations_parse_and_bad_ones_are_refused():
    assert [budget_seconds(t) for t in ("10m", "90s", "1.5h", "600", " 2m ")] == [600, 90, 5400, 600, 120]
    assert budget_seconds(None) is None
    for bad in ("ten minutes", "-5m", "0s", "5d", ""):
        with pytest.raises(ConfigError, match="is not a duration"):
            from_dict({"train": {"budget": bad}})


def test_the_step_count_is_what_the_rest_of_the_budget_buys():
    """60 s budget, 13 steps done in 6.5 s, 2 steps/s timed: 13 + (60 - 6.5) * 2 = 120 steps; a
    schedule's phases always fit (wsd: warmup 50 + decay 40 + 1)."""
    plain = from_dict({})
    assert _budget_steps(60.0, 6.5, 2.0, 13, plain) == 120
    assert _budget_steps(5.0, 6.5, 2.0, 13, plain) == 14  # the budget is spent: stop after the next step
    wsd = from_dict({"optim": {"schedule": "wsd", "warmup_steps": 50, "decay_steps": 40}, "train": {"budget": "1s"}})
    assert _budget_steps(1.0, 0.9, 2.0, 13, wsd) == 91


def config(out, data, budget="8s", steps=None):
    train_cfg = {"batch_size": 32, "progress": False, "checkpoint_every": 10, "keep_checkpoints": 50,
                 "collapse_check_every": 0, "device": "cpu", "precision": "fp32"}
    train_cfg.update({"budget": budget} if steps is None else {"steps": steps})
    return from_dict({"data": {"name": str(data)}, "method": {"name": "simclr"}, "backbone": {"name": "convnet6"},
                      "optim": {"warmup_steps": BUDGET_SKIP + BUDGET_TIMED + 2},
                      "train": train_cfg, "out": str(out)})


def test_a_budget_run_records_its_steps_and_resumes_exactly(fmnist_npz, tmp_path):
    """A budget run stopped after its steps were fixed and resumed ends bit-identical to a plain run
    of that many steps (its warmup covers the timed steps, so their learning rates agree), and
    config.yaml, the checkpoints and metrics.jsonl record the count."""
    split = tmp_path / "split"
    stop = BUDGET_SKIP + BUDGET_TIMED + 1
    first = train(config(split, fmnist_npz), stop_after=stop)
    assert first.steps == stop
    fixed = yaml.safe_load((split / "config.yaml").read_text())["train"]["steps"]
    assert fixed > stop  # 8 s buys more than 14 steps of 32 28x28 images
    record = next(json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()
                  if "budget_steps" in line)
    assert record["budget_steps"] == fixed and record["step"] == BUDGET_SKIP + BUDGET_TIMED
    result = train(config(split, fmnist_npz), resume=True)
    assert result.steps == fixed
    ckpt = torch.load(sorted((split / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    assert ckpt["budget_steps"] == fixed and ckpt["config"]["train"]["steps"] == fixed
    plain = tmp_path / "plain"
    train(config(plain, fmnist_npz, steps=fixed))
    a = load_file(str(split / "encoder" / "encoder.safetensors"))
    b = load_file(str(plain / "encoder" / "encoder.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_budget_run_stopped_before_its_steps_were_fixed_times_them_again(fmnist_npz, tmp_path):
    """Stopped at step 5 (before the count was fixed), --resume times 10 steps after 3 again from
    there (not from step 0, where nothing would be timed) and fixes a count the budget can buy."""
    out = tmp_path / "run"
    assert train(config(out, fmnist_npz, budget="4s"), stop_after=5).steps == 5
    result = train(config(out, fmnist_npz, budget="4s"), resume=True)
    record = next(json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
                  if "budget_steps" in line)
    assert record["step"] == 5 + BUDGET_SKIP + BUDGET_TIMED
    assert record["budget_steps"] == result.steps < 5 + 4 * 1000  # at most ~1,000 such steps a second
