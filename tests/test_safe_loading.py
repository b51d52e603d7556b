"""Safe loading (issue point 5) through the CLI: a malicious pickle placed as a checkpoint or as the
exported encoder runs nothing (a canary file stays absent); a truncated or wrong-shape checkpoint or
encoder gives one line, ``error: ... Fix: ...``, naming the file and the mismatch, and exit code 2."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from selfsup import load_encoder
from selfsup.cli import main
from selfsup.checkpoint import list_checkpoints


def run_cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Fix:" in lines[0], lines[0]
    return lines[0]


def pretrain_args(data, out, steps=2):
    return ["pretrain", "--data", str(data), "--steps", str(steps), "--batch-size", "16", "--out", str(out),
            "--no-progress", "--no-eval", "--set", "backbone.width=8", "--set", "method.hidden_dim=32",
            "--set", "method.out_dim=16", "--set", "train.checkpoint_every=1", "--set", "train.threads=1"]


@pytest.fixture(scope="module")
def finished_run(fmnist_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("safe") / "run"
    with pytest.raises(SystemExit) as info:
        main(pretrain_args(fmnist_npz, out))
    assert info.value.code == 0
    return out


@pytest.fixture
def run(finished_run, tmp_path):
    """A fresh copy of a finished 2-step run (checkpoints 1 and 2, encoder) for each test."""
    return shutil.copytree(finished_run, tmp_path / "run")


class Evil:
    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def test_malicious_pickles_run_nothing(run, fmnist_npz, tmp_path, capsys):
    canary = tmp_path / "canary"
    evil = run / "checkpoints" / "step-00000099.pt"  # the newest: --resume loads it
    torch.save({"step": 99, "method": Evil(canary)}, evil)
    code, err = run_cli(pretrain_args(fmnist_npz, run, steps=4) + ["--resume"], capsys)
    assert code == 2
    line = error_line(err)
    assert str(evil) in line and "cannot be loaded safely" in line
    assert not canary.exists()

    torch.save({"weights": Evil(canary)}, run / "encoder" / "encoder.safetensors")
    code, err = run_cli(["evaluate", str(run), "--data", str(fmnist_npz), "--protocols", "rankme"], capsys)
    assert code == 2
    assert "encoder.safetensors' cannot be read" in error_line(err)
    assert not canary.exists()


def test_truncated_checkpoint_names_the_file_and_the_previous_one_resumes(run, fmnist_npz, capsys):
    newest = run / "checkpoints" / "step-00000002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    code, err = run_cli(pretrain_args(fmnist_npz, run, steps=3) + ["--resume"], capsys)
    assert code == 2
    line = error_line(err)
    assert f"checkpoint '{newest}' cannot be loaded safely" in line and "move it away" in line
    newest.unlink()  # what the fix says: --resume then takes step 1
    code, err = run_cli(pretrain_args(fmnist_npz, run, steps=3) + ["--resume"], capsys)
    assert code == 0 and "at step 1" in err, err


def test_wrong_shape_or_foreign_checkpoint_names_the_file_and_the_mismatch(run, fmnist_npz, capsys):
    state = torch.load(run / "checkpoints" / "step-00000002.pt", weights_only=True)
    key = next(k for k, v in state["method"].items() if v.dim() == 4)
    shape = list(state["method"][key].shape)
    wide = dict(state, method={**state["method"], key: torch.zeros(2 * shape[0], *shape[1:])})
    path = run / "checkpoints" / "step-00000003.pt"
    torch.save(wide, path)
    code, err = run_cli(pretrain_args(fmnist_npz, run, steps=4) + ["--resume"], capsys)
    assert code == 2
    line = error_line(err)
    assert f"checkpoint '{path}' does not match this run's method: '{key}' has shape " in line
    assert f"{[2 * shape[0], *shape[1:]]} in the file and {shape} in the model" in line

    optimizer = dict(state["optimizer"], param_groups=state["optimizer"]["param_groups"][:1])
    torch.save(dict(state, optimizer=optimizer), path)
    code, err = run_cli(pretrain_args(fmnist_npz, run, steps=4) + ["--resume"], capsys)
    assert code == 2 and f"checkpoint '{path}' does not match this run's optimizer: " in error_line(err)

    torch.save({"weights": torch.zeros(3)}, path)
    code, err = run_cli(pretrain_args(fmnist_npz, run, steps=4) + ["--resume"], capsys)
    assert code == 2 and f"checkpoint '{path}' is not a selfsup checkpoint" in error_line(err)
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-1] == "step-00000003.pt"  # nothing was overwritten


def test_truncated_or_wrong_shape_encoder_names_the_file_and_the_mismatch(run, fmnist_npz, capsys):
    weights, spec = run / "encoder" / "encoder.safetensors", run / "encoder" / "encoder.json"
    good = weights.read_bytes()
    evaluate = ["evaluate", str(run), "--data", str(fmnist_npz), "--protocols", "rankme"]

    weights.write_bytes(good[: len(good) // 2])
    code, err = run_cli(evaluate, capsys)
    assert code == 2 and f"'{weights}' cannot be read" in error_line(err) and "truncated" in error_line(err)

    weights.write_bytes(good)
    state = load_file(str(weights))
    key = next(k for k, v in state.items() if v.dim() == 4)
    shape = list(state[key].shape)
    save_file({**state, key: torch.zeros(shape[0] + 1, *shape[1:])}, str(weights))
    code, err = run_cli(evaluate, capsys)
    assert code == 2
    line = error_line(err)
    assert f"'{weights}' does not match backbone 'convnet6' of '{spec}'" in line
    assert f"'{key}' has shape {[shape[0] + 1, *shape[1:]]} in the file and {shape} in the model" in line

    weights.write_bytes(good)
    config = json.loads(spec.read_text())
    spec.write_text(json.dumps(dict(config, backbone=dict(config["backbone"], width=16))))  # another width
    code, err = run_cli(evaluate, capsys)
    assert code == 2 and f"'{weights}' does not match backbone 'convnet6'" in error_line(err)
    spec.write_text(json.dumps(dict(config, backbone=dict(config["backbone"], widht=8))))  # an unknown option
    code, err = run_cli(evaluate, capsys)
    assert code == 2 and f"'{spec}' describes a backbone that cannot be built" in error_line(err)

    spec.write_text(json.dumps(config))
    assert load_encoder(run).dim > 0  # the original pair loads
