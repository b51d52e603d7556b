"""Continual pretraining on Fashion-MNIST: classes 0-4 first, then 5-9; the infinite and WSD
learning-rate schedules against repeated cosine, with and without adapters; kNN on each half after
each stage (forgetting on the old half, gain on the new one).

usage:
  python benchmarks/continual.py run [--seeds 0 1 2] [--steps 300] [--batch-size 256] [--threads 2]
  python benchmarks/continual.py table [--write]

The two stages (train split, labels unused in pretraining): A = the 30,000 images of classes 0-4,
B = the 30,000 of classes 5-9. Every stage is ``selfsup.pretrain``: SimCLR, convnet6, the fmnist
views, AdamW at lr 2e-3, ``--steps`` steps of ``--batch-size`` images. Rows:

- ``cosine``: repeated cosine (each stage warms up again over 5% of its steps to the same peak and
  decays to 0); stage B starts from stage A's final encoder.
- ``infinite``: Singh et al.'s infinite cosine schedule (``optim.schedule=infinite``): stage A warms
  up over 5% of its steps, cools down along a cosine to 0.25 x the peak by 30% of its steps, stays
  there, and anneals exponentially to 0.1 x the peak over its last 20%; stage B starts from stage
  A's ``encoder-stable/`` (the weights before that anneal), with no warmup and no cooldown: constant
  at 0.25 x the peak, then the same anneal. Each stage is evaluated on its annealed encoder.
- ``wsd``: warmup-stable-decay (5% warmup, stable, linear decay to 0 over the last 20%); stage B
  starts from A's ``encoder-stable/`` with no warmup.
- ``cosine + adapters``, ``infinite + adapters``: stage A as in the row without adapters (the same
  run); stage B freezes the backbone and trains bottleneck adapters of width 16
  (``train.adapters=16``) with the heads.

Evaluation after each stage: the frozen encoder's features of the train and test images of each
half, kNN (k = 20, T = 0.07) within the half (5 classes each), on the test split. "Forgetting" is
the old half's kNN after stage B minus after stage A; "gain" the new half's after B minus after A.

Each (row, seed) is appended to ``benchmarks/results/continual/results.jsonl`` with the revision;
``table --write`` puts the table (mean +- std over seeds) in BENCHMARKS.md between the
``continual`` markers.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, cpu_model, read_jsonl, revision, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "continual" / "results.jsonl"
WORK = ROOT / "runs" / "continual"
ROWS = ("cosine", "infinite", "wsd", "cosine + adapters", "infinite + adapters")
ADAPTERS = 16


def halves(work: Path) -> dict:
    """{'old'|'new': (train npz, test npz)}: Fashion-MNIST classes 0-4 and 5-9 as .npz files."""
    from selfsup.data import load_dataset

    out = {}
    for split in ("train", "test"):
        data = load_dataset("fashion-mnist", split=split)
        x, y = data.images[:, 0].numpy(), data.labels.numpy()
        for half, keep in (("old", y < 5), ("new", y >= 5)):
            path = work / f"{half}-{split}.npz"
            if not path.is_file():
                np.savez(path, x=x[keep], y=y[keep])
            out.setdefault(half, {})[split] = path
    return out


def stage_config(schedule: str, stage: str, steps: int, batch: int, seed: int, threads: int) -> dict:
    warmup = max(1, round(0.05 * steps))
    optim = {"lr": 2e-3}
    if schedule == "cosine":
        optim.update(schedule="cosine", warmup_steps=warmup)
    elif schedule == "infinite":
        optim.update(schedule="infinite", final_lr_ratio=0.1, const_lr_ratio=0.25)
        if stage == "A":
            optim.update(warmup_steps=warmup, cooldown_steps=round(0.30 * steps) - warmup)
    else:
        optim.update(schedule="wsd", warmup_steps=warmup if stage == "A" else 0)
    return {"method": {"name": "simclr"}, "backbone": {"name": "convnet6"}, "views": {"preset": "fmnist"},
            "optim": optim, "train": {"steps": steps, "batch_size": batch, "seed": seed, "threads": threads,
                                      "progress": False, "checkpoint_every": steps, "keep_checkpoints": 1,
                                      "collapse_check_every": 0}}


def knn_on_halves(encoder_dir: Path, data: dict) -> dict:
    from selfsup.encoder import load_encoder
    from selfsup.evaluation.features import extract_features
    from selfsup.evaluation.knn import knn_accuracy

    encoder = load_encoder(encoder_dir)
    out = {}
    for half, files in data.items():
        tr, te = np.load(files["train"]), np.load(files["test"])
        f_tr = extract_features(encoder, torch.from_numpy(tr["x"])[:, None])
        f_te = extract_features(encoder, torch.from_numpy(te["x"])[:, None])
        out[half] = knn_accuracy(f_tr, torch.from_numpy(tr["y"]), f_te, torch.from_numpy(te["y"]))
    return out


def run(args) -> None:
    import selfsup

    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    data = halves(WORK)
    rev, cpu = revision(), cpu_model()
    done = {(r["row"], r["seed"], r["steps"]) for r in read_jsonl(args.results) if r.get("revision") == rev}
    for seed in args.seeds:
        first: dict = {}  # schedule -> (stage-A run dir, kNN after A, seconds)
        for row in args.rows:
            if (row, seed, args.steps) in done:
                continue
            schedule = row.split(" + ")[0]
            t0 = time.perf_counter()
            if schedule not in first:
                out = WORK / f"seed{seed}" / schedule / "A"
                shutil.rmtree(out, ignore_errors=True)
                cfg = stage_config(schedule, "A", args.steps, args.batch_size, seed, args.threads)
                selfsup.pretrain({**cfg, "data": {"name": str(data["old"]["train"])}, "out": str(out)},
                                 evaluate=False, report=False)
                first[schedule] = (out, knn_on_halves(out / "encoder", data), time.perf_counter() - t0)
            run_a, after_a, seconds_a = first[schedule]
            start = run_a / ("encoder" if schedule == "cosine" else "encoder-stable")
            out = WORK / f"seed{seed}" / row.replace(" + ", "-") / "B"
            shutil.rmtree(out, ignore_errors=True)
            cfg = stage_config(schedule, "B", args.steps, args.batch_size, seed, args.threads)
            cfg["train"].update(init_from=str(start), adapters=ADAPTERS if "adapters" in row else 0)
            t1 = time.perf_counter()
            selfsup.pretrain({**cfg, "data": {"name": str(data["new"]["train"])}, "out": str(out)},
                             evaluate=False, report=False)
            after_b = knn_on_halves(out / "encoder", data)
            record = {"row": row, "seed": seed, "steps": args.steps, "batch_size": args.batch_size,
                      "after_a": after_a, "after_b": after_b,
                      "forgetting": after_b["old"] - after_a["old"], "gain": after_b["new"] - after_a["new"],
                      "seconds_a": round(seconds_a, 1), "seconds_b": round(time.perf_counter() - t1, 1),
                      "continued_from": start.name, "threads": args.threads, "cpu": cpu, "revision": rev,
                      "command": "python benchmarks/continual.py run " + " ".join(sys.argv[2:])}
            append_jsonl(args.results, record)
            print(record, flush=True)


def cell(values: list[float], signed: bool = False) -> str:
    if not values:
        return "-"
    fmt = "+.3f" if signed else ".3f"
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{statistics.mean(values):{fmt}} +- {statistics.stdev(values):.3f}"


def table(args) -> str:
    records = read_jsonl(args.results)
    if not records:
        return "No records yet: run `python benchmarks/continual.py run`."
    steps = max(r["steps"] for r in records)
    latest = {}
    for r in records:
        if r["steps"] == steps:
            latest[(r["row"], r["seed"])] = r
    lines = ["| schedule | stage B trains | old (0-4) after A | new (5-9) after A | old after B | new after B | "
             "forgetting (old) | gain (new) | seeds |", "|---" * 9 + "|"]
    for row in ROWS:
        rs = [r for (name, _), r in sorted(latest.items()) if name == row]
        if not rs:
            continue
        schedule, trains = row.split(" + ")[0], ("adapters (width 16)" if "adapters" in row else "all weights")
        lines.append(f"| {schedule} | {trains} | {cell([r['after_a']['old'] for r in rs])} | "
                     f"{cell([r['after_a']['new'] for r in rs])} | {cell([r['after_b']['old'] for r in rs])} | "
                     f"{cell([r['after_b']['new'] for r in rs])} | {cell([r['forgetting'] for r in rs], True)} | "
                     f"{cell([r['gain'] for r in rs], True)} | {len(rs)} |")
    used = list(latest.values())
    notes = ["", f"kNN (k = 20, T = 0.07) within each half of the Fashion-MNIST test split; {steps} steps per stage, "
             f"batch {used[0]['batch_size']}, SimCLR, convnet6, mean +- std over seeds. Stage A trains on classes "
             "0-4, stage B continues on 5-9 (see the script's docstring for each schedule's phases).",
             f"Measured on {'; '.join(sorted({r['cpu'] for r in used}))}, revision(s) "
             f"{', '.join(sorted({r['revision'] for r in used}))}; command: `{used[0]['command']}`, table: "
             "`python benchmarks/continual.py table --write`."]
    return "\n".join(lines + notes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["run", "table"])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS, metavar="ROW")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300, help="steps per stage")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--write", action="store_true", help="put the table into BENCHMARKS.md")
    args = p.parse_args()
    if args.action == "run":
        run(args)
    text = table(args)
    print(text)
    if args.write:
        write_section("continual", text, "Continual pretraining: Fashion-MNIST 0-4, then 5-9 (`benchmarks/continual.py`)")


if __name__ == "__main__":
    main()
