"""Tables: SCARF-style pretraining on Adult (UCI census income) against the raw features and an
untrained encoder, kNN and linear-probe accuracy on the conventional test split (16,281 rows).

usage:
  python benchmarks/tables_adult.py [--root ../shared/datasets] [--seeds 0 1 2] [--steps 2000] [--write]

Rows (every one through the same evaluation code as `selfsup evaluate`: kNN k=20 with
exp(cos / 0.07) votes, L-BFGS logistic regression with the L2 strength chosen on a 10% holdout):

- raw features: numeric columns standardized with train statistics, categorical columns one-hot
  (the same schema the encoder sees); no training, one value;
- random mlp: the mlp backbone (4 x 256, embedded categories) at its initialization, per seed;
- scarf (simclr): SimCLR's NT-Xent on the clean row and its SCARF corruption (60% of the features
  replaced by draws from their marginals), InfoNCE temperature 1.0 and a 2-layer 256-wide head as
  in SCARF (Bahri et al., ICLR 2022); AdamW 1e-3, batch 256, cosine schedule;
- vicreg, barlow_twins: the same views and backbone with other objectives and their defaults.

Each (row, seed) result is appended to ``runs/tables_adult/results.jsonl`` with the revision;
``--write`` puts the table in BENCHMARKS.md between the ``tables-adult`` markers.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, read_jsonl, revision, write_section  # noqa: E402
OUT = ROOT / "runs" / "tables_adult"

METHODS = {
    "scarf (simclr)": ("simclr", {"temperature": 1.0, "hidden_dim": 256, "out_dim": 256}),
    "vicreg": ("vicreg", {"hidden_dim": 1024, "out_dim": 1024}),
    "barlow_twins": ("barlow_twins", {"hidden_dim": 1024, "out_dim": 1024}),
}


def one_hot(data, mean, std) -> torch.Tensor:
    """Standardized numeric columns and one-hot categorical codes (code 0, missing, gets a column too)."""
    parts = []
    for j, column in enumerate(data.schema.columns):
        x = data.values[:, j]
        if column.kind == "numeric":
            parts.append(((x - mean[j]) / std[j]).unsqueeze(1))
        else:
            parts.append(torch.nn.functional.one_hot(x.long(), column.cardinality).float())
    return torch.cat(parts, dim=1)


def scores(train_x, train_y, test_x, test_y) -> dict:
    from selfsup.evaluation.knn import knn_accuracy
    from selfsup.evaluation.linear import linear_probe

    return {"knn": knn_accuracy(train_x, train_y, test_x, test_y, k=20, temperature=0.07),
            "linear": linear_probe(train_x, train_y, test_x, test_y)["accuracy"]}


def run(args) -> list[dict]:
    import selfsup
    from selfsup.backbones.base import build_backbone
    from selfsup.data import load_dataset
    from selfsup.encoder import Encoder
    from selfsup.evaluation.features import extract_features

    torch.set_num_threads(1)  # small MLP steps: a second thread only waits (and stalls under load)
    train = load_dataset("adult", root=args.root)
    test = load_dataset("adult", split="test", root=args.root, schema=train.schema)
    mean, std = train.normalization()
    out, records = OUT / "results.jsonl", []
    done = {(r["row"], r["seed"], r["steps"]) for r in read_jsonl(out)}

    def record(row, seed, values, **extra):
        rec = {"row": row, "seed": seed, "steps": args.steps, **values, **extra, "revision": revision()}
        append_jsonl(out, rec)
        print(json.dumps(rec), flush=True)

    if ("raw features", 0, args.steps) not in done:
        record("raw features", 0, scores(one_hot(train, mean, std), train.labels, one_hot(test, mean, std), test.labels))
    for seed in args.seeds:
        if ("random mlp", seed, args.steps) not in done:
            torch.manual_seed(seed)
            encoder = Encoder(build_backbone("mlp", **train.input_spec()), mean, std, "table", train.schema)
            record("random mlp", seed, scores(extract_features(encoder, train.values), train.labels,
                                              extract_features(encoder, test.values), test.labels))
        for row, (method, options) in METHODS.items():
            if (row, seed, args.steps) in done:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                result = selfsup.pretrain({
                    "data": {"name": "adult", "root": args.root, "test_split": "test"},
                    "backbone": {"name": "mlp"}, "method": {"name": method, **options},
                    "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-5, "warmup_steps": 100},
                    "train": {"steps": args.steps, "batch_size": 256, "seed": seed, "threads": 1, "progress": False,
                              "checkpoint_every": args.steps, "keep_checkpoints": 1, "log_every": 50},
                    "eval": {"protocols": ["knn", "linear"]}, "out": str(Path(tmp) / "run")}, report=False)
                record(row, seed, {"knn": result.results["knn"]["accuracy"], "linear": result.results["linear"]["accuracy"]},
                       rows_per_s=result.images_per_s, wall_s=time.perf_counter() - t0)
    return records


def table(steps: int) -> str:
    results = [r for r in read_jsonl(OUT / "results.jsonl") if r["steps"] == steps]
    lines = ["| encoder | kNN | linear | seeds |", "|---|---|---|---|"]
    for row in ["raw features", "random mlp", *METHODS]:
        rs = list({r["seed"]: r for r in results if r["row"] == row}.values())
        if not rs:
            continue

        def ms(key):
            values = [r[key] for r in rs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.4f} +- {sd:.4f}" if len(values) > 1 else f"{values[0]:.4f}"

        lines.append(f"| {row} | {ms('knn')} | {ms('linear')} | {len(rs)} |")
    revisions = ", ".join(sorted({r["revision"] for r in results})) or "-"
    return "\n".join(lines) + f"\n\n{steps} pretraining steps of batch 256; revisions: {revisions}."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(ROOT.parent / "shared" / "datasets"), help="folder holding adult/adult.parquet")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--table-only", action="store_true", help="print (and --write) the table from earlier results")
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    if not args.table_only:
        run(args)
    text = table(args.steps)
    print(text)
    if args.write:
        write_section("tables-adult", text, "Tables: Adult (`benchmarks/tables_adult.py`)")


if __name__ == "__main__":
    main()
