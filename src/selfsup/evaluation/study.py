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
from dataclasses import dataclass, field
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
    from ..checkpoint import list_checkpoints, load_checkpoint, load_state

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
        prefix = f"{state.get('export', 'backbone')}."  # the method's exported weights (methods.base.export_name)
        backbone_state = {k[len(prefix):]: v for k, v in method_state.items() if k.startswith(prefix)}
        encoder = load_encoder(path, device=device)  # a fresh copy of the architecture and normalization
        load_state(encoder.backbone, {"backbone": backbone_state}, "backbone", files[step])
        out.append((name, step, encoder.eval()))
    if checkpoints == "all":
        from .features import weights_hash

        # a run that ended on a checkpoint step exported exactly those weights: list them once, by step
        if not out or weights_hash(out[-1][2]) != weights_hash(final):
            out.append((name, "final", final))
    return out


JOURNAL = "study.jsonl"  # one line per finished (encoder, protocol, seed): what an interrupted study resumes from
JOURNAL_FORMAT = "selfsup-study/1"


def unit_key(weights: str, data: str, protocol: str, options: dict, seed, amp: bool, device) -> str:
    """What a protocol run's numbers depend on: the encoder's weights, the data, the protocol, its
    options, the seed (empty when the protocol does not use one), bf16 or not and the device type."""
    import json

    text = json.dumps([weights, data, protocol, {k: options[k] for k in sorted(options)}, seed, bool(amp),
                       torch.device(device).type], default=str)
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:32]


def read_journal(path: str | os.PathLike) -> dict[str, dict]:
    """{unit key: record} of a study journal; lines cut by a kill or damaged are ignored."""
    import json

    records: dict[str, dict] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return records
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("format") == JOURNAL_FORMAT and isinstance(record.get("key"), str) \
                and (isinstance(record.get("metrics"), dict) or isinstance(record.get("skipped"), str)):
            records[record["key"]] = record
    return records


_appended = 0  # journal lines this process wrote (for the test-only fault below)


def _append(path: Path, record: dict) -> None:
    """One journal line, flushed and fsynced before the next protocol starts."""
    import json

    from ..errors import disk_error

    global _appended
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise disk_error(exc, path, "the study journal") from exc
    _appended += 1
    _fault(_appended)


def _fault(count: int) -> None:
    """Test-only (tests/test_study_resume.py): ``SELFSUP_FAULT=study:<n>`` SIGKILLs this process right
    after its n-th journal line; ``study:<n>:pause`` says so on stderr and sleeps 60 s there instead,
    so that a test can send a signal at a known point."""
    spec = os.environ.get("SELFSUP_FAULT", "").split(":")
    if spec[0] != "study" or len(spec) < 2 or spec[1] != str(count):
        return
    if spec[2:3] == ["pause"]:
        os.write(2, f"selfsup-fault: paused after study unit {count}\n".encode())
        time.sleep(60)
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def _measure(fn, ctx, options: dict) -> dict:
    """{"metrics": numbers + "seconds"} of one protocol run, or {"skipped": why} when it stops with a
    SelfsupError (a requirement its fit check could not see): the study goes on without it."""
    from ..errors import SelfsupError

    t0 = time.perf_counter()
    try:
        result = fn(ctx, **options)
    except SelfsupError as exc:
        return {"skipped": exc.problem}
    metrics = {m: float(v) for m, v in result.items() if not isinstance(v, bool) and isinstance(v, (int, float))}
    return {"metrics": {**metrics, "seconds": time.perf_counter() - t0}}


@dataclass
class StudyState:
    """What a study has so far: tidy `rows`, `skipped` (run, checkpoint, protocol, seed, why),
    and how many protocol runs were `reused` from the journal, `computed` and are `total`."""

    rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    reused: int = 0
    computed: int = 0
    total: int = 0


