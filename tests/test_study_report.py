"""The evaluation suite end to end: a study over checkpoints and seeds into a tidy results file and an
HTML report (rendered by headless Chromium), and the protocols written here: fine-tuning with
layer-wise decay and Core-tuning, multi-layer probes, long-tailed probes."""
from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.backbones.base import build_backbone
from selfsup.cli import main
from selfsup.encoder import Encoder
from selfsup.errors import ConfigError
from selfsup.evaluation.features import extract_features
from selfsup.evaluation.finetune import block_groups, core_tuning_loss, finetune, focal_supcon
from selfsup.evaluation.imbalance import frequency_groups, grouped_accuracy, long_tail_counts, long_tail_probe, long_tail_subset
from selfsup.evaluation.multilayer import extract_layer_features, multilayer_probe
from selfsup.evaluation.study import read_results, summarize

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")

# Small options so the whole protocol set runs in seconds on 600 images.
FAST = ["fewshot.episodes=5", "fewshot.shots=[1, 5]", "robustness.kinds=[gaussian_noise, occlusion]",
        "robustness.severities=[1, 5]", "adversarial.steps=2", "adversarial.surrogate=128", "separability.n=200",
        "alignment_uniformity.n=256", "fractions.fractions=[0.1, 1.0]", "longtail.ratios=[10]"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, fmnist_split_dir):
    """A short SimCLR run on 500 real Fashion-MNIST images, with a checkpoint every 4 steps kept."""
    out = tmp_path_factory.mktemp("study") / "run"
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(fmnist_split_dir / "train.npz"), "--steps", "12", "--batch-size", "64",
              "--out", str(out), "--no-progress", "--no-eval", "--set", "backbone.width=8", "--set", "train.threads=1",
              "--set", "train.checkpoint_every=4", "--set", "train.keep_checkpoints=5",
              "--set", "method.hidden_dim=32", "--set", "method.out_dim=16"])
    assert info.value.code == 0
    return out


