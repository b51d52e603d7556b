"""The evaluation suite on fmnist-cpu encoders: how long the full protocol set takes, how well the
label-free metrics track kNN accuracy over checkpoints, and Core-tuning against plain fine-tuning.

usage:
  python benchmarks/eval_suite.py time RUN [--data fashion-mnist]         # every protocol but fine-tuning, one seed
  python benchmarks/eval_suite.py tracking [--steps 400] [--every 50] [--methods simclr byol] [--reuse]
  python benchmarks/eval_suite.py finetune RUN [--seeds 0 1 2] [--fraction 0.1] [--epochs 15]
  python benchmarks/eval_suite.py table [--write]

``time`` runs `selfsup.study(RUN, protocols="all")` (fine-tuning and the classic SGD protocol
excluded, as the acceptance says) with the default options and prints the wall time of the whole
call and the seconds each protocol took (its ``seconds`` metric), features extracted from scratch.

``tracking`` pretrains each method on the fmnist-cpu recipe (../shared/BENCHMARK.md: convnet6,
crops 8-100%, AdamW 2e-3 constant, batch 256) keeping a checkpoint every ``--every`` steps,
evaluates every checkpoint with knn, rankme, alpha_req, separability and alignment_uniformity
(the runs stay in ``runs/eval_suite/runs/<method>`` for the other modes),
and reports Spearman's and Kendall's rank correlation of each label-free metric with the kNN
accuracy over the checkpoints (per method and over both methods' checkpoints pooled).

``finetune`` fine-tunes RUN's encoder on a stratified label fraction with plain cross-entropy
and with Core-tuning, same recipe and seeds.

Every mode appends its records to ``benchmarks/results/eval_suite/<mode>.jsonl`` with the revision; ``table``
prints (and ``--write`` puts in BENCHMARKS.md between the ``eval-suite`` markers) the tables.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, read_jsonl, revision, write_section  # noqa: E402
OUT = ROOT / "benchmarks" / "results" / "eval_suite"  # the measurement records, committed with the figures
RUNS = ROOT / "runs" / "eval_suite" / "runs"  # the pretraining runs (checkpoints: not committed)
LABEL_FREE = [("rankme", "rank"), ("alpha_req", "alpha"), ("separability", "score"),
              ("alignment_uniformity", "alignment"), ("alignment_uniformity", "uniformity")]


def append(mode: str, record: dict) -> None:
    append_jsonl(OUT / f"{mode}.jsonl", {**record, "revision": revision()})
    print(json.dumps(record), flush=True)


def read(mode: str) -> list[dict]:
    return read_jsonl(OUT / f"{mode}.jsonl")


def time_mode(args) -> None:
    import selfsup

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = selfsup.study(args.run, data=args.data, protocols="all", seeds=(0,), out=Path(tmp) / "e", quiet=False)
        wall = time.perf_counter() - t0
    seconds = {r["protocol"]: r["value"] for r in rows if r["metric"] == "seconds"}
    append("time", {"run": str(args.run), "wall_s": wall, "protocol_s": seconds, "results": len(rows)})


def tracking_mode(args) -> None:
    import selfsup
    from selfsup.evaluation.spectrum import rank_correlations

    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = RUNS / method  # kept: `time` and `finetune` can use it (runs/ is not committed)
            reuse = args.reuse and (run_dir / "results.json").is_file() and \
                len(list((run_dir / "checkpoints").glob("step-*.pt"))) >= args.steps // args.every
            if run_dir.exists() and not reuse:
                import shutil

                shutil.rmtree(run_dir)
            options = {"temperature": 0.2, "hidden_dim": 512, "out_dim": 128} if method == "simclr" else {}
            if not reuse:
                selfsup.pretrain({"data": {"name": "fashion-mnist", "test_split": None}, "backbone": {"name": "convnet6"},
                                  "method": {"name": method, **options},
                                  "views": {"preset": "fmnist", "crop_scale": [0.08, 1.0]},
                                  "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "schedule": "constant"},
                                  "train": {"steps": args.steps, "batch_size": 256, "seed": 0, "progress": False,
                                            "checkpoint_every": args.every, "keep_checkpoints": 1000},
                                  "out": str(run_dir)}, report=False)
            rows = selfsup.study(run_dir, data="fashion-mnist", protocols=["knn", *dict.fromkeys(p for p, _ in LABEL_FREE)],
                                 checkpoints="all", seeds=(0,), out=Path(tmp) / "e", embedding_map=False)
        by = {(r["checkpoint"], r["protocol"], r["metric"]): r["value"] for r in rows}
        steps = sorted({r["checkpoint"] for r in rows}, key=lambda c: int(c) if c.isdigit() else 10**9)
        knn = [by[(s, "knn", "accuracy")] for s in steps]
        metrics = {f"{p}.{m}": [by[(s, p, m)] for s in steps] for p, m in LABEL_FREE}
        append("tracking", {"method": method, "steps": steps, "knn": knn, "metrics": metrics,
                            "correlations": {k: rank_correlations(v, knn) for k, v in metrics.items()}})


def finetune_mode(args) -> None:
    import selfsup

    for seed in args.seeds:
        for protocol in ("finetune", "coretune"):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                rows = selfsup.study(args.run, data="fashion-mnist", protocols=[protocol], seeds=(seed,),
                                     options={protocol: {"fractions": (args.fraction,), "epochs": args.epochs}},
                                     out=Path(tmp) / "e", embedding_map=False)
            accuracy = next(r["value"] for r in rows if r["metric"].startswith("finetune@"))
            append("finetune", {"run": str(args.run), "protocol": protocol, "seed": seed, "fraction": args.fraction,
                                "epochs": args.epochs, "accuracy": accuracy, "wall_s": time.perf_counter() - t0})


def ms(values) -> str:
    values = list(values)
    if not values:
        return "-"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def table() -> str:
    from selfsup.evaluation.spectrum import rank_correlations

    out = []
    timing = read("time")
    if timing:
        t = timing[-1]
        parts = ", ".join(f"{p} {s:.0f} s" for p, s in sorted(t["protocol_s"].items(), key=lambda kv: -kv[1]))
        out.append(f"Full protocol set (all but finetune/coretune/classic), one checkpoint, one seed: **{t['wall_s'] / 60:.1f} "
                   f"min** wall including feature extraction ({t['results']} results; revision {t['revision']}). "
                   f"Per protocol: {parts}.")
    tracking = {r["method"]: r for r in read("tracking")}
    if tracking:
        lines = ["| label-free metric | " + " | ".join(f"{m}: Spearman / Kendall" for m in tracking)
                 + " | pooled Spearman / Kendall |", "|---|" + "---|" * (len(tracking) + 1)]
        for p, m in LABEL_FREE:
            key = f"{p}.{m}"
            cells = []
            for r in tracking.values():
                c = r["correlations"][key]
                cells.append(f"{c['spearman']:+.2f} / {c['kendall']:+.2f}")
            pooled = rank_correlations(sum((r["metrics"][key] for r in tracking.values()), []),
                                       sum((r["knn"] for r in tracking.values()), []))
            lines.append(f"| {key} | " + " | ".join(cells) + f" | {pooled['spearman']:+.2f} / {pooled['kendall']:+.2f} |")
        counts = ", ".join(f"{m} {len(r['steps'])} checkpoints (kNN {min(r['knn']):.3f}-{max(r['knn']):.3f})"
                           for m, r in tracking.items())
        out.append("\n".join(lines) + f"\n\n{counts}; revisions {', '.join(sorted({r['revision'] for r in tracking.values()}))}.")
    fine = read("finetune")
    if fine:  # the newest recipe only (fraction, epochs): earlier records with other settings stay in the file
        fine = [r for r in fine if (r["fraction"], r["epochs"]) == (fine[-1]["fraction"], fine[-1]["epochs"])]
        lines = ["| fine-tuning | accuracy | seeds |", "|---|---|---|"]
        for protocol in ("finetune", "coretune"):
            values = [r["accuracy"] for r in fine if r["protocol"] == protocol]
            lines.append(f"| {protocol} | {ms(values)} | {len(values)} |")
        f0 = fine[-1]
        out.append("\n".join(lines) + f"\n\n{f0['fraction'] * 100:g}% of the labels, {f0['epochs']} epochs; revision "
                   f"{', '.join(sorted({r['revision'] for r in fine}))}.")
    return "\n\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["time", "tracking", "finetune", "table"])
    p.add_argument("run", nargs="?", help="a run directory (time, finetune)")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--methods", nargs="+", default=["simclr", "byol"])
    p.add_argument("--reuse", action="store_true",
                   help="tracking: evaluate the checkpoints of a finished run in runs/eval_suite/runs/<method> instead of pretraining again")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    if args.mode in ("time", "finetune") and not args.run:
        p.error(f"{args.mode} needs a run directory")
    {"time": time_mode, "tracking": tracking_mode, "finetune": finetune_mode, "table": lambda a: None}[args.mode](args)
    text = table()
    print(text)
    if args.write:
        write_section("eval-suite", text, "Evaluation suite (`benchmarks/eval_suite.py`)")


if __name__ == "__main__":
    main()
