"""The `make run` recipe (configs/fmnist.yaml) over several seeds: kNN and linear-probe accuracy on
the Fashion-MNIST test set, pretraining throughput and wall time, as mean +- std.

usage: python benchmarks/fmnist_recipe.py [--seeds 0 1 2] [--config configs/fmnist.yaml] [--set KEY=VALUE ...]
Last line: ``RESULT knn_mean=... knn_std=... linear_mean=... linear_std=... images_per_s=... seeds=...``.
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

import selfsup  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--config", default=str(ROOT / "configs" / "fmnist.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            t0 = time.perf_counter()
            run = selfsup.pretrain(args.config, seed=seed, out=Path(tmp) / f"seed{seed}",
                                   overrides=["train.progress=false", *args.set], report=False)
            wall = time.perf_counter() - t0
            r = run.results
            rows.append({"seed": seed, "knn": r["knn"]["accuracy"], "linear": r["linear"]["accuracy"],
                         "images_per_s": run.images_per_s, "wall_s": wall})
            print(json.dumps(rows[-1]), flush=True)

    def ms(key):
        values = [row[key] for row in rows]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    (km, ks), (lm, ls), (im, _), (wm, _) = ms("knn"), ms("linear"), ms("images_per_s"), ms("wall_s")
    print(f"RESULT knn_mean={km:.4f} knn_std={ks:.4f} linear_mean={lm:.4f} linear_std={ls:.4f} "
          f"images_per_s={im:.0f} wall_s={wm:.0f} seeds={','.join(map(str, args.seeds))} overrides={'|'.join(args.set) or '-'}")


if __name__ == "__main__":
    main()
