"""Does ``torch.compile`` pay for the training step on this CPU? The backbone floor (forward +
backward of two views' worth of images through a backbone and a projection MLP, and an AdamW step),
eager against compiled, side by side in one process.

usage:
  python benchmarks/compile_check.py [--threads 2] [--steps 15] [--rounds 2] [--precisions fp32 bf16]

Backbones: the quickstart's (convnet6 width 24 on 20 px views, batch 256 images = 512 views, as
``configs/fmnist.yaml``) and ResNet-18 with the CIFAR stem on 32 px RGB views (batch 64 images =
128 views). Each (backbone, precision) pair alternates eager and compiled over ``--rounds`` rounds
(compiled first in odd rounds) and takes the median step of ``--steps`` timed steps after 3 warm-up
steps; the compiled module is built once, so its compilation time is reported separately (the
first warm-up steps). The GPU side is in ``benchmarks/gpu_check.py --compile`` (the ResNet-18
floor on an H200: BENCHMARKS.md).

Prints one line per pair: eager and compiled images/s, their ratio, the compilation seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import cpu_model, median_seconds, revision  # noqa: E402

BACKBONES = {  # name: (build options, input shape of one view, images per step)
    "convnet6-w24-20px": (dict(name="convnet6", in_channels=1, image_size=20, width=24), (1, 20, 20), 256),
    "resnet18-cifar-32px": (dict(name="resnet18", in_channels=3, image_size=32, stem="cifar"), (3, 32, 32), 64),
}


def build(options: dict) -> torch.nn.Module:
    from selfsup.backbones.base import build_backbone

    torch.manual_seed(0)
    options = dict(options)
    net = build_backbone(options.pop("name"), **options)
    head = torch.nn.Sequential(torch.nn.Linear(net.dim, 512), torch.nn.BatchNorm1d(512), torch.nn.ReLU(),
                               torch.nn.Linear(512, 128))
    return torch.nn.Sequential(net, head).to(memory_format=torch.channels_last)


def stepper(model: torch.nn.Module, compiled: bool, shape: tuple, images: int, precision: str):
    run = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2 * images, *shape).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            z = run(x).float()
        loss = z.pow(2).mean()  # any scalar of the projections: the floor has no loss of its own
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {cpu_model()}, torch {torch.__version__}, {args.threads} threads, revision {revision()}", flush=True)
    for name in args.backbones:
        options, shape, images = BACKBONES[name]
        for precision in args.precisions:
            steps = {}
            compile_s = 0.0
            for compiled in (False, True):
                steps[compiled] = stepper(build(options), compiled, shape, images, precision)
                t0 = time.perf_counter()
                for _ in range(3):
                    steps[compiled]()
                if compiled:
                    compile_s = time.perf_counter() - t0
            rates = {False: [], True: []}
            for r in range(args.rounds):
                for compiled in ((True, False) if r % 2 else (False, True)):
                    rates[compiled].append(images / median_seconds(steps[compiled], args.steps, warmup=0))
            eager, comp = statistics.mean(rates[False]), statistics.mean(rates[True])
            print(f"{name} {precision}: eager {eager:.0f} images/s, compiled {comp:.0f} images/s, "
                  f"ratio {comp / eager:.2f}, compilation {compile_s:.0f} s (3 warm-up steps)", flush=True)


if __name__ == "__main__":
    main()
