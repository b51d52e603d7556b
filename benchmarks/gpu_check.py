"""The checks that need a CUDA GPU, as one short script for a lent device (see the README of the
device tool): the CUDA code paths work, and the trainer keeps up with its backbone there.

usage (on the GPU machine, from the repository root):
  python benchmarks/gpu_check.py [--out DIR] [--steps 30]

1. Correctness on CUDA, for bf16 autocast and fp16 with GradScaler: a short SimCLR, BYOL and DINO
   run (synthetic 32x32 RGB images, resnet18 CIFAR stem) finishes with finite losses, resumes from
   its checkpoint, and its encoder evaluates (kNN, linear) on the GPU.
2. Speed, measured side by side in one process: SimCLR training steps against the backbone alone
   (forward + backward of the same views and an AdamW step) at batch 256 and 1024, bf16 and
   channels_last, after warm-up, median of the timed steps; the ratio is what the pipeline
   (views, heads, loss) costs around its backbone on a GPU.

Everything is written to ``<out>/gpu_check.json`` (and printed). The data are random images:
throughput does not depend on what the pixels show, and the device machine has no datasets.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def synthetic(path: Path, n: int = 4096, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), y=rng.integers(0, 10, n))
    return path


def correctness(data: Path, tmp: Path, steps: int) -> list[dict]:
    import selfsup

    out = []
    for method in ("simclr", "byol", "dino"):
        for precision in ("bf16", "fp16"):
            run_dir = tmp / f"{method}-{precision}"
            config = {"data": {"name": str(data), "test_split": str(data)},
                      "backbone": {"name": "resnet18", "stem": "cifar"}, "method": {"name": method},
                      "train": {"steps": steps, "batch_size": 128, "device": "cuda", "precision": precision,
                                "checkpoint_every": steps // 2, "progress": False},
                      "eval": {"protocols": ["knn", "linear"]}, "out": str(run_dir)}
            t0 = time.perf_counter()
            half = selfsup.pretrain({**config, "train": {**config["train"], "steps": steps // 2}}, evaluate=False,
                                    report=False)
            run = selfsup.pretrain(config, resume=True, report=False)
            losses = [json.loads(line).get("loss") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            out.append({"method": method, "precision": precision, "steps": run.steps, "first_half": half.steps,
                        "finite": all(v is None or np.isfinite(v) for v in losses),
                        "knn": run.results["knn"]["accuracy"], "linear": run.results["linear"]["accuracy"],
                        "images_per_s": run.images_per_s, "wall_s": time.perf_counter() - t0})
            print(json.dumps(out[-1]), flush=True)
    return out


def speed(batch_size: int, steps: int = 30) -> dict:
    from selfsup import config as C
    from selfsup import registry
    from selfsup.backbones.base import build_backbone
    from selfsup.methods.base import Batch
    from selfsup.data.dataset import ImageDataset
    from selfsup.train.assemble import run_views
    from selfsup.train.optim import build_optimizer

    device = torch.device("cuda")
    images = torch.randint(0, 256, (batch_size * 4, 3, 32, 32), dtype=torch.uint8, device=device)
    mean, std = [0.5] * 3, [0.25] * 3
    cfg = C.from_dict({"method": {"name": "simclr"}, "backbone": {"name": "resnet18", "stem": "cifar"}})
    cls = registry.get("method", "simclr")
    method = cls(build_backbone("resnet18", in_channels=3, image_size=32, stem="cifar")).to(device)
    method = method.to(memory_format=torch.channels_last)
    shape = ImageDataset(images[:1].cpu(), None, ["0"], "random", "memory")  # what the views need to know of the data
    views, layout = run_views(cfg, cls, shape, mean, std)
    optimizer = build_optimizer(method, "adamw", 1e-3, 1e-4, 0.9, (0.9, 0.999), 0.02)
    floor_net = build_backbone("resnet18", in_channels=3, image_size=32, stem="cifar").to(device)
    floor_net = floor_net.to(memory_format=torch.channels_last)
    floor_opt = torch.optim.AdamW(floor_net.parameters(), lr=1e-3, fused=True)
    g = torch.Generator(device=device).manual_seed(0)

    def pipeline_step():
        index = torch.randint(0, len(images), (batch_size,), device=device)
        vs, params = views(images[index], g)
        vs = [v.contiguous(memory_format=torch.channels_last) for v in vs]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = method(Batch(vs, params, images[index], None, index, 0.5, layout["n_global"], layout["n_local"]))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    x = torch.randn(2 * batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)

    def floor_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = floor_net(x).float().sum()
        floor_opt.zero_grad(set_to_none=True)
        loss.backward()
        floor_opt.step()

    def timed(fn):
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return batch_size / statistics.median(times)

    rounds = [(timed(pipeline_step), timed(floor_step)) for _ in range(3)]  # interleaved: drift hits both
    ratios = [p / f for p, f in rounds]
    return {"batch_size": batch_size, "selfsup_img_s": statistics.median(p for p, _ in rounds),
            "floor_img_s": statistics.median(f for _, f in rounds), "ratio_to_floor": statistics.median(ratios)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu-check"))
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run this on the GPU machine")
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic(Path(tmp) / "images.npz")
        report["correctness"] = correctness(data, Path(tmp), args.steps)
    report["speed"] = [speed(b) for b in (256, 1024)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report["speed"], indent=2))


if __name__ == "__main__":
    main()
