"""fmnist-cpu benchmark (../shared/BENCHMARK.md): selfsup vs LightlySSL on the identical SimCLR
recipe, side by side in one run, plus the raw convnet6 floor measured in the same process.

usage: python benchmarks/fmnist_cpu.py [--steps 200] [--precision auto|fp32] [--no-peer] [--write]

Prints one line per side and a last line ``RESULT key=value ...`` with images_per_s,
floor_images_per_s, ratio_to_floor, lightly_images_per_s, ratio_to_lightly, knn_acc,
lightly_knn_acc. ``--write`` appends the row to BENCHMARKS.md (between the fmnist-cpu markers).
The peer side runs ../shared/bench/lightly_fmnist.py (or $SELFSUP_PEER_SCRIPT) in a subprocess
with this interpreter, so LightlySSL must be installed here (`make bench` does it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import cpu_model, revision  # noqa: E402
from selfsup import config as C  # noqa: E402
from selfsup.backbones.base import build_backbone  # noqa: E402
from selfsup.data import load_dataset  # noqa: E402
from selfsup.evaluation.features import extract_features  # noqa: E402
from selfsup.evaluation.knn import knn_accuracy  # noqa: E402
from selfsup.train.hardware import autocast, resolve_precision  # noqa: E402
from selfsup.train.loop import train  # noqa: E402

PEER = Path(os.environ.get("SELFSUP_PEER_SCRIPT", ROOT.parent / "shared" / "bench" / "lightly_fmnist.py"))


def floor(precision: str, batch: int = 256, warmup: int = 3, timed: int = 12) -> float:
    """convnet6 alone: forward+backward of 2 x batch random images, loss = sum of features, AdamW step."""
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    device = torch.device("cpu")
    dtype = resolve_precision(precision, device)
    model = build_backbone("convnet6", in_channels=1, image_size=28).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2 * batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(warmup + timed):
        t = time.perf_counter()
        with autocast(device, dtype):
            out = model(x)
        opt.zero_grad(set_to_none=True)
        out.float().sum().backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return batch / sorted(times)[len(times) // 2]


def ours(steps: int, precision: str, out: Path, seed: int = 0) -> dict:
    cfg = C.load(overrides=[
        "data.name=fashion-mnist", f"out={out}", f"train.steps={steps}", "train.batch_size=256",
        f"train.precision={precision}", f"train.seed={seed}", "train.progress=false", f"train.checkpoint_every={steps}",
        "views.preset=fmnist", "method.name=simclr", "method.temperature=0.2", "method.hidden_dim=512",
        "method.out_dim=128", "method.last_norm=true", "optim.name=adamw", "optim.lr=0.002", "optim.weight_decay=0.0001",
        "optim.schedule=constant", "optim.warmup_steps=0"])
    run = train(cfg)
    train_set = run.train_set
    test_set = load_dataset("fashion-mnist", split="test")
    amp = run.dtype is not None
    ftr = extract_features(run.encoder, train_set.images, amp=amp)
    fte = extract_features(run.encoder, test_set.images, amp=amp)
    acc = knn_accuracy(ftr, train_set.labels, fte, test_set.labels, k=20, temperature=0.07)
    return {"images_per_s": run.images_per_s, "knn_acc": float(acc)}


def peer(steps: int) -> dict:
    if not PEER.is_file():
        raise SystemExit(f"peer script {PEER} not found; set SELFSUP_PEER_SCRIPT")
    proc = subprocess.run([sys.executable, str(PEER), str(steps), "2"], capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"peer run failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return {k: v for k, v in (kv.split("=", 1) for kv in line.split()[1:])}


def write_row(row: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    marker = "<!-- fmnist-cpu:end -->"
    if marker not in text:
        raise SystemExit("BENCHMARKS.md has no fmnist-cpu markers")
    path.write_text(text.replace(marker, row + "\n" + marker))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="selfsup seeds (the peer script has its seed fixed); kNN is averaged over them")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--write", action="store_true", help="append the result row to BENCHMARKS.md")
    args = p.parse_args()
    threads = torch.get_num_threads()
    floor_ips = floor(args.precision)
    print(f"floor convnet6 ({args.precision}, channels_last): {floor_ips:.1f} images/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [ours(args.steps, args.precision, Path(tmp) / f"run{seed}", seed) for seed in args.seeds]
    for seed, run in zip(args.seeds, runs):
        print(f"selfsup seed {seed}: {run['images_per_s']:.1f} images/s, kNN {run['knn_acc']:.4f}", flush=True)
    # throughput of the first run (the one right after the floor); kNN averaged over the seeds
    mine = {"images_per_s": runs[0]["images_per_s"], "knn_acc": statistics.mean(r["knn_acc"] for r in runs)}
    knn_std = statistics.stdev(r["knn_acc"] for r in runs) if len(runs) > 1 else 0.0
    result = {"steps": args.steps, "precision": args.precision, "threads": threads,
              "images_per_s": f"{mine['images_per_s']:.1f}", "floor_images_per_s": f"{floor_ips:.1f}",
              "ratio_to_floor": f"{mine['images_per_s'] / floor_ips:.3f}", "knn_acc": f"{mine['knn_acc']:.4f}",
              "knn_std": f"{knn_std:.4f}", "seeds": ",".join(map(str, args.seeds))}
    if not args.no_peer:
        theirs = peer(args.steps)
        print(f"lightly: {float(theirs['images_per_s']):.1f} images/s, kNN {float(theirs['knn_acc']):.4f} "
              f"(its own fp32 floor {theirs['floor_images_per_s']})", flush=True)
        result.update({"lightly_images_per_s": theirs["images_per_s"], "lightly_floor_images_per_s": theirs["floor_images_per_s"],
                       "ratio_to_lightly": f"{mine['images_per_s'] / float(theirs['images_per_s']):.3f}",
                       "lightly_knn_acc": theirs["knn_acc"],
                       "knn_diff_points": f"{100 * (mine['knn_acc'] - float(theirs['knn_acc'])):.2f}"})
    if args.write:
        dtype = resolve_precision(args.precision, torch.device("cpu"))
        shown = args.precision + (f" ({'bf16' if dtype == torch.bfloat16 else 'fp32'})" if args.precision == "auto" else "")
        cells = [date.today().isoformat(), revision(), cpu_model(), str(args.steps), shown, result["images_per_s"], result["floor_images_per_s"], result["ratio_to_floor"],
                 result.get("lightly_images_per_s", "-"), result.get("ratio_to_lightly", "-"), f"{result['knn_acc']} +- {knn_std:.4f} ({len(runs)} seeds)",
                 result.get("lightly_knn_acc", "-")]
        write_row("| " + " | ".join(cells) + " |")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
