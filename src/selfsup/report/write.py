"""run_dir/metrics.jsonl + results.json (+ embeddings, config.yaml) -> run_dir/report.md with PNG figures."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import yaml

from .embedding import project_2d, subsample
from .metrics import MetricLog, read_metrics
from .plots import curve, embedding_map

REPORT = "report.md"


def _fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and 1 < abs(value) < 1e9):
        return f"{int(value)}"
    if abs(value) < 1e-3:
        return f"{value:.4g}"
    return f"{value:.4f}" if abs(value) < 1 else f"{value:.6g}"


def _results_section(results: dict) -> list[str]:
    lines = ["## Results", ""]
    if not results:
        return lines + ["No results.json (evaluate the encoder with `selfsup evaluate`).", ""]
    for protocol, values in results.items():
        lines += [f"### {protocol}", ""]
        if isinstance(values, dict) and "skipped" in values:
            lines += [f"Skipped: {values['skipped']}", ""]
            continue
        if not isinstance(values, dict):
            lines += [f"{_fmt(values)}", ""]
            continue
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in values.items()]
        lines.append("")
    return lines


def _training_section(log: MetricLog, figures: Path, run_dir: Path) -> list[str]:
    lines = ["## Training", ""]
    if not log.series:
        return lines + ["No training metrics (metrics.jsonl is missing or empty).", ""]
    if log.has("loss"):
        steps, losses = log.finite("loss")
        n_nonfinite = len(log.series["loss"]) - len(losses)
        lines.append(f"- steps logged: {len(log.series['loss'])}, last step {_fmt(steps[-1])}, "
                     f"final loss {_fmt(losses[-1])}, lowest loss {_fmt(min(losses))}"
                     + (f", {n_nonfinite} non-finite losses" if n_nonfinite else ""))
    if log.has("images_per_s"):
        _, speed = log.finite("images_per_s")
        lines.append(f"- throughput: median {_fmt(float(np.median(speed)))} images/s")
    if log.has("knn_acc"):
        _, acc = log.finite("knn_acc")
        lines.append(f"- online kNN accuracy: last {_fmt(acc[-1])}, best {_fmt(max(acc))}")
    else:
        lines.append("- online kNN accuracy: not tracked in this run (set train.monitor_every=N, e.g. 300, to follow "
                     "it over steps; it needs labels)")
    if log.bad_lines:
        lines.append(f"- {log.bad_lines} unreadable lines in metrics.jsonl were skipped")
    lines.append("")
    for key, title, ylabel, name in (("loss", "Pretraining loss", "loss", "loss.png"),
                                     ("knn_acc", "Online kNN accuracy", "accuracy", "knn_acc.png"),
                                     ("lr", "Learning rate", "lr", "lr.png")):
        if log.has(key):
            steps, values = log.finite(key)
            path = curve(figures / name, steps, values, title, ylabel, smoothed=key == "loss")
            lines += [f"![{title}]({path.relative_to(run_dir).as_posix()})", ""]
    return lines


def _embedding_section(embeddings, class_names, figures: Path, run_dir: Path, method: str,
                       max_points: int, seed: int) -> list[str]:
    features, labels = embeddings
    features = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float32)
    labels = None if labels is None else np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels)
    index = subsample(len(features), max_points, seed)
    start = time.perf_counter()
    coords = project_2d(features[index], method=method, seed=seed)
    seconds = time.perf_counter() - start
    name = "t-SNE" if method == "tsne" else "PCA"
    path = embedding_map(figures / "embeddings.png", coords, None if labels is None else labels[index],
                         class_names, f"{name} of {len(index)} embeddings")
    return ["## Embeddings", "",
            f"{name} map of {len(index)} of {len(features)} samples ({features.shape[1]}-d features"
            + (", coloured by label" if labels is not None else "") + f"; {seconds:.1f} s).", "",
            f"![Embeddings]({path.relative_to(run_dir).as_posix()})", ""]


def _backbone_used(run_dir: Path, results: dict) -> str | None:
    """The backbone the run built: recorded by the trainer, else named in the exported encoder.json."""
    recorded = results.get("pretrain", {}).get("backbone") if isinstance(results.get("pretrain"), dict) else None
    if recorded:
        return str(recorded)
    try:
        return str(json.loads((run_dir / "encoder" / "encoder.json").read_text())["backbone"]["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _config_section(run_dir: Path, results: dict) -> list[str]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return []
    text = path.read_text().rstrip()
    lines = ["## Configuration", ""]
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        config = None
    config = config if isinstance(config, dict) else {}

    def asked(section: str, key: str):
        values = config.get(section)
        return values.get(key) if isinstance(values, dict) else None

    # what `auto` became in this run: the trainer records it in results["pretrain"]
    pretrain = results.get("pretrain") if isinstance(results.get("pretrain"), dict) else {}
    used = []
    backbone = _backbone_used(run_dir, results)
    if backbone:
        used.append(f"- Backbone: **{backbone}**" + (" (backbone.name was auto: chosen for the data)"
                                                     if asked("backbone", "name") == "auto" else ""))
    if pretrain.get("views"):
        used.append(f"- Views: **{pretrain['views']}**" + (" (views.preset was auto: chosen for the method and the data)"
                                                          if asked("views", "preset") == "auto" else ""))
    if used:
        lines += used + [""]
    return lines + [f"From `{path.name}`:", "", "```yaml", text, "```", ""]


def write_report(run_dir: str | os.PathLike, metrics_path: str | os.PathLike | None = None,
                 results: str | os.PathLike | dict | None = None, embeddings=None,
                 class_names: list[str] | None = None, embedding_method: str = "tsne",
                 max_points: int = 2000, seed: int = 0) -> Path:
    """Write ``run_dir/report.md`` and its figures under ``run_dir/figures``; returns the report's path.

    metrics_path: JSON lines with "step" and "loss" (and optionally "knn_acc", "lr", "images_per_s");
    default ``run_dir/metrics.jsonl``. results: ``{protocol: {name: number}}`` or a JSON file holding
    it; default ``run_dir/results.json``. embeddings: optional ``(features (N, D), labels (N,) or None)``
    mapped to 2-D on at most `max_points` samples with `embedding_method` "tsne" (PCA to 50 first,
    ~5 s for 2,000 points) or "pca". class_names: legend names indexed by label.
    """
    from ..files import atomic_write

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    log = read_metrics(metrics_path if metrics_path is not None else run_dir / "metrics.jsonl")
    if results is None:
        results = run_dir / "results.json"
    if not isinstance(results, dict):
        results = json.loads(Path(results).read_text()) if Path(results).is_file() else {}

    lines = [f"# Run report: {run_dir.name}", ""]
    lines += _training_section(log, figures, run_dir)
    lines += _results_section(results)
    if embeddings is not None:
        lines += _embedding_section(embeddings, class_names, figures, run_dir, embedding_method, max_points, seed)
    lines += _config_section(run_dir, results)
    text = "\n".join(lines).rstrip() + "\n"
    return atomic_write(run_dir / REPORT, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", errors="backslashreplace"))
