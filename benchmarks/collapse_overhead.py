"""What the collapse alarm (train/monitor.py) costs per training step: the same run with the check on
and off, side by side in one process.

usage: PYTHONPATH=src python benchmarks/collapse_overhead.py [--rounds 4] [--steps 50] [--every 25]
           [--method simclr] [--batch-size 256] [--width 32] [--threads 1]

Two measurements, both printed:

- A/B: each round trains the same run (Fashion-MNIST, convnet6) twice, check on and check off, in
  alternating order (on-off, off-on, ...) so drift of a shared machine hits both; the mean step time
  of a run comes from its images/s (the check runs inside the step's timed part), and the overhead
  is the median over rounds of on/off - 1. On a busy machine its noise (a few %) is larger than the
  check itself, so:
- direct: the median time of one check on a batch of this method's real shape (2 x batch rows of
  its embeddings), divided by `every` median steps: the amortized cost per step, without the noise.

The last line is ``RESULT ab_overhead=... direct_overhead=... check_ms=... step_ms=...``; the
requirement is direct_overhead < 0.02 (and ab_overhead within noise of it).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from selfsup import config as C  # noqa: E402
from selfsup import registry  # noqa: E402
from selfsup.backbones.base import build_backbone  # noqa: E402
from selfsup.train.loop import train  # noqa: E402
from selfsup.train.monitor import collapse_stats  # noqa: E402


def step_ms(args, every: int, out: Path) -> float:
    config = C.load(overrides=[
        "data.name=fashion-mnist", f"out={out}", f"method.name={args.method}", f"train.steps={args.steps + 1}",
        f"train.batch_size={args.batch_size}", f"backbone.width={args.width}", "train.progress=false",
        f"train.checkpoint_every={args.steps * 10}", f"train.log_every={args.steps * 10}",
        f"train.collapse_check_every={every}", f"train.collapse_patience={args.steps + 1}",  # never fires, keeps checking
        f"train.threads={args.threads}"])
    result = train(config, stop_after=args.steps)  # stop before the last step: no encoder export, no evaluation
    return 1000.0 * args.batch_size / result.images_per_s


def check_ms(args, repeats: int = 50) -> float:
    """One check on random rows of the shape the alarm sees for this method (it reads no values' meaning)."""
    backbone = build_backbone("convnet6", in_channels=1, image_size=28, width=args.width)
    method = registry.get("method", args.method)(backbone)
    dim = method.embedding_dim or backbone.dim
    x = torch.randn(2 * args.batch_size, dim)
    collapse_stats(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        collapse_stats(x)
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50, help="steps per run (a multiple of --every)")
    parser.add_argument("--every", type=int, default=C.TrainConfig.collapse_check_every)
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.method}, convnet6 width {args.width}, batch {args.batch_size}, {args.steps} steps a run, "
          f"check every {args.every} steps", flush=True)
    ratios, offs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        step_ms(args, args.every, Path(tmp) / "warmup")  # first-run costs (allocator, kernels) hit neither side
        for r in range(args.rounds):
            order = [args.every, 0] if r % 2 == 0 else [0, args.every]
            times = {}
            for i, every in enumerate(order):
                times[every] = step_ms(args, every, Path(tmp) / f"r{r}-{i}")
            ratios.append(times[args.every] / times[0])
            offs.append(times[0])
            print(f"round {r + 1}: step {times[args.every]:.1f} ms with the check, {times[0]:.1f} ms without: "
                  f"ratio {ratios[-1]:.4f}", flush=True)
    one = check_ms(args)
    step = statistics.median(offs)
    ab, direct = statistics.median(ratios) - 1.0, one / (args.every * step)
    print(f"A/B: median ratio {1 + ab:.4f} (overhead {100 * ab:+.2f}%, noise included)")
    print(f"direct: one check {one:.2f} ms every {args.every} steps of {step:.1f} ms = {100 * direct:.3f}% per step")
    print(f"RESULT ab_overhead={ab:.4f} direct_overhead={direct:.5f} check_ms={one:.3f} step_ms={step:.1f}")


if __name__ == "__main__":
    main()
