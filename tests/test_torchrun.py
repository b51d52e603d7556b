"""Real torchrun launches on the CPU (gloo): 2 processes pretrain, write their outputs once, and a
run killed mid-way resumes to the weights of an uninterrupted one; evaluation after pretraining,
`selfsup evaluate` and `selfsup embed` split over 2 processes give one process's files."""
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


TINY = ["--set", "backbone.width=8", "--set", "method.hidden_dim=32", "--set", "method.out_dim=16"]


def launch(*args, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "selfsup.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def one_process(*args):
    from selfsup.cli import run

    assert run([str(a) for a in args]) == 0


def test_evaluation_and_embed_split_over_two_processes_match_one(fmnist_split_dir, tmp_path):
    """2 processes pretrain and evaluate (knn, rankme on 500 train / 200 test rows); then `selfsup
    evaluate` and `selfsup embed` of that run under torchrun give what one process gives: the same
    cached feature files (bit for bit: the ranks' shares are cut at whole forward chunks), the same
    numbers, and byte-identical embedding files (500 rows and --batch-size 64: rounds of 2 x 64 rows,
    the last one uneven). Rank 0 alone prints and writes."""
    import json
    import shutil

    train, test = fmnist_split_dir / "train.npz", fmnist_split_dir / "test.npz"
    run = tmp_path / "run"
    done = launch("pretrain", "--data", train, "--method", "simclr", "--steps", 2, "--batch-size", 32, "--out", run,
                  "--no-progress", *TINY, "--set", f"data.test_split={test}", "--set", "eval.protocols=[knn,rankme]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1 and done.stdout.count("knn: accuracy=") == 1
    trained = json.loads((run / "results.json").read_text())

    copies = {}
    for name in ("one", "two"):  # evaluate copies of the run without its feature cache
        copies[name] = tmp_path / name
        shutil.copytree(run, copies[name], ignore=shutil.ignore_patterns("features"))
    one_process("evaluate", copies["one"], "--data", train, "--test-split", test, "--protocols", "knn,rankme")
    done = launch("evaluate", copies["two"], "--data", train, "--test-split", test, "--protocols", "knn,rankme")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("knn: accuracy=") == 1
    results = {name: json.loads((path / "results.json").read_text()) for name, path in copies.items()}
    assert results["two"]["knn"] == results["one"]["knn"]
    assert results["two"]["rankme"] == results["one"]["rankme"]
    features = {name: {f.name: f.read_bytes() for f in (path / "features").glob("*.npy")}
                for name, path in {**copies, "trained": run}.items()}
    assert len(features["one"]) == 2 and features["two"] == features["one"]  # train and test features, bit for bit
    assert features["trained"] == features["one"]  # the evaluation after pretraining on 2 processes too
    assert trained["knn"] == results["one"]["knn"] and trained["rankme"] == results["one"]["rankme"]

    one_process("embed", run, "--data", train, "--out", tmp_path / "one.npy", "--batch-size", 64)
    done = launch("embed", run, "--data", train, "--out", tmp_path / "two.npy", "--batch-size", 64)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1
    for suffix in (".npy", ".ids.txt", ".labels.npy"):
        assert (tmp_path / f"two{suffix}").read_bytes() == (tmp_path / f"one{suffix}").read_bytes(), suffix
    assert not list(tmp_path.glob("two.npy.part*"))
