"""Data-parallel scaling on one machine: the same SimCLR pretraining on Fashion-MNIST as 1 process
with T threads and as N torchrun processes with T / N threads each, images/s side by side, rounds
interleaved so that a change of load hits both.

usage: python benchmarks/ddp_scaling.py [--procs 2] [--threads 2] [--steps 40] [--rounds 2] [--write]

Each run is ``selfsup pretrain --data fashion-mnist --method simclr --backbone convnet6`` with batch
256 (the global batch: 128 per process with 2 processes), ``--no-eval``; the figure is the
trainer's images/s over its steps (start-up excluded), from the run's results. Appended to
``benchmarks/results/ddp_scaling/results.jsonl``; ``--write`` puts the table in BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, cpu_model, read_jsonl, revision, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ddp_scaling" / "results.jsonl"


def one(procs: int, threads: int, steps: int, out: Path) -> float:
    args = ["-m", "selfsup.cli", "pretrain", "--data", "fashion-mnist", "--method", "simclr", "--backbone", "convnet6",
            "--steps", str(steps), "--batch-size", "256", "--out", str(out), "--no-eval", "--no-progress",
            "--set", f"train.threads={threads}", "--set", f"train.checkpoint_every={steps}"]
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] + args
                              if procs > 1 else args)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "results.json").read_text())["pretrain"]["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads in all (the single process gets them all)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    single, multi = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            single.append(one(1, args.threads, args.steps, Path(tmp) / f"single{r}"))
            multi.append(one(args.procs, max(1, args.threads // args.procs), args.steps, Path(tmp) / f"multi{r}"))
            print(f"round {r}: 1 x {args.threads} threads {single[-1]:.0f} images/s, {args.procs} x "
                  f"{max(1, args.threads // args.procs)} {multi[-1]:.0f} images/s", flush=True)
    record = {"procs": args.procs, "threads": args.threads, "steps": args.steps, "single": single, "multi": multi,
              "ratio": statistics.median(m / s for m, s in zip(multi, single)), "cpu": cpu_model(),
              "revision": revision(), "command": "python benchmarks/ddp_scaling.py " + " ".join(sys.argv[1:])}
    append_jsonl(RESULTS, record)
    rows = ["| revision | cpu | 1 process x threads | images/s | processes x threads | images/s | ratio (median of rounds) |",
            "|---|---|---|---:|---|---:|---:|"]
    for r in read_jsonl(RESULTS):
        rows.append(f"| {r['revision']} | {r['cpu']} | 1 x {r['threads']} | {statistics.mean(r['single']):.0f} | "
                    f"{r['procs']} x {max(1, r['threads'] // r['procs'])} | {statistics.mean(r['multi']):.0f} | "
                    f"{r['ratio']:.2f} |")
    text = "\n".join(rows + ["", f"SimCLR, convnet6, Fashion-MNIST, global batch 256, {args.steps} steps per run, "
                             "trainer images/s (start-up excluded); rounds interleaved. Command: "
                             f"`{record['command']}`."])
    print(text)
    if args.write:
        write_section("ddp-scaling", text, "Data parallel on one machine (`benchmarks/ddp_scaling.py`)")


if __name__ == "__main__":
    main()