@pytest.fixture(scope="module")
def study_out(trained_run, fmnist_split_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    args = ["evaluate", str(trained_run), "--data", str(fmnist_split_dir / "train.npz"),
            "--test-split", str(fmnist_split_dir / "test.npz"), "--protocols", "all", "--checkpoints", "all",
            "--seeds", "0", "1", "--out", str(out), "--device", "cpu"]
    for option in FAST:
        args += ["--option", option]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    return out


def test_study_writes_one_tidy_row_per_encoder_protocol_seed_and_metric(study_out, trained_run):
    from selfsup import registry

    rows = read_results(study_out / "results.csv")
    assert rows and set(rows[0]) == {"run", "checkpoint", "seed", "protocol", "metric", "value"}
    # steps 4, 8, 12; the final encoder is step 12's weights, so it is listed once, by step
    assert {r["checkpoint"] for r in rows} == {"4", "8", "12"}
    protocols = {r["protocol"] for r in rows}
    # every fast protocol that fits labelled images; ridge needs a continuous target, so it is skipped
    expected = {p for p in registry.names("protocol") if not registry.get("protocol", p).slow} - {"ridge"}
    assert protocols == expected
    assert "<td>ridge</td>" in (study_out / "report.html").read_text()  # in the skipped table, with its reason
    for name in protocols:
        seeded = registry.get("protocol", name).seeded
        seeds = {r["seed"] for r in rows if r["protocol"] == name}
        assert seeds == ({"0", "1"} if seeded else {""}), name
    keys = [(r["checkpoint"], r["seed"], r["protocol"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))  # no duplicate measurement
    import pyarrow.parquet as pq

    table = pq.read_table(study_out / "results.parquet")
    assert table.num_rows == len(rows) and table.column("value").to_pylist() == [r["value"] for r in rows]
    # numbers that must hold whatever the encoder: accuracies in [0, 1], the CI positive, AUROC in [0, 1]
    by = {(r["checkpoint"], r["seed"], r["protocol"], r["metric"]): r["value"] for r in rows}
    for (ckpt, seed, protocol, metric), value in by.items():
        if metric in ("accuracy", "1shot", "5shot", "knn_auroc", "mahalanobis_auroc", "nmi", "clean"):
            assert 0 <= value <= 1, (protocol, metric, value)
    assert by[("12", "0", "fewshot", "5shot")] >= by[("12", "0", "fewshot", "1shot")] - 0.05
    assert by[("12", "", "robustness", "gaussian_noise@5")] <= by[("12", "", "robustness", "clean")] + 0.02
    summary = summarize(rows)
    assert summary[(str(trained_run), "12", "fewshot", "5shot")]["n"] == 2


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (make test installs it)")
def test_report_renders_in_headless_chromium(study_out, tmp_path):
    page = study_out / "report.html"
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    import re

    rendered = re.search(r'data-rendered="(\d+)/(\d+)"', dom)
    assert rendered, "the page's load script did not run"
    ok, total = map(int, rendered.groups())
    # fractions, few-shot, robustness, 5 label-free-vs-kNN plots, the embedding map
    assert total >= 9 and ok == total
    tables = int(re.search(r'data-tables="(\d+)"', dom).group(1))
    skipped_table = "Skipped protocols" in page.read_text()  # ridge: no continuous target
    assert skipped_table
    assert tables == len({r["protocol"] for r in read_results(study_out / "results.csv")}) + skipped_table
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2000",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # not a blank page


def test_ood_against_another_dataset(trained_run, fmnist_split_dir, tmp_path):
    """`ood.other`: a second dataset scored as out-of-distribution against every class. Uniform noise
    images are far from every clothing item, so both scores separate them almost perfectly."""
    import selfsup

    noise = np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", x=noise)
    rows = selfsup.study(trained_run, data=str(fmnist_split_dir / "train.npz"), test_split=str(fmnist_split_dir / "test.npz"),
                         protocols=["ood"], options={"ood": {"other": str(tmp_path / "noise.npz"), "k": 10}},
                         out=tmp_path / "e", quiet=True, embedding_map=False, device="cpu")
    by = {r["metric"]: r["value"] for r in rows}
    assert by["other_knn_auroc"] > 0.95 and by["other_mahalanobis_auroc"] > 0.95
    assert 0 <= by["knn_auroc"] <= 1 and by["held_out_classes"] == 3


def test_study_input_errors_are_one_line(trained_run, fmnist_split_dir, tmp_path, capsys):
    base = ["evaluate", str(trained_run), "--data", str(fmnist_split_dir / "train.npz"),
            "--test-split", str(fmnist_split_dir / "test.npz"), "--out", str(tmp_path / "e"), "--device", "cpu"]
    cases = [(["--protocols", "knn", "--option", "fewshot.episodes=3"], "options given for protocol 'fewshot'"),
             (["--protocols", "fewshot", "--option", "fewshot.epsiodes=3"], "epsiodes"),
             (["--protocols", "knn", "--option", "noequals"], "is not PROTOCOL.KEY=VALUE"),
             (["--protocols", "knn", "--checkpoints", "999"], "no checkpoint at step.*999.*4, 8, 12"),
             (["--protocols", "knnn", "--seeds", "0", "1"], "unknown protocol 'knnn'")]
    for flags, needle in cases:
        with pytest.raises(SystemExit) as info:
            main(base + flags)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1, err
        assert __import__("re").search(needle, err), (needle, err)


# ---------------------------------------------------------------- fine-tuning

def test_block_groups_follow_the_architecture():
    conv = build_backbone("convnet6", in_channels=1, image_size=28, width=8)
    assert [len(g) for g in block_groups(conv)] == [3] * 6  # conv weight + BN weight, bias per block
    resnet = build_backbone("resnet18", in_channels=3, image_size=32)
    groups = block_groups(resnet)
    assert len(groups) == 1 + 8  # stem (conv1, bn1) + 4 stages x 2 basic blocks
    assert sum(len(g) for g in groups) == len(list(resnet.parameters()))
    vit = build_backbone("vit_tiny", in_channels=1, image_size=28, patch_size=4, dim=32, depth=3, heads=2)
    assert len(block_groups(vit)) == 1 + 3  # embeddings + one per transformer block (final norm joins the last)


def test_focal_supcon_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    labels = F.one_hot(torch.tensor([0, 1, 0, 2, 1, 0, 3]), 4).double()
    t = 0.5
    total, anchors = 0.0, 0
    for i in range(7):
        denom = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(7) if a != i)
        positives = [p for p in range(7) if p != i and torch.equal(labels[p], labels[i])]
        if not positives:
            continue
        term = 0.0
        for p in positives:
            prob = math.exp(float(z[i] @ z[p]) / t) / denom
            term += -(1 - prob) * math.log(prob)
        total += term / 7
        anchors += 1
    assert focal_supcon(z, labels, t).item() == pytest.approx(total / anchors, rel=1e-10)


def test_core_tuning_mines_the_hardest_pairs():
    # 4 samples of 2 classes on a circle: the hardest positive of 0 is 1 (same class, farthest),
    # its hardest negative is 2 (other class, closest)
    angles = torch.tensor([0.0, 1.2, 0.3, 2.5])
    features = torch.stack([angles.cos(), angles.sin()], 1).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1])
    torch.manual_seed(0)
    classifier, contrastor = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    out = core_tuning_loss(features, labels, classifier, contrastor, 2, eta=0.1, alpha=1.0,
                           generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and out["ce"] > 0 and out["contrast"] >= 0
    out["loss"].backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    sim = F.normalize(features.detach(), dim=1) @ F.normalize(features.detach(), dim=1).T
    assert sim[0, 1] < sim[0, 0] and sim[0, 2] > sim[0, 3]  # the geometry the docstring's rule picks from


@pytest.fixture(scope="module")
def small_images():
    from tests.conftest import fmnist_arrays

    x, y = fmnist_arrays(400)
    xt, yt = fmnist_arrays(200, "test")
    return (torch.from_numpy(x)[:, None], torch.from_numpy(y), torch.from_numpy(xt)[:, None], torch.from_numpy(yt))


def tiny_encoder(seed=0):
    torch.manual_seed(seed)
    return Encoder(build_backbone("convnet6", in_channels=1, image_size=28, width=8), [0.286], [0.353], "image").eval()


def test_finetune_full_partial_and_core_leave_the_encoder_untouched(small_images):
    from selfsup.evaluation.classic import crop_flip_views

    x, y, xt, yt = small_images
    encoder = tiny_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    # 8 epochs of 400 images from a random init: measured 0.45-0.49 (10 classes: chance is 0.1)
    full = finetune(encoder, x, y, xt, yt, crop_flip_views(encoder), epochs=8, lr=0.2, batch_size=64, seed=0)
    assert full["accuracy"] > 0.3 and full["trainable_blocks"] == 6
    again = finetune(encoder, x, y, xt, yt, crop_flip_views(encoder), epochs=8, lr=0.2, batch_size=64, seed=0)
    assert again == full  # deterministic per seed
    partial = finetune(encoder, x, y, xt, yt, crop_flip_views(encoder), epochs=1, lr=0.05, batch_size=64,
                       mode="partial", blocks=1, layer_decay=0.5)
    assert partial["trainable_blocks"] == 1
    core = finetune(encoder, x, y, xt, yt, crop_flip_views(encoder), epochs=8, lr=0.2, batch_size=64, core=True)
    assert math.isfinite(core["train_loss"]) and core["accuracy"] > 0.3
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    with pytest.raises(ConfigError, match="layer_decay"):
        finetune(encoder, x, y, xt, yt, crop_flip_views(encoder), layer_decay=1.5)


def test_partial_finetune_freezes_the_early_blocks(small_images, monkeypatch):
    """Through the optimizer: only the last block's (and the head's) parameters are given to SGD,
    with the block learning rates decayed layer by layer."""
    from selfsup.evaluation import finetune as module
    from selfsup.evaluation.classic import crop_flip_views

    seen = {}
    real = torch.optim.SGD

    def spy(groups, **kw):
        seen["groups"] = groups
        return real(groups, **kw)

    monkeypatch.setattr(module.torch.optim, "SGD", spy)
    x, y, xt, yt = small_images
    finetune(tiny_encoder(), x[:64], y[:64], xt[:64], yt[:64], crop_flip_views(tiny_encoder()), epochs=1,
             batch_size=64, mode="partial", blocks=2, layer_decay=0.5)
    scales = [g["lr_scale"] for g in seen["groups"]]
    assert scales == [0.5, 1.0, 1.0]  # block 5 (decayed once), block 6, the classifier


# ---------------------------------------------------------------- multi-layer probes

def test_layer_features_end_with_the_encoder_features(small_images):
    x, y, xt, yt = small_images
    encoder = tiny_encoder()
    layers = extract_layer_features(encoder, x[:130], batch_size=7)
    assert [t.shape for t in layers] == [(130, 8), (130, 16), (130, 32)]
    # the last stage pooled is what the backbone's forward returns (global average pooling)
    assert torch.allclose(layers[-1], extract_features(encoder, x[:130]), atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(layers, extract_layer_features(encoder, x[:130], batch_size=1024)))
    train, test = extract_layer_features(encoder, x), extract_layer_features(encoder, xt)
    result = multilayer_probe(train, y, test, yt)
    assert set(result) == {"linear@layer1", "linear@layer2", "linear@layer3", "linear@all",
                           "dim@layer1", "dim@layer2", "dim@layer3"}
    assert all(0.1 < result[f"linear@layer{i}"] <= 1 for i in (1, 2, 3))


# ---------------------------------------------------------------- long-tailed data

def test_long_tail_counts_and_subsets():
    assert long_tail_counts([6000] * 10, 100) == [int(6000 * 100 ** (-i / 9)) for i in range(10)]
    assert long_tail_counts([6000] * 10, 100)[-1] == 60 and long_tail_counts([50, 50], 1) == [50, 50]
    labels = torch.arange(10).repeat_interleave(100)
    index = long_tail_subset(labels, 10, seed=0)
    counts = torch.bincount(labels[index]).tolist()
    assert counts == [int(100 * 10 ** (-i / 9)) for i in range(10)]
    assert torch.equal(index, long_tail_subset(labels, 10, seed=0))
    assert not torch.equal(index, long_tail_subset(labels, 10, seed=1))
    groups = frequency_groups(labels[index])
    assert groups == {"many": [0, 1, 2, 3], "medium": [4, 5, 6], "few": [7, 8, 9]}
    with pytest.raises(ConfigError, match="below 1"):
        long_tail_counts([5, 5], 0.5)


def test_grouped_accuracy_and_the_probe_on_separable_features():
    labels = torch.arange(10).repeat_interleave(30)
    groups = frequency_groups(labels)
    perfect = grouped_accuracy(labels, labels, groups)
    assert perfect == {"accuracy": 1.0, "many": 1.0, "medium": 1.0, "few": 1.0}
    wrong_few = labels.clone()
    wrong_few[torch.isin(labels, torch.tensor(groups["few"]))] = 0
    scores = grouped_accuracy(wrong_few, labels, groups)
    assert scores["few"] == 0.0 and scores["many"] == 1.0
    g = torch.Generator().manual_seed(0)
    features = F.one_hot(labels, 10).float() * 5 + 0.1 * torch.randn(len(labels), 10, generator=g)
    result = long_tail_probe(features, labels, features, labels, ratios=(10,))
    assert result["linear@lt10"] == 1.0 and result["few@lt10"] == 1.0 and result["n@lt10"] < 300


def test_pretraining_on_a_long_tailed_split(fmnist_npz, tmp_path):
    import selfsup

    run = selfsup.pretrain({"data": {"name": str(fmnist_npz), "test_split": None, "imbalance_ratio": 10.0},
                            "backbone": {"name": "convnet6", "width": 8},
                            "method": {"name": "simclr", "hidden_dim": 32, "out_dim": 16},
                            "train": {"steps": 2, "batch_size": 32, "progress": False, "threads": 1},
                            "out": str(tmp_path / "lt")}, report=False)
    counts = torch.bincount(run.train_set.labels).tolist()
    full = torch.bincount(torch.from_numpy(np.load(fmnist_npz)["y"])).tolist()
    assert counts == long_tail_counts(full, 10)
    saved = (tmp_path / "lt" / "config.yaml").read_text()
    assert "imbalance_ratio: 10.0" in saved
