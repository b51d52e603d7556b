"""Streaming from shards against the in-memory path, side by side in one run, on Fashion-MNIST with the
configs/fmnist.yaml recipe (SimCLR, convnet6).

usage: python benchmarks/streaming.py [--steps 300] [--seeds 0 1] [--copies 24] [--workers 2] [--write]

(a) Throughput: for each seed, ``selfsup pretrain --config configs/fmnist.yaml --steps N --no-eval`` on
    the in-memory data and on shards, one after the other; the figure is the trainer's images/s over
    its steps (from results.json; reading the data before the first step is left out, but from shards the
    first step waits for the workers' first decoded shard, which weighs on short runs); the ratio is
    shards / in memory (target >= 0.8).
(b) Memory: the shards hold the train set `--copies` times (one copy written with `selfsup shard`, its
    tar files copied and listed again in the manifest, so the data on disk is copies x 60,000 images).
    The peak memory of a streaming process is sampled every 0.1 s as the sum of the proportional set
    size (PSS, psutil) of the process and its DataLoader workers (shared pages counted once), for the
    training run and for a pass that streams every shard once (``ShardStream`` over a whole epoch,
    each batch moved to the device). The check is shard bytes / that peak >= 4: the data is at least 4x
    what the process ever holds, so the peak does not grow with the data.
(c) Quality at equal steps: ``selfsup evaluate RUN --data fashion-mnist --protocols knn,linear`` on both
    encoders (the probes fit on the in-memory train split and score on its test split).

Prints one line per measurement and ``RESULT key=value ...``; ``--write`` appends the record to
benchmarks/results/streaming/results.jsonl and renders the BENCHMARKS.md section from those records.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, cpu_model, read_jsonl, revision, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "streaming" / "results.jsonl"
CLI = [sys.executable, "-m", "selfsup.cli"]


def peak_pss(cmd: list[str], env=None) -> tuple[subprocess.CompletedProcess, float]:
    """Run `cmd`; (its result, the peak over time of the summed PSS of it and its descendants, bytes)."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    peak, done = [0.0], threading.Event()

    def sample():
        root = psutil.Process(proc.pid)
        while not done.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_full_info().pss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                break
            peak[0] = max(peak[0], total)
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return result, peak[0]


def write_copies(directory: Path, copies: int) -> int:
    """`selfsup shard fashion-mnist` once, then its tar files copied `copies - 1` times and listed in the
    manifest again; returns the bytes of all shards."""
    subprocess.run(CLI + ["shard", "fashion-mnist", "--out", str(directory), "--samples-per-shard", "10000"], check=True,
                   cwd=ROOT, capture_output=True)
    manifest = json.loads((directory / "manifest.json").read_text())
    first = list(manifest["shards"])
    for c in range(1, copies):
        for entry in first:
            name = entry["name"].replace("shard-", f"copy{c:03d}-")
            shutil.copyfile(directory / entry["name"], directory / name)
            manifest["shards"].append({**entry, "name": name})
    manifest["count"] = sum(e["count"] for e in manifest["shards"])
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return sum(e["bytes"] for e in manifest["shards"])


PASS = r"""
import sys, torch
from selfsup.data.shards import ShardSet
torch.set_num_threads(1)
shards = ShardSet(sys.argv[1], workers=int(sys.argv[2]))
stream = shards.stream(256, 0)
n = 0
for _ in range(len(shards) // 256):  # one epoch: every shard read once
    samples, labels, keys = next(stream)
    n += len(samples.to("cpu").float())
print(n)
"""


def pretrain(data: str, out: Path, steps: int, seed: int, workers: int) -> tuple[float, float]:
    """(images/s, peak PSS bytes) of one run of the recipe on `data`."""
    cmd = CLI + ["pretrain", "--config", "configs/fmnist.yaml", "--data", data, "--steps", str(steps), "--seed", str(seed),
                 "--out", str(out), "--no-eval", "--no-progress", "--set", f"train.checkpoint_every={steps}",
                 "--set", "train.monitor_every=0", "--set", f"data.workers={workers}"]
    _, peak = peak_pss(cmd)
    return json.loads((out / "results.json").read_text())["pretrain"]["images_per_s"], peak


def evaluate(run: Path) -> dict:
    subprocess.run(CLI + ["evaluate", str(run), "--data", "fashion-mnist", "--protocols", "knn,linear"], check=True,
                   cwd=ROOT, capture_output=True)
    results = json.loads((run / "results.json").read_text())
    return {"knn": results["knn"]["accuracy"], "linear": results["linear"]["accuracy"]}


