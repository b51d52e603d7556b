"""What a new user hit (reading only the README): unwritable outputs, silent defaults, missing help,
data roots, the evaluate/embed path's rough edges. Each test failed on the code before the fix."""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from selfsup.cli import _parser, main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("evaluate:", "note:"))]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix:" in lines[0], err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, fmnist_split_dir):
    """A 4-step run on 500 real Fashion-MNIST images whose config names its own test split."""
    out = tmp_path_factory.mktemp("user") / "run"
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(fmnist_split_dir / "train.npz"), "--steps", "4", "--batch-size", "64",
              "--out", str(out), "--no-progress", "--no-eval", "--set", "backbone.width=8",
              "--set", f"data.test_split={fmnist_split_dir / 'test.npz'}",
              "--set", "method.hidden_dim=32", "--set", "method.out_dim=16"])
    assert info.value.code == 0
    return out


@pytest.fixture(scope="module")
def adult_run(tmp_path_factory):
    """A 20-step run on the named table 'adult', found through data.root (not $SELFSUP_DATA)."""
    if not (SHARED / "adult" / "adult.parquet").is_file():
        pytest.skip("../shared/datasets/adult is not here")
    out = tmp_path_factory.mktemp("adult") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SELFSUP_DATA", raising=False)
        with pytest.raises(SystemExit) as info:
            main(["pretrain", "--data", "adult", "--steps", "20", "--batch-size", "128", "--out", str(out),
                  "--no-progress", "--no-eval", "--set", f"data.root={SHARED}"])
    assert info.value.code == 0
    return out


# ------------------------------------------------------------------ work that is lost or refused

def test_adult_study_with_all_protocols_finishes_and_reports_the_skipped(adult_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    out = tmp_path / "study"
    code, stdout, err = run_cli(["evaluate", adult_run, "--protocols", "all", "--out", out,
                                 "--option", "fewshot.episodes=5", "--option", "separability.n=300"], capsys)
    assert code == 0, err
    assert "skipped: it holds classes out of the probe" in err  # loki, printed as it is met
    page = (out / "report.html").read_text()
    assert "Skipped protocols" in page
    for protocol, reason in (("loki", "at least 3 classes; the train split has 2"),
                             ("multilayer", "needs a backbone with stages (forward_maps"),
                             ("robustness", "needs images whose pixels can be rotated")):
        assert f"<td>{protocol}</td>" in page and reason in page
    import csv

    with open(out / "results.csv") as handle:
        ran = {r["protocol"] for r in csv.DictReader(handle)}
    assert {"knn", "linear", "fewshot", "cluster", "ood", "longtail", "rankme"} <= ran


@pytest.mark.parametrize("target", ["/proc/x.parquet", "/sys/x.npy", "/proc/sub/x.npy"])
def test_unwritable_embedding_output_is_one_line_and_exit_2(image_run, target, capsys):
    code, _, err = run_cli(["embed", image_run, "--out", target], capsys)
    line = one_error(err)
    assert code == 2 and "could not write the embeddings" in line and target in line


def test_unwritable_study_report_and_run_outputs_are_one_line(image_run, tmp_path, capsys):
    code, _, err = run_cli(["evaluate", image_run, "--protocols", "knn", "--out", "/proc/study"], capsys)
    assert code == 2 and "study's feature cache" in one_error(err)
    code, _, err = run_cli(["pretrain", "--data", "x.npz", "--out", "/proc/run"], capsys)
    assert code == 2
    one_error(err)


def test_read_only_run_directory_for_evaluate_and_report(image_run, tmp_path, capsys):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a read-only tmpfs")
    import subprocess

    run = tmp_path / "ro"
    run.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(run)], check=True)
    try:
        shutil.copytree(image_run, run, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(run)], check=True)
        code, _, err = run_cli(["evaluate", run, "--protocols", "knn"], capsys)
        assert code == 2 and "read-only" in one_error(err)
        code, _, err = run_cli(["report", run], capsys)
        assert code == 2 and "could not write the report" in one_error(err)
    finally:
        subprocess.run(["umount", str(run)], check=False)


# ------------------------------------------------------------------ silent guesses

def test_evaluate_defaults_to_the_data_the_run_was_trained_on(image_run, capsys):
    code, out, err = run_cli(["evaluate", image_run, "--protocols", "knn,rankme"], capsys)
    assert code == 0, err
    assert "train.npz" in err and "test.npz" in err and "as the run was trained" in err
    assert "knn: accuracy=" in out


