"""Real torchrun launches on the CPU (gloo): 2 processes pretrain, write their outputs once, and a
run killed mid-way resumes to the weights of an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def torchrun(data, out, steps, *extra, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "selfsup.cli", "pretrain", "--data", str(data), "--method", "simclr", "--steps", str(steps),
           "--batch-size", "64", "--out", str(out), "--no-eval", "--no-progress",
           "--set", "train.checkpoint_every=5", "--set", "train.log_every=1", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def weights(run):
    return load_file(str(run / "encoder" / "encoder.safetensors"))


def test_two_processes_pretrain_and_write_their_outputs_once(fmnist_npz, tmp_path):
    out = tmp_path / "run"
    done = torchrun(fmnist_npz, out, 6)
    stdout, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr
    assert stdout.count("run directory:") == 1  # rank 0 speaks
    steps = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 6  # one record per step, not one per rank
    assert weights(out)


def test_a_killed_rank_then_resume_gives_the_uninterrupted_weights(fmnist_npz, tmp_path):
    """SIGKILL one rank once a checkpoint exists: torchrun ends the other and fails; the same command
    with --resume continues from the checkpoint and ends with the weights of an uninterrupted run."""
    full, split = tmp_path / "full", tmp_path / "split"
    done = torchrun(fmnist_npz, full, 30)
    assert done.wait(timeout=300) == 0, done.communicate()[1]
    victim = torchrun(fmnist_npz, split, 30)
    deadline = time.time() + 200
    while not (split / "checkpoints" / "step-00000010.pt").exists():
        assert time.time() < deadline and victim.poll() is None, "no checkpoint at step 10"
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(victim.pid)], capture_output=True, text=True).stdout.split()
    os.kill(int(workers[-1]), signal.SIGKILL)  # one rank dies
    assert victim.wait(timeout=120) != 0
    assert not (split / "encoder").exists()
    resumed = torchrun(fmnist_npz, split, 30, "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "resumed from" in stderr
    a, b = weights(full), weights(split)
    for key in a:
        assert torch.equal(a[key], b[key]), key
