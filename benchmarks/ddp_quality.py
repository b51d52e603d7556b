"""Does data parallel training learn the same encoder? The `make run` recipe (configs/fmnist.yaml:
SimCLR, convnet6, Fashion-MNIST, global batch 256) as 1 process and as 2 torchrun processes (gloo,
128 images each, BatchNorm over the global batch), kNN and linear-probe accuracy on the test split
after the same number of steps, over several seeds, with a Welch t-test of the difference.

usage: python benchmarks/ddp_quality.py [--seeds 0 1 2] [--steps 500] [--threads 2] [--write]

Each run is ``selfsup pretrain --config configs/fmnist.yaml --steps S --seed s`` (rank 0 evaluates);
the 2-process run is launched with ``python -m torch.distributed.run --standalone
--nproc_per_node=2`` and gives each process half of the threads. A seed fixes the same images per
step in both (the global order does not depend on the process count); the views and the weight
initialization are drawn per process, so the two runs are two samples of the same recipe, not the
same computation: "the same" means a difference within the seed spread. Appended to
``benchmarks/results/ddp_quality/results.jsonl``; ``--write`` puts the table in BENCHMARKS.md.
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

RESULTS = ROOT / "benchmarks" / "results" / "ddp_quality" / "results.jsonl"


def one(procs: int, threads: int, steps: int, seed: int, out: Path) -> dict:
    args = ["-m", "selfsup.cli", "pretrain", "--config", str(ROOT / "configs" / "fmnist.yaml"), "--steps", str(steps),
            "--seed", str(seed), "--out", str(out), "--no-progress", "--set", f"train.threads={threads}",
            "--set", "train.monitor_every=0", "--set", "eval.protocols=[knn, linear]"]
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] + args
                              if procs > 1 else args)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    return {"knn": results["knn"]["accuracy"], "linear": results["linear"]["accuracy"],
            "images_per_s": results["pretrain"]["images_per_s"]}


def table() -> str:
    from methods_table import welch_test

    records = read_jsonl(RESULTS)
    if not records:
        return "No records yet: run `python benchmarks/ddp_quality.py`."
    steps = max(r["steps"] for r in records)
    latest = {(r["procs"], r["seed"]): r for r in records if r["steps"] == steps}
    rows = ["| processes x threads | kNN (k = 20, T = 0.07) | linear probe | seeds |", "|---|---|---|---|"]
    by = {}
    for procs in sorted({p for p, _ in latest}):
        rs = [r for (p, _), r in sorted(latest.items()) if p == procs]
        by[procs] = rs
        cell = lambda key: (f"{statistics.mean(r[key] for r in rs):.4f} +- {statistics.stdev(r[key] for r in rs):.4f}"
                            if len(rs) > 1 else f"{rs[0][key]:.4f}")
        rows.append(f"| {procs} x {rs[0]['threads']} | {cell('knn')} | {cell('linear')} | "
                    f"{', '.join(str(r['seed']) for r in rs)} |")
    notes = [""]
    if 1 in by and len(by) > 1 and min(len(v) for v in by.values()) > 1:
        other = max(by)
        for key, name in (("knn", "kNN"), ("linear", "linear")):
            diff, t, p = welch_test([r[key] for r in by[other]], [r[key] for r in by[1]])
            notes.append(f"{other} processes minus 1 process, {name}: {diff:+.4f} (Welch t = {t:.2f}, p = {p:.2f}).")
    used = list(latest.values())
    notes += ["", f"configs/fmnist.yaml at {steps} steps, global batch 256 in both; Fashion-MNIST test split. Measured on "
              f"{'; '.join(sorted({r['cpu'] for r in used}))}, revision(s) {', '.join(sorted({r['revision'] for r in used}))}. "
              f"Command: `{used[0]['command']}`."]
    return "\n".join(rows + notes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads in all (each of N processes gets threads / N)")
    p.add_argument("--table", action="store_true", help="only print (and --write) the table of the records so far")
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    if not args.table:
        rev, cpu = revision(), cpu_model()
        done = {(r["procs"], r["seed"], r["steps"]) for r in read_jsonl(RESULTS) if r.get("revision") == rev}
        with tempfile.TemporaryDirectory() as tmp:
            for seed in args.seeds:
                for procs in (1, args.procs):
                    if (procs, seed, args.steps) in done:
                        continue
                    threads = max(1, args.threads // procs)
                    r = one(procs, threads, args.steps, seed, Path(tmp) / f"p{procs}-s{seed}")
                    record = {"procs": procs, "threads": threads, "seed": seed, "steps": args.steps, **r,
                              "cpu": cpu, "revision": rev,
                              "command": "python benchmarks/ddp_quality.py " + " ".join(sys.argv[1:])}
                    append_jsonl(RESULTS, record)
                    print(json.dumps(record), flush=True)
    text = table()
    print(text)
    if args.write:
        write_section("ddp-quality", text, "Data parallel: the same encoder? (`benchmarks/ddp_quality.py`)")


if __name__ == "__main__":
    main()
