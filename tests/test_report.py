"""The run report: report.md with one section per protocol and valid PNG figures."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.report import write_report
from selfsup.report.embedding import project_2d, subsample
from selfsup.report.metrics import read_metrics
from selfsup.report.plots import smooth

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(run_dir, steps=200):
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(steps):
        record = {"step": step, "loss": 5.0 * 0.99 ** step, "lr": 2e-3, "images_per_s": 250.0 + step % 7}
        if step % 50 == 49:
            record["knn_acc"] = 0.5 + step / 1000
        lines.append(json.dumps(record))
    lines.append('{"step": 200, "loss": NaN}')  # a diverged step: kept out of the plot, counted
    lines.append('{"step": 201, "lo')  # truncated by a crash
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    results = {"pretrain": {"steps": 200, "images_per_s": 251.5},
               "knn": {"accuracy": 0.8123, "k": 20.0},
               "linear": {"accuracy": 0.8456, "lambda": 1e-4, "val_accuracy": 0.85, "train_loss": 0.41, "iterations": 88.0},
               "rankme": {"rank": 71.3, "dim": 128.0},
               "alignment_uniformity": {"skipped": "needs labels; the train split of 'x' has no labels"}}
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "config.yaml").write_text("method:\n  name: simclr\n  options: {temperature: 0.2}\n")
    return results


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()


def test_report_from_fake_run(tmp_path):
    run = tmp_path / "run"
    results = fake_run(run)
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (300,), generator=g)
    features = torch.nn.functional.one_hot(labels, 3).float() @ torch.randn(3, 16, generator=g) * 4 + torch.randn(300, 16, generator=g)
    path = write_report(run, embeddings=(features, labels), class_names=["shirt", "bag", "boot"], embedding_method="pca")
    assert path == run / "report.md"
    text = path.read_text()
    for protocol in results:
        assert f"### {protocol}" in text
    assert "| accuracy | 0.8123 |" in text and "| lambda | 0.0001 |" in text and "| iterations | 88 |" in text
    assert "Skipped: needs labels" in text
    assert "1 non-finite losses" in text and "1 unreadable lines" in text
    assert "median 253 images/s" in text  # median of 250..256 cycling
    assert "online kNN accuracy: last 0.6990, best 0.6990" in text
    assert "name: simclr" in text
    for name in ("loss.png", "knn_acc.png", "lr.png", "embeddings.png"):
        assert f"](figures/{name})" in text  # linked by a relative path
        assert_png(run / "figures" / name)


def test_report_without_metrics_or_knn(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) for s in range(5)))
    path = write_report(run, results={"knn": {"accuracy": 0.5}})
    text = path.read_text()
    assert "### knn" in text and "online kNN accuracy: last" not in text and "Configuration" not in text
    assert "online kNN accuracy: not tracked in this run (set train.monitor_every=N" in text
    assert (run / "figures" / "loss.png").is_file() and not (run / "figures" / "knn_acc.png").exists()
    empty = write_report(tmp_path / "empty").read_text()
    assert "metrics.jsonl is missing or empty" in empty and "No results.json" in empty


def test_tsne_map_separates_clusters_and_unlabelled_map(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 60)
    features = rng.normal(size=(120, 64)) + 8 * labels[:, None]
    coords = project_2d(features, method="tsne", seed=0)
    assert coords.shape == (120, 2)
    # The map keeps the clusters apart: every point's nearest 2-D neighbour has its label.
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=2) + np.eye(120) * 1e9
    assert (labels[dist.argmin(axis=1)] == labels).all()
    path = write_report(tmp_path / "u", results={}, embeddings=(features[:50], None), embedding_method="pca")
    assert "coloured by label" not in path.read_text()
    assert_png(tmp_path / "u" / "figures" / "embeddings.png")


def test_helpers_hand_values(tmp_path):
    assert smooth([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert subsample(5, 10).tolist() == [0, 1, 2, 3, 4]
    picked = subsample(100, 10, seed=1)
    assert len(set(picked.tolist())) == 10 and picked.tolist() == sorted(picked.tolist())
    (tmp_path / "m.jsonl").write_text('{"step": 1, "loss": 2.5, "note": "x", "flag": true}\n[1, 2]\n')
    log = read_metrics(tmp_path / "m.jsonl")
    assert log.series == {"loss": [(1.0, 2.5)]} and log.bad_lines == 1
    with pytest.raises(ValueError, match="unknown projection"):
        project_2d(np.zeros((20, 4)), method="umap")


def test_configuration_names_what_auto_became(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("backbone:\n  name: auto\nviews:\n  preset: auto\n")
    text = write_report(run, results={"pretrain": {"steps": 2, "backbone": "mlp", "views": "scarf"}}).read_text()
    config = text.split("## Configuration")[1]
    assert "- Backbone: **mlp** (backbone.name was auto: chosen for the data)" in config
    assert "- Views: **scarf** (views.preset was auto: chosen for the method and the data)" in config
    (run / "config.yaml").write_text("backbone:\n  name: resnet18\nviews:\n  preset: byol\n")
    text = write_report(run, results={"pretrain": {"backbone": "resnet18", "views": "byol"}}).read_text()
    assert "- Backbone: **resnet18**\n" in text and "- Views: **byol**\n" in text and "was auto" not in text
    # an older run: no record in results.json, the exported encoder still names its backbone
    (run / "encoder").mkdir()
    (run / "encoder" / "encoder.json").write_text(json.dumps({"backbone": {"name": "convnet6"}}))
    text = write_report(run, results={"knn": {"accuracy": 0.5}}).read_text()
    assert "- Backbone: **convnet6**" in text and "Views:" not in text