def test_evaluate_refuses_to_guess_without_a_run_configuration(image_run, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(image_run / "encoder", bare)  # an exported encoder on its own: no config.yaml
    code, _, err = run_cli(["evaluate", bare / "encoder.safetensors", "--protocols", "knn"], capsys)
    line = one_error(err)
    assert code == 2 and "no --data given" in line and "pass --data" in line
    code, _, err = run_cli(["embed", bare, "--out", tmp_path / "e.npy"], capsys)
    assert code == 2 and "no --data given" in one_error(err)


def test_every_flag_has_help_and_the_help_lists_protocols_and_tables():
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"selfsup {name} {'/'.join(action.option_strings) or action.dest} has no help"
    evaluate = {a.dest: a.help for a in sub.choices["evaluate"]._actions}
    for protocol in ("knn", "linear", "fewshot", "loki", "multilayer", "robustness"):
        assert protocol in evaluate["protocols"]
    assert "selfsup protocols" in evaluate["protocols"]
    pretrain = {a.dest: a.help for a in sub.choices["pretrain"]._actions}
    assert ".csv" in pretrain["data"] and ".parquet" in pretrain["data"]


def test_protocols_command_lists_each_protocol_with_its_needs(capsys):
    code, out, _ = run_cli(["protocols"], capsys)
    assert code == 0
    from selfsup import registry

    for name in registry.names("protocol"):
        assert f"\n{name}" in f"\n{out}"
    block = out.split("\nloki")[1].split("\n\n")[0]
    assert "needs: labelled train and test splits; at least 3 classes" in block
    assert "needs: labelled train and test splits; a backbone with stages (forward_maps" in out
    assert "needs: labelled train and test splits; images whose pixels can be rotated" in out
    assert "needs: no labels" in out


def test_unknown_protocol_points_to_a_command_that_exists(image_run, capsys):
    code, _, err = run_cli(["evaluate", image_run, "--protocols", "knnn"], capsys)
    line = one_error(err)
    assert code == 2 and "'knn'" in line and "`selfsup protocols` describes each" in line
    code, _, _ = run_cli(["protocols"], capsys)
    assert code == 0
    from selfsup.config import load
    from selfsup.errors import ConfigError

    with pytest.raises(ConfigError) as info:  # a backbone typo names no listing command that does not exist
        load(None, ["backbone.name=convnet66"])
    assert "`selfsup backbones`" not in str(info.value) and "convnet6" in str(info.value)


def test_evaluate_and_embed_take_a_data_root(adult_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    # the run's own data.root is used when none is given ...
    code, out, err = run_cli(["evaluate", adult_run, "--protocols", "knn"], capsys)
    assert code == 0, err
    # ... and --root is accepted by evaluate and embed
    code, _, err = run_cli(["evaluate", adult_run, "--data", "adult", "--root", SHARED, "--protocols", "rankme"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["embed", adult_run, "--data", "adult", "--root", SHARED, "--split", "test",
                            "--out", tmp_path / "adult.parquet"], capsys)
    assert code == 0, err
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "adult.parquet")
    assert table.num_rows == 16_281
    # labels are stored with their names, not only as integer codes
    assert set(table.column("class").to_pylist()) == {"<=50K", ">50K"}


def test_datasets_never_prints_an_unset_variable(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, out, _ = run_cli(["datasets"], capsys)
    assert code == 0 and "$SELFSUP_DATA/" not in out
    assert str(tmp_path / "cache" / "selfsup" / "mnist") in out
    code, out, _ = run_cli(["datasets", "--root", tmp_path / "mine"], capsys)
    assert str(tmp_path / "mine" / "mnist") in out
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path / "data"))
    code, out, _ = run_cli(["datasets"], capsys)
    assert str(tmp_path / "data" / "mnist") in out


def test_a_table_without_a_test_split_gets_table_advice(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"] + [f"{x:.3f},{y:.3f},{'p' if x > y else 'q'}" for x, y in rng.normal(size=(120, 2))]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    code, _, err = run_cli(["pretrain", "--data", tmp_path / "t.csv", "--steps", "2", "--batch-size", "32",
                            "--out", tmp_path / "run", "--no-progress", "--no-eval"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["evaluate", tmp_path / "run", "--protocols", "knn"], capsys)
    fix = one_error(err).split("Fix:")[1]
    assert code == 2 and "table" in fix and ".csv" in fix and ".npz" not in fix and "folder" not in fix


# ------------------------------------------------------------------ the evaluate / embed path

def test_single_evaluate_says_what_it_is_doing(image_run, capsys):
    code, _, err = run_cli(["evaluate", image_run, "--protocols", "knn,linear,rankme"], capsys)
    assert code == 0
    steps = [line for line in err.splitlines() if line.startswith("evaluate: ")]
    assert any(line.startswith("evaluate: knn (1/3)") for line in steps), err
    assert any(line.startswith("evaluate: rankme (3/3)") for line in steps), err


def test_npy_embeddings_keep_the_class_names(image_run, fmnist_split_dir, tmp_path, capsys):
    x, y = np.load(fmnist_split_dir / "test.npz")["x"], np.load(fmnist_split_dir / "test.npz")["y"]
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    np.savez(tmp_path / "named.npz", x=x, y=y, classes=np.array(names))
    code, _, err = run_cli(["embed", image_run, "--data", tmp_path / "named.npz", "--out", tmp_path / "e.npy"], capsys)
    assert code == 0, err
    labels = np.load(tmp_path / "e.labels.npy")
    assert (tmp_path / "e.classes.txt").read_text().splitlines() == names
    assert len(np.load(tmp_path / "e.npy")) == len(labels) == 200
    code, _, err = run_cli(["embed", image_run, "--data", tmp_path / "named.npz", "--out", tmp_path / "e.parquet"], capsys)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "e.parquet")
    assert table.column("class").to_pylist() == [names[i] for i in labels]
    assert table.column("label").to_pylist() == labels.tolist()


def test_a_study_in_a_new_folder_reuses_the_runs_feature_cache(image_run, tmp_path, capsys, monkeypatch):
    import selfsup
    import selfsup.evaluation.features as features

    selfsup.evaluate(image_run, protocols=["knn"])  # fills <run>/features
    calls = []
    real = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    rows = selfsup.study(image_run, protocols=["knn", "linear"], out=tmp_path / "new", embedding_map=True, quiet=True)
    assert {r["protocol"] for r in rows} == {"knn", "linear"}
    assert calls == []  # both splits (and the report's map) came from the run's cache
