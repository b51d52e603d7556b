"""The checks that need a CUDA GPU, as one short script for a lent device (see the README of the
device tool): the CUDA code paths work, and the trainer keeps up with its backbone there.

usage (on the GPU machine, from the repository root):
  python benchmarks/gpu_check.py [--out DIR] [--steps 30] [--parts correctness speed epoch]
                                 [--batch-size 512] [--workers N] [--compile] [--profile]

1. Correctness on CUDA, for bf16 autocast and fp16 with GradScaler: a short SimCLR, BYOL and DINO
   run (synthetic 32x32 RGB images, resnet18 CIFAR stem) finishes with finite losses, resumes from
   its checkpoint, and its encoder evaluates (kNN, linear) on the GPU.
2. Speed, measured side by side in one process: SimCLR training steps against the backbone alone
   (forward + backward of the same views and an AdamW step) at batch 256 and 1024, bf16 and
   channels_last, after warm-up, median of the timed steps; the ratio is what the pipeline
   (views, heads, loss) costs around its backbone on a GPU.
3. An epoch (issue 12's GPU recipe), in one process, in this order: the backbone floor (ResNet-18
   with the CIFAR stem alone: forward + backward of 2 x B random 32x32 views, bf16 autocast,
   channels_last, fused AdamW; median of 20 timed steps after 5), the library's own trainer
   (``selfsup.pretrain``: two-view SimCLR, its default views, two epochs of a CIFAR-10-shaped
   set of 50,000 random 32x32 RGB images; the figure is the second epoch's images/s from the
   run's metrics), LightlySSL's standard pipeline (its ``SimCLRTransform(input_size=32)`` on PIL
   images in DataLoader workers with pinned memory, ``SimCLRProjectionHead`` and ``NTXentLoss``,
   around the same backbone with the same bf16 autocast, channels_last and fused AdamW, so that
   the data pipeline is the difference; one epoch after 10 warm-up batches), then the floor again
   (drift). The trainer runs twice: with its default on CUDA (``train.nonfinite_check=device``,
   no host read inside a step) and with ``host`` (the loss and gradient norm read every step), to
   show what the sync-free step buys. Also counted, for both: the host-device synchronizations per
   trainer step (``torch.cuda.set_sync_debug_mode``: the difference between a 4- and an 8-step run
   over 4; the target is 0 for the default).
   With ``--compile``: the floor again with the backbone through ``torch.compile``, and the trainer
   with ``train.compile=true`` (its second epoch, after compiling in the first). With
   ``--profile``: torch.profiler over 20 trainer steps after a warm-up run: CPU and device time per
   step of the trainer's phases (views, forward, backward, update), kernel launches per step, the
   device's busy time per step (against the wall time, what the GPU idles) and the top kernels.

Everything is written to ``<out>/gpu_check.json`` (and printed). The data are random images:
throughput does not depend on what the pixels show, and the device machine has no datasets.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import cpu_model, revision  # noqa: E402


DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def synthetic(path: Path, n: int = 4096, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), y=rng.integers(0, 10, n))
    return path


def correctness(data: Path, tmp: Path, steps: int) -> list[dict]:
    import selfsup

    test = synthetic(tmp / "test.npz", n=1024, seed=1)  # a separate file: the train file is no held-out split
    out = []
    for method in ("simclr", "byol", "dino") if DEVICE == "cuda" else ("simclr",):
        for precision in ("bf16", "fp16") if DEVICE == "cuda" else ("bf16",):
            run_dir = tmp / f"{method}-{precision}"
            config = {"data": {"name": str(data), "test_split": str(test)},
                      "backbone": {"name": "resnet18", "stem": "cifar"}, "method": {"name": method},
                      "train": {"steps": steps, "batch_size": 128, "device": DEVICE, "precision": precision,
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


def floor_rate(batch_size: int, steps: int = 20, warmup: int = 5, compile: bool = False) -> dict:
    """Images/s of the backbone alone: ResNet-18 (CIFAR stem) on 2 x `batch_size` random views."""
    from selfsup.backbones.base import build_backbone

    device = torch.device(DEVICE)
    net = build_backbone("resnet18", in_channels=3, image_size=32, stem="cifar").to(device)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    run = torch.compile(net) if compile else net
    x = torch.randn(2 * batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = run(x).float().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"images_per_s": batch_size / statistics.median(times), "warmup_s": round(warm_s, 2), "compile": compile}


def trainer_epoch(data: Path, tmp: Path, batch_size: int, n: int, epochs: int = 2, check: str = "auto",
                  compile: bool = False) -> dict:
    """The library's trainer on `data`: two-view SimCLR, ResNet-18 CIFAR stem, bf16, `epochs` epochs;
    `check`: ``train.nonfinite_check`` (auto: on the device on CUDA; host: read every step);
    `compile`: ``train.compile`` (the backbone through torch.compile; it compiles in the first epoch)."""
    import selfsup

    per_epoch = n // batch_size
    config = {"data": {"name": str(data)}, "backbone": {"name": "resnet18", "stem": "cifar"},
              "method": {"name": "simclr"}, "out": str(tmp / f"epoch-{batch_size}-{check}-{compile}"),
              "train": {"steps": epochs * per_epoch, "batch_size": batch_size, "device": DEVICE, "precision": "bf16",
                        "checkpoint_every": epochs * per_epoch, "log_every": per_epoch, "progress": False,
                        "nonfinite_check": check, "compile": compile}}
    t0 = time.perf_counter()
    run = selfsup.pretrain(config, evaluate=False, report=False)
    wall = time.perf_counter() - t0
    windows = [json.loads(line) for line in (Path(config["out"]) / "metrics.jsonl").read_text().splitlines()]
    windows = [w for w in windows if "images_per_s" in w]
    return {"images_per_s": windows[-1]["images_per_s"], "check": check, "compile": compile,
            "epochs": [round(w["images_per_s"], 1) for w in windows],
            "steps_per_epoch": per_epoch, "views": run.results.get("pretrain", {}).get("views"),
            "wall_s": round(wall, 1), "mean_images_per_s_all_steps": run.images_per_s}


def profile_trainer(data: Path, tmp: Path, batch_size: int, steps: int = 20) -> dict:
    """Where a trainer step's time goes on the device: torch.profiler over `steps` steps of the trainer
    (after a warm-up run in the same process, so cuDNN's autotuning is done), the trainer's phase
    labels (``selfsup.views``, ``.forward``, ``.backward``, ``.update``: CPU and device time per step),
    the kernels launched per step, the device's busy time against the wall time, and the top kernels."""
    import selfsup
    from torch.profiler import ProfilerActivity, profile

    def config(name: str, n: int) -> dict:
        return {"data": {"name": str(data)}, "backbone": {"name": "resnet18", "stem": "cifar"},
                "method": {"name": "simclr"}, "out": str(tmp / name),
                "train": {"steps": n, "batch_size": batch_size, "device": DEVICE, "precision": "bf16",
                          "checkpoint_every": 10_000, "log_every": 10_000, "progress": False,
                          "collapse_check_every": 0}}

    selfsup.pretrain(config("profile-warm", 10), evaluate=False, report=False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        run = selfsup.pretrain(config("profile", steps), evaluate=False, report=False)
    wall = time.perf_counter() - t0
    events = prof.key_averages()

    def device_us(e, own: bool = True) -> float:  # the attribute was named after CUDA in older torch
        names = ("self_device_time_total", "self_cuda_time_total") if own else ("device_time_total", "cuda_time_total")
        return next((getattr(e, n) for n in names if hasattr(e, n)), 0.0)

    phases = {}
    for e in events:
        if e.key.startswith("selfsup."):
            phases[e.key] = {"calls": e.count, "cpu_ms_per_step": round(e.cpu_time_total / 1e3 / steps, 3),
                             "device_ms_per_step": round(device_us(e, own=False) / 1e3 / steps, 3)}
    kernels = [e for e in events if getattr(e, "device_type", None) is not None
               and str(e.device_type).endswith("CUDA") and device_us(e) > 0]
    busy_ms = sum(device_us(e) for e in kernels) / 1e3
    top = sorted(kernels, key=lambda e: -device_us(e))[:12]
    table = None
    for key in (("self_device_time_total", "self_cuda_time_total") if DEVICE == "cuda" else ("self_cpu_time_total",)):
        try:
            table = events.table(sort_by=key, row_limit=25)
            break
        except (AttributeError, KeyError, ValueError):
            continue
    return {"steps": steps, "batch_size": batch_size, "wall_s_whole_run": round(wall, 2),
            "step_ms_profiled": round(batch_size / run.images_per_s * 1e3, 3), "phases": phases,
            "kernel_launches_per_step": round(sum(e.count for e in kernels) / steps, 1),
            "device_busy_ms_per_step": round(busy_ms / steps, 3),
            "top_kernels": [{"name": e.key[:120], "calls": e.count,
                             "ms_per_step": round(device_us(e) / 1e3 / steps, 3)} for e in top],
            "table": table or ""}


def syncs_per_step(data: Path, tmp: Path, batch_size: int, check: str = "auto") -> float:
    """Host-device synchronizations inside one trainer step: (syncs of 8 steps - syncs of 4 steps) / 4."""
    import warnings

    import selfsup

    counts = {}
    for steps in (4, 8):
        config = {"data": {"name": str(data)}, "backbone": {"name": "resnet18", "stem": "cifar"},
                  "method": {"name": "simclr"}, "out": str(tmp / f"sync-{steps}-{check}"),
                  "train": {"steps": steps, "batch_size": batch_size, "device": DEVICE, "precision": "bf16",
                            "checkpoint_every": 1000, "log_every": 1000, "progress": False, "nonfinite_check": check}}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                selfsup.pretrain(config, evaluate=False, report=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts[steps] = sum("synchroniz" in str(w.message) for w in caught)
    return (counts[8] - counts[4]) / 4


def lightly_epoch(x: np.ndarray, batch_size: int, workers: int, warmup: int = 10) -> dict:
    """LightlySSL's standard SimCLR pipeline (PIL views in DataLoader workers) around the same
    backbone, bf16 autocast, channels_last and fused AdamW: images/s over one epoch after `warmup` batches."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    from selfsup.backbones.base import build_backbone

    class Images(torch.utils.data.Dataset):
        def __init__(self, x, transform):
            self.x, self.transform = x, transform

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(self.x[i]))

    device = torch.device(DEVICE)
    transform = SimCLRTransform(input_size=32, gaussian_blur=0.0)  # LightlySSL's CIFAR-10 setting
    loader = torch.utils.data.DataLoader(Images(x, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=True, persistent_workers=True)
    backbone = build_backbone("resnet18", in_channels=3, image_size=32, stem="cifar")
    model = torch.nn.Sequential(backbone, SimCLRProjectionHead(512, 512, 128)).to(device)
    model = model.to(memory_format=torch.channels_last)
    criterion = NTXentLoss(temperature=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    seen, t_start = 0, None
    warmup = min(warmup, len(loader) // 2)
    for i, (x0, x1) in enumerate(loader):
        if i == warmup:
            sync()
            t_start = time.perf_counter()
        views = torch.cat([x0, x1]).to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            z = model(views).float()
        loss = criterion(z[:len(x0)], z[len(x0):])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if t_start is not None:
            seen += len(x0)
    sync()
    return {"images_per_s": seen / (time.perf_counter() - t_start), "workers": workers,
            "batches_timed": seen // batch_size}


def epoch_benchmark(tmp: Path, batch_size: int, workers: int, compile: bool, n: int = 50_000,
                    profile: bool = False) -> dict:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = tmp / "cifar-shaped.npz"
    np.savez(data, x=x, y=rng.integers(0, 10, n))
    out = {"batch_size": batch_size, "images": n}
    out["floor_before"] = floor_rate(batch_size)
    print(json.dumps({"floor_before": out["floor_before"]}), flush=True)
    out["selfsup"] = trainer_epoch(data, tmp, batch_size, n)
    print(json.dumps({"selfsup": out["selfsup"]}), flush=True)
    out["selfsup_host_check"] = trainer_epoch(data, tmp, batch_size, n, check="host")  # the per-step read, for comparison
    print(json.dumps({"selfsup_host_check": out["selfsup_host_check"]}), flush=True)
    try:
        out["lightly"] = lightly_epoch(x, batch_size, workers)
    except Exception as exc:  # noqa: BLE001 - the record says why the peer has no figure
        out["lightly"] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps({"lightly": out["lightly"]}), flush=True)
    out["floor_after"] = floor_rate(batch_size)
    floor = statistics.mean([out["floor_before"]["images_per_s"], out["floor_after"]["images_per_s"]])
    out["ratio_to_floor"] = out["selfsup"]["images_per_s"] / floor
    out["ratio_to_floor_host_check"] = out["selfsup_host_check"]["images_per_s"] / floor
    if "images_per_s" in out["lightly"]:
        out["lightly"]["ratio_to_floor"] = out["lightly"]["images_per_s"] / floor
        out["ratio_to_lightly"] = out["selfsup"]["images_per_s"] / out["lightly"]["images_per_s"]
    if DEVICE == "cuda":
        out["syncs_per_step"] = syncs_per_step(data, tmp, batch_size)
        out["syncs_per_step_host_check"] = syncs_per_step(data, tmp, batch_size, check="host")
    if profile:
        try:
            out["profile"] = profile_trainer(data, tmp, batch_size)
            print(out["profile"].pop("table"), flush=True)
            print(json.dumps({"profile": out["profile"]}), flush=True)
        except Exception as exc:  # noqa: BLE001 - the figures above stand without it
            out["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
    if compile:
        out["floor_compiled"] = floor_rate(batch_size, compile=True)
        out["selfsup_compiled"] = trainer_epoch(data, tmp, batch_size, n, compile=True)  # train.compile=true
        out["ratio_to_floor_compiled_trainer"] = out["selfsup_compiled"]["images_per_s"] / floor
    print(json.dumps({k: v for k, v in out.items() if k not in ("selfsup",)}), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("gpu-check"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--parts", nargs="+", default=["correctness", "speed", "epoch"],
                   choices=["correctness", "speed", "epoch"])
    p.add_argument("--batch-size", type=int, default=512, help="images per step in the epoch benchmark")
    p.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)),
                   help="LightlySSL's DataLoader workers")
    p.add_argument("--compile", action="store_true", help="also time the floor and the trainer (train.compile) through torch.compile")
    p.add_argument("--profile", action="store_true",
                   help="also profile 20 trainer steps: time per phase, kernels per step, device busy time")
    p.add_argument("--images", type=int, default=50_000, help="the epoch benchmark's data set size (CIFAR-10: 50,000)")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="run the correctness (SimCLR, bf16) and epoch parts on the CPU, to check the script itself")
    args = p.parse_args()
    global DEVICE
    if args.cpu_dry_run:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run this on the GPU machine")
    report = {"device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else cpu_model(), "torch": torch.__version__, "cpu": cpu_model(),
              "cpus": os.cpu_count(), "revision": revision()}
    args.out.mkdir(parents=True, exist_ok=True)

    def save():
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        if "correctness" in args.parts:
            data = synthetic(Path(tmp) / "images.npz")
            report["correctness"] = correctness(data, Path(tmp), args.steps)
            save()
        if "speed" in args.parts:
            report["speed"] = [speed(b) for b in (256, 1024)]
            print(json.dumps(report["speed"], indent=2), flush=True)
            save()
        if "epoch" in args.parts:
            report["epoch"] = epoch_benchmark(Path(tmp), args.batch_size, args.workers, args.compile, args.images,
                                             args.profile)
            save()


if __name__ == "__main__":
    main()
