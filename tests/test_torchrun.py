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


def test_two_nodes_on_one_machine_meet_at_a_rendezvous(fmnist_npz, tmp_path):
    """Two torchrun launches with --nnodes 2 (one process each) and a c10d rendezvous on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               f"--node_rank={rank}", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                               "--rdzv_id=selfsup-test", "-m", "selfsup.cli", "pretrain", "--data", str(fmnist_npz),
                               "--method", "simclr", "--steps", "4", "--batch-size", "64", "--out", str(out),
                               "--no-eval", "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for rank in (0, 1)]
    results = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in results]
    assert sum(stdout.count("run directory:") for stdout, _ in results) == 1
    assert weights(out)


def test_resume_with_another_number_of_processes_reshards(fmnist_npz, tmp_path):
    """A 2-process run resumed by 1 process continues (the global batch of 64 and its order are the
    same; one process now takes all of it) and says so."""
    out = tmp_path / "run"
    first = torchrun(fmnist_npz, out, 10, "--set", "train.checkpoint_every=5")
    first.wait(timeout=300)
    assert first.returncode == 0
    more = subprocess.run([sys.executable, "-m", "selfsup.cli", "pretrain", "--data", str(fmnist_npz), "--method",
                           "simclr", "--steps", "14", "--batch-size", "64", "--out", str(out), "--no-eval",
                           "--no-progress", "--set", "train.checkpoint_every=5", "--set", "train.log_every=1",
                           "--resume"], capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr
    assert "written by 2 process(es), this run has 1" in more.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 14
