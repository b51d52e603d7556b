"""Many encoders x many seeds x many protocols -> one tidy table (and the HTML report built on it).

    rows = run_study([("runs/a", "final", enc_a), ("runs/a", 500, enc_a500)], train, test,
                     protocols=("knn", "fewshot"), seeds=(0, 1, 2))
    write_results(rows, "out/")            # out/results.csv, out/results.parquet

A row is ``{"run", "checkpoint", "seed", "protocol", "metric", "value"}``. A protocol marked
``seeded`` (its result depends on the seed: sampled episodes, subsets, k-means starts, holdout
splits) runs once per seed; the others run once and their rows have an empty seed. Features are
extracted once per encoder and split (``EvalContext`` caches them), so a long protocol list costs
one forward pass over the data per encoder plus the protocols' own work.

``encoders_of(run_dir, checkpoints)`` turns a run directory into (run, checkpoint, Encoder)
triples: the exported encoder ("final") and/or the backbone weights of its saved checkpoints.
"""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Iterable

import torch

from ..errors import CheckpointError, ConfigError

COLUMNS = ("run", "checkpoint", "seed", "protocol", "metric", "value")


def encoders_of(run: str | os.PathLike, checkpoints: str = "final", device: str | torch.device = "cpu") -> list[tuple]:
    """[(run name, checkpoint, Encoder)] for a run directory or an encoder path.

    `checkpoints`: "final" (the exported encoder), "all" (every complete checkpoint in
    ``checkpoints/`` by step, then the final encoder unless it is the last checkpoint's weights),
    or comma-separated steps ("500,1000").
    Checkpoint weights go into the exported encoder's architecture (``encoder.json``), so the run
    must have finished once; the loads are ``weights_only`` (train/checkpoint.py).
    """
    from ..encoder import load_encoder
    from ..train.checkpoint import list_checkpoints, load_checkpoint, load_state

    path = Path(run)
    final = load_encoder(path, device=device)
    name = str(run)
    if checkpoints == "final":
        return [(name, "final", final)]
    files = {int(p.stem.split("-")[1]): p for p in list_checkpoints(path / "checkpoints")}
    if checkpoints == "all":
        wanted = sorted(files)
    else:
        try:
            wanted = [int(s) for s in str(checkpoints).split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--checkpoints {checkpoints!r} is not final, all or a list of steps.",
                              "pass e.g. --checkpoints all or --checkpoints 500,1000.") from None
        missing = [s for s in wanted if s not in files]
        if missing:
            raise CheckpointError(f"'{run}' has no checkpoint at step(s) {', '.join(map(str, missing))} "
                                  f"(it has {', '.join(map(str, sorted(files))) or 'none'}).",
                                  "choose saved steps, or keep more with train.keep_checkpoints.")
    out = []
    for step in wanted:
        state = load_checkpoint(files[step], map_location=device)
        method_state = state.get("method", {})
        backbone_state = {k[len("backbone."):]: v for k, v in method_state.items() if k.startswith("backbone.")}
        encoder = load_encoder(path, device=device)  # a fresh copy of the architecture and normalization
        load_state(encoder.backbone, {"backbone": backbone_state}, "backbone", files[step])
        out.append((name, step, encoder.eval()))
    if checkpoints == "all":
        from .features import weights_hash

        # a run that ended on a checkpoint step exported exactly those weights: list them once, by step
        if not out or weights_hash(out[-1][2]) != weights_hash(final):
            out.append((name, "final", final))
    return out


def run_study(encoders: Iterable[tuple], train, test, protocols: tuple[str, ...], seeds: tuple[int, ...] = (0,),
              options: dict | None = None, cache_dir=None, device="cpu", amp: bool = False, batch_size: int = 1024,
              progress=None) -> list[dict]:
    """The tidy rows of every (encoder, protocol, seed); see the module docstring. `progress(text)`
    is called before each protocol run (the CLI prints it)."""
    from . import EvalContext, get

    options = options or {}
    functions = {name: get("protocol", name) for name in protocols}
    rows: list[dict] = []
    for run, checkpoint, encoder in encoders:
        # one context per encoder: its features (and fitted probes) serve every protocol and seed
        ctx = EvalContext(encoder, train, test, device=device, amp=amp, cache_dir=cache_dir, batch_size=batch_size)
        for name, fn in functions.items():
            for seed in (seeds if getattr(fn, "seeded", False) else seeds[:1]):
                ctx.seed = seed
                if progress is not None:
                    progress(f"{run} @ {checkpoint}: {name}" + (f" (seed {seed})" if getattr(fn, "seeded", False) else ""))
                t0 = time.perf_counter()
                result = fn(ctx, **options.get(name, {}))
                result = {**result, "seconds": time.perf_counter() - t0}
                for metric, value in result.items():
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        continue
                    rows.append({"run": run, "checkpoint": str(checkpoint),
                                 "seed": seed if getattr(fn, "seeded", False) else "", "protocol": name,
                                 "metric": metric, "value": float(value)})
    return rows


def write_results(rows: list[dict], directory: str | os.PathLike) -> dict[str, Path]:
    """``results.csv`` and ``results.parquet`` in `directory` (atomic writes)."""
    from ..train.checkpoint import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def write_csv(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    paths = {"csv": atomic_write(directory / "results.csv", write_csv)}
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: [str(r[c]) for r in rows] if c != "value" else [r[c] for r in rows] for c in COLUMNS})
    paths["parquet"] = atomic_write(directory / "results.parquet", lambda tmp: pq.write_table(table, str(tmp)))
    return paths


def read_results(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{**r, "value": float(r["value"])} for r in csv.DictReader(handle)]


def summarize(rows: list[dict]) -> dict[tuple, dict]:
    """{(run, checkpoint, protocol, metric): {"mean", "std", "n"}} over seeds (std 0 for one value)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["run"], r["checkpoint"], r["protocol"], r["metric"]), []).append(r["value"])
    out = {}
    for key, values in groups.items():
        finite = [v for v in values if math.isfinite(v)]
        n = len(finite)
        mean = sum(finite) / n if n else float("nan")
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else 0.0
        out[key] = {"mean": mean, "std": std, "n": n}
    return out