def render() -> str:
    rows = read_jsonl(RESULTS)
    lines = ["Throughput, memory and accuracy of pretraining from shards (`selfsup shard`, WebDataset tar files "
             "read by DataLoader workers) against the in-memory path, measured side by side in one run "
             "(`benchmarks/streaming.py`; the method is in its docstring).", "",
             "| date | revision | CPU | steps | seeds | workers | images/s in memory | images/s shards | ratio | "
             "shards GB | peak PSS train MB | peak PSS full pass MB | shards / peak | kNN mem / shards | "
             "linear mem / shards |", "|" + "---|" * 15]
    for r in rows:
        lines.append(f"| {r['date']} | {r['revision']} | {r['cpu']} | {r['steps']} | {','.join(map(str, r['seeds']))} | "
                     f"{r['workers']} | {statistics.mean(r['memory_ips']):.0f} | {statistics.mean(r['shard_ips']):.0f} | "
                     f"{r['ratio']:.2f}x | {r['shard_bytes'] / 1e9:.2f} | {r['peak_train'] / 2**20:.0f} | "
                     f"{r['peak_pass'] / 2**20:.0f} | {r['data_over_peak']:.1f}x | "
                     f"{statistics.mean(r['knn_memory']):.3f} / {statistics.mean(r['knn_shards']):.3f} | "
                     f"{statistics.mean(r['linear_memory']):.3f} / {statistics.mean(r['linear_shards']):.3f} |")
    if rows:
        lines += ["", f"Command: `{rows[-1]['command']}`"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--copies", type=int, default=24, help="copies of the train set in the shards (default 24, 3.7 GB: over 4x a ~800 MB training process)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streaming runs")
    p.add_argument("--no-eval", action="store_true", help="skip (c)")
    p.add_argument("--write", action="store_true", help="record the result and rewrite the BENCHMARKS.md section")
    args = p.parse_args()
    record = {"steps": args.steps, "seeds": args.seeds, "copies": args.copies, "workers": args.workers,
              "memory_ips": [], "shard_ips": [], "knn_memory": [], "knn_shards": [], "linear_memory": [],
              "linear_shards": []}
    with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as tmp:
        tmp = Path(tmp)
        record["shard_bytes"] = write_copies(tmp / "shards", args.copies)
        print(f"shards: {args.copies} copies of the train set, {record['shard_bytes'] / 1e9:.2f} GB", flush=True)
        peaks = []
        for seed in args.seeds:
            ips_m, _ = pretrain("fashion-mnist", tmp / f"memory{seed}", args.steps, seed, args.workers)
            ips_s, peak = pretrain(str(tmp / "shards"), tmp / f"shards{seed}", args.steps, seed, args.workers)
            record["memory_ips"].append(ips_m)
            record["shard_ips"].append(ips_s)
            peaks.append(peak)
            print(f"seed {seed}: in memory {ips_m:.0f} images/s, shards {ips_s:.0f} images/s ({ips_s / ips_m:.2f}x), "
                  f"peak PSS {peak / 2**20:.0f} MB", flush=True)
            if not args.no_eval:
                for side in ("memory", "shards"):
                    acc = evaluate(tmp / f"{side}{seed}")
                    record[f"knn_{side}"].append(acc["knn"])
                    record[f"linear_{side}"].append(acc["linear"])
                print(f"seed {seed}: kNN {record['knn_memory'][-1]:.4f} (memory) {record['knn_shards'][-1]:.4f} (shards), "
                      f"linear {record['linear_memory'][-1]:.4f} / {record['linear_shards'][-1]:.4f}", flush=True)
        done, peak_pass = peak_pss([sys.executable, "-c", PASS, str(tmp / "shards"), str(args.workers)])
        print(f"full pass: {done.stdout.strip()} images streamed, peak PSS {peak_pass / 2**20:.0f} MB", flush=True)
    record["peak_train"] = max(peaks)
    record["peak_pass"] = peak_pass
    record["ratio"] = statistics.median(s / m for s, m in zip(record["shard_ips"], record["memory_ips"]))
    record["data_over_peak"] = record["shard_bytes"] / max(record["peak_train"], record["peak_pass"])
    record.update({"cpu": cpu_model(), "revision": revision(), "date": time.strftime("%Y-%m-%d"),
                   "command": "python benchmarks/streaming.py " + " ".join(sys.argv[1:])})
    shown = {"ratio": f"{record['ratio']:.3f}", "data_over_peak": f"{record['data_over_peak']:.2f}",
             "peak_train_mb": f"{record['peak_train'] / 2**20:.0f}", "peak_pass_mb": f"{record['peak_pass'] / 2**20:.0f}",
             "shard_gb": f"{record['shard_bytes'] / 1e9:.2f}"}
    if not args.no_eval:
        shown.update({k: f"{statistics.mean(record[k]):.4f}" for k in ("knn_memory", "knn_shards", "linear_memory",
                                                                       "linear_shards")})
    print("RESULT " + " ".join(f"{k}={v}" for k, v in shown.items()))
    if record["data_over_peak"] < 4:
        print(f"note: the shards are only {record['data_over_peak']:.1f}x the peak memory; pass more --copies", flush=True)
    if args.write:
        append_jsonl(RESULTS, record)
        write_section("streaming", render(), "Streaming from shards (`benchmarks/streaming.py`)")


if __name__ == "__main__":
    main()