def run_study(encoders: Iterable[tuple], train, test, protocols: tuple[str, ...], seeds: tuple[int, ...] = (0,),
              options: dict | None = None, cache_dir=None, device="cpu", amp: bool = False, batch_size: int = 1024,
              progress=None, journal: str | os.PathLike | None = None, on_update=None, state: StudyState | None = None,
              read_caches: dict | None = None) -> list[dict]:
    """The tidy rows of every (encoder, protocol, seed); see the module docstring.

    Each protocol is first checked against the encoder and the data (``evaluation.unfit_reason``:
    labels, kind of data, class counts, backbone stages); one that does not fit is skipped with its
    reason in ``state.skipped`` and the study goes on, as it does when a protocol stops with a
    SelfsupError. With `journal` (a file), every finished protocol run is appended to it at once,
    and runs already there with the same key (weights, data, protocol, options, seed) are reused
    instead of computed: an interrupted study rerun continues where it stopped. `on_update(state)`
    is called after each computed run (the API rewrites results.csv there). `progress(text)` is
    called before each protocol run. `read_caches` maps a run name to further feature-cache folders
    to read (its run directory's ``features/``).
    """
    from ..registry import get
    from .context import EvalContext, unfit_reason
    from .features import _data_hash, weights_hash

    options = options or {}
    state = state if state is not None else StudyState()
    functions = {name: get("protocol", name) for name in protocols}
    encoders = list(encoders)
    done = read_journal(journal) if journal is not None else {}
    data = "|".join(f"{d.name}:{len(d)}:{_data_hash(d.samples)}" for d in (train, test) if d is not None)
    per_encoder = sum(len(seeds) if getattr(fn, "seeded", False) else 1 for fn in functions.values())
    state.total = per_encoder * len(encoders)
    position = 0
    for run, checkpoint, encoder in encoders:
        # one context per encoder: its features (and fitted probes) serve every protocol and seed
        ctx = EvalContext(encoder, train, test, device=device, amp=amp, cache_dir=cache_dir, batch_size=batch_size,
                          read_caches=tuple((read_caches or {}).get(run, ())))
        weights = weights_hash(encoder)
        for name, fn in functions.items():
            seeded = getattr(fn, "seeded", False)
            unit_seeds = seeds if seeded else seeds[:1]
            why = unfit_reason(name, ctx, options.get(name))
            if why:
                position += len(unit_seeds)
                state.skipped.append((run, str(checkpoint), name, "", why))
                if progress is not None:
                    progress(f"{run} @ {checkpoint}: {name} skipped: it {why}")
                continue
            for seed in unit_seeds:
                position += 1
                ctx.seed = seed
                key = unit_key(weights, data, name, options.get(name, {}), seed if seeded else "", amp, device)
                label = f"{run} @ {checkpoint}: {name}" + (f" (seed {seed})" if seeded else "")
                record = done.get(key)
                fresh = record is None
                if fresh:
                    if progress is not None:
                        progress(f"{label} [{position}/{state.total}]")
                    record = _measure(fn, ctx, options.get(name, {}))
                    record = {"format": JOURNAL_FORMAT, "key": key, "run": run, "checkpoint": str(checkpoint),
                              "protocol": name, "seed": seed if seeded else "", **record}
                    done[key] = record
                    state.computed += 1
                else:
                    state.reused += 1
                    if progress is not None:
                        progress(f"{label} [{position}/{state.total}] reused from {Path(journal).name}")
                if "skipped" in record:
                    state.skipped.append((run, str(checkpoint), name, seed if seeded else "", record["skipped"]))
                    if progress is not None:
                        progress(f"{label} skipped: {record['skipped']}")
                else:
                    state.rows += [{"run": run, "checkpoint": str(checkpoint), "seed": seed if seeded else "",
                                    "protocol": name, "metric": metric, "value": float(value)}
                                   for metric, value in record["metrics"].items()]
                if fresh:  # the results files first, then the journal line that makes the run count as done
                    if on_update is not None:
                        on_update(state)
                    if journal is not None:
                        _append(Path(journal), record)
    return state.rows


def write_results(rows: list[dict], directory: str | os.PathLike) -> dict[str, Path]:
    """``results.csv`` and ``results.parquet`` in `directory` (atomic writes)."""
    from ..files import atomic_write

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
