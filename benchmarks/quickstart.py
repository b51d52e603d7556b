"""The quickstart's options: Fashion-MNIST accuracy against minutes of pretraining, on the two kinds
of CPU (native bf16: AMX or AVX512-BF16; fp32 only: AVX2).

usage:
  python benchmarks/quickstart.py speed [--options ...] [--rounds 2] [--steps 40]
  python benchmarks/quickstart.py accuracy --option NAME --steps N [N ...] [--seeds 0 1 2] [--threads 2]
  python benchmarks/quickstart.py table [--write]

Every option is the `make run` recipe (configs/fmnist.yaml: SimCLR T = 0.2, AdamW 2e-3, 50 warmup
steps then cosine, batch 256, fmnist views with crops of 25-100%) with its backbone width and view
size set (OPTIONS below); the recipe itself is width 24 with 20 px views since this comparison. ``speed`` measures each option's trainer images/s in 40-step runs, options
interleaved in rounds so a change of load hits all of them, on the CPU it runs on; to measure the
fp32 kind on a CPU with native bf16, cap the instruction set as on an AVX2-only machine:
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` (precision=auto then picks fp32: 355 images/s
for convnet6 here, against 347 measured on a real AVX2-only AMD EPYC). ``accuracy`` trains the
option for N steps and records kNN (k = 20, T = 0.07) and the L-BFGS linear probe on the test split;
accuracy at a step count does not depend on the machine's speed, so it may run under load.
``table`` turns steps into minutes of pretraining with the option's median images/s on each kind
of CPU: minutes = steps x 256 / images/s / 60, and prints the frontier.

Records: ``benchmarks/results/quickstart/{speed,accuracy}.jsonl`` (with revision and CPU).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, cpu_model, read_jsonl, revision, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "quickstart"
CONFIG = ROOT / "configs" / "fmnist.yaml"
OPTIONS = {  # name -> overrides of configs/fmnist.yaml (train.steps aside); each sets both knobs
    "convnet6, 28 px views": ["backbone.options.width=32", "views.options.size=28"],
    "convnet6 width 24, 28 px views": ["backbone.options.width=24", "views.options.size=28"],
    "convnet6, 20 px views": ["backbone.options.width=32", "views.options.size=20"],
    "convnet6 width 24, 20 px views": ["backbone.options.width=24", "views.options.size=20"],  # configs/fmnist.yaml
    "convnet6, 16 px views": ["backbone.options.width=32", "views.options.size=16"],
}


def cpu_kind() -> str:
    """'bf16' where precision=auto trains in bf16 (native AMX / AVX512-BF16), else 'fp32'."""
    import torch

    from selfsup.train.hardware import resolve_precision

    return "bf16" if resolve_precision("auto", torch.device("cpu")) == torch.bfloat16 else "fp32"


def capped() -> str:
    caps = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS") if os.environ.get(k)]
    return " ".join(caps)


def pretrain(option: str, steps: int, seed: int, out: Path, evaluate: bool, extra: list[str]):
    import selfsup

    overrides = ["train.progress=false", "train.monitor_every=0", f"train.steps={steps}", *OPTIONS[option], *extra]
    if evaluate:
        overrides.append("eval.protocols=[knn, linear]")
    return selfsup.pretrain(str(CONFIG), seed=seed, out=out, overrides=overrides, report=False, evaluate=evaluate)


def speed(args) -> None:
    rev, cpu, kind = revision(), cpu_model(), cpu_kind()
    seen: dict[str, list[float]] = {o: [] for o in args.options}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for option in args.options:
                run = pretrain(option, args.steps, 0, Path(tmp) / f"{r}-{args.options.index(option)}", False,
                               [f"train.checkpoint_every={args.steps}", "train.collapse_check_every=0"])
                seen[option].append(run.images_per_s)
                print(f"round {r}: {option}: {run.images_per_s:.0f} images/s", flush=True)
    for option, values in seen.items():
        append_jsonl(RESULTS / "speed.jsonl", {"option": option, "images_per_s": values, "steps": args.steps,
                                               "kind": kind, "caps": capped(), "cpu": cpu, "revision": rev,
                                               "command": "python benchmarks/quickstart.py " + " ".join(sys.argv[1:])})


def accuracy(args) -> None:
    rev, cpu, kind = revision(), cpu_model(), cpu_kind()
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            for seed in args.seeds:
                t0 = time.perf_counter()
                run = pretrain(args.option, steps, seed, Path(tmp) / f"{steps}-{seed}", True,
                               [f"train.threads={args.threads}"])
                record = {"option": args.option, "steps": steps, "seed": seed, "knn": run.results["knn"]["accuracy"],
                          "linear": run.results["linear"]["accuracy"], "wall_s": round(time.perf_counter() - t0, 1),
                          "kind": kind, "caps": capped(), "cpu": cpu, "revision": rev,
                          "command": "python benchmarks/quickstart.py " + " ".join(sys.argv[1:])}
                append_jsonl(RESULTS / "accuracy.jsonl", record)
                print(json.dumps(record), flush=True)


def table() -> str:
    speeds: dict[tuple[str, str], list[float]] = {}
    for r in read_jsonl(RESULTS / "speed.jsonl"):
        speeds.setdefault((r["option"], r["kind"]), []).extend(r["images_per_s"])
    cells: dict[tuple[str, int], list[dict]] = {}
    for r in read_jsonl(RESULTS / "accuracy.jsonl"):
        cells.setdefault((r["option"], r["steps"]), []).append(r)
    if not cells:
        return "No accuracy records yet: run `python benchmarks/quickstart.py accuracy --option ... --steps ...`."
    kinds = sorted({k for _, k in speeds})
    lines = ["| option | steps | " + " | ".join(f"minutes ({k})" for k in kinds) + " | kNN | linear | seeds (trained in) |",
             "|---|---:|" + "---:|" * len(kinds) + "---|---|---|"]

    def ms(values: list[float]) -> str:
        return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"

    for (option, steps), rs in sorted(cells.items(), key=lambda kv: (list(OPTIONS).index(kv[0][0]), kv[0][1])):
        minutes = []
        for kind in kinds:
            s = speeds.get((option, kind))
            minutes.append(f"{steps * 256 / statistics.median(s) / 60:.1f}" if s else "-")
        lines.append(f"| {option} | {steps} | " + " | ".join(minutes) + f" | {ms([r['knn'] for r in rs])} | "
                     f"{ms([r['linear'] for r in rs])} | "
                     + ", ".join(f"{r['seed']} ({r['kind']})" for r in rs) + " |")
    notes = ["", "The old recipe (width 32, 28 px views) at other step counts is in the `make run` section above "
             "(bf16, revision 30e292b and before): 500 steps kNN 0.844 / linear 0.870, 1800 steps 0.866 / 0.881 (seed "
             "0), 2500 steps 0.868 / 0.887 (3 seeds); at its fp32 speed below those are 5.9, 21 and 29 minutes.",
             "", "Images/s (median of the rounds) per option and kind of CPU:", ""]
    for (option, kind), values in sorted(speeds.items()):
        notes.append(f"- {option}, {kind}: {statistics.median(values):.0f} ({', '.join(f'{v:.0f}' for v in values)})")
    records = read_jsonl(RESULTS / "speed.jsonl") + read_jsonl(RESULTS / "accuracy.jsonl")
    notes += ["", "Measured on " + "; ".join(sorted({f"{r['cpu']} {r['kind']}" + (f" ({r['caps']})" if r.get('caps') else "")
                                                     for r in records}))
              + f"; revision(s) {', '.join(sorted({r['revision'] for r in records}))}. Commands: "
              + "; ".join(f"`{c}`" for c in sorted({r['command'] for r in records})) + "."]
    return "\n".join(lines + notes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["speed", "accuracy", "table"])
    p.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS), metavar="OPTION")
    p.add_argument("--option", choices=list(OPTIONS))
    p.add_argument("--steps", type=int, nargs="+", default=[40])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    if args.action == "speed":
        args.steps = args.steps[0]
        speed(args)
    elif args.action == "accuracy":
        if args.option is None:
            p.error("accuracy needs --option")
        accuracy(args)
    text = table()
    print(text)
    if args.write:
        write_section("quickstart", text, "Quickstart options: accuracy against minutes (`benchmarks/quickstart.py`)")


if __name__ == "__main__":
    main()
