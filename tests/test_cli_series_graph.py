"""The command line on the new kinds of data: `selfsup pretrain`, `evaluate` and `embed` on a `.ts`
file, on a UCR set by name, on a `.npy` array of series and on a CSV of SMILES; `embed` writes one row
per input sample with its id; `selfsup datasets` lists the series and molecule sets it finds; bad
input (a series shorter than a patch, an invalid SMILES, test series longer than the training ones)
gets its one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from selfsup.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
GUNPOINT = SHARED / "ucr" / "GunPoint"
needs_ucr = pytest.mark.skipif(not (GUNPOINT / "GunPoint_TRAIN.ts").is_file(), reason="../shared/datasets/ucr is not here")
SMALL_CNN = ["--set", "backbone.hidden_dim=8", "--set", "backbone.dim=16", "--set", "backbone.depth=2"]

# 24 molecules (first lines of the NCI set's kind: small organics) and one broken SMILES
SMILES = ["CCO", "CC(=O)O", "c1ccccc1", "CCN(CC)CC", "CC(C)O", "OC1CCCCC1", "c1ccncc1", "CC(=O)Nc1ccccc1",
          "CCOC(=O)C", "ClCCl", "CC#N", "C1CCOC1", "O=C=O", "CCCCCC", "c1ccc2ccccc2c1", "CC(C)(C)O",
          "NC(=O)N", "OCC(O)CO", "CCS", "c1ccoc1", "CC=O", "CCCl", "C1CC1", "CNC"]


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def pretrain(data, out, capsys, *extra):
    code, stdout, err = run_cli(["pretrain", "--data", data, "--steps", "3", "--batch-size", "8", "--out", out,
                                 "--no-progress", "--no-eval", *extra], capsys)
    assert code == 0, err
    return stdout, err


def embed_rows(run, data, out, capsys, *extra):
    code, _, err = run_cli(["embed", run, "--data", data, "--out", out, *extra], capsys)
    assert code == 0, err
    return pd.read_parquet(out)


@needs_ucr
def test_ts_file_pretrain_evaluate_embed(tmp_path, capsys):
    run = tmp_path / "run"
    stdout, _ = pretrain(GUNPOINT / "GunPoint_TRAIN.ts", run, capsys, *SMALL_CNN)
    assert "series/s" in stdout
    code, stdout, err = run_cli(["evaluate", run, "--protocols", "knn,svm"], capsys)
    assert code == 0, err
    assert "as the run was trained" in err and "svm: accuracy=" in stdout  # the test split: GunPoint_TEST.ts
    rows = embed_rows(run, GUNPOINT / "GunPoint_TEST.ts", tmp_path / "e.parquet", capsys)
    assert len(rows) == 150 and rows["id"].is_unique
    assert "GunPoint_TEST.ts" in rows["id"].iloc[0]
    assert len(rows["embedding"].iloc[0]) == 16


@needs_ucr
def test_ucr_name_through_the_data_root(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    run = tmp_path / "run"
    pretrain("GunPoint", run, capsys, "--set", f"data.root={SHARED}", "--method", "ts2vec", *SMALL_CNN)
    code, stdout, err = run_cli(["evaluate", run, "--protocols", "linear", "--root", SHARED], capsys)
    assert code == 0, err
    assert "linear: accuracy=" in stdout
    rows = embed_rows(run, "GunPoint", tmp_path / "e.parquet", capsys, "--root", SHARED)
    assert len(rows) == 50 and rows["id"].is_unique  # the train split, one row per series


@needs_ucr
def test_datasets_lists_series_and_molecule_sets(capsys, monkeypatch):
    monkeypatch.setenv("SELFSUP_DATA", str(SHARED))
    code, stdout, _ = run_cli(["datasets"], capsys)
    assert code == 0
    for name in ("GunPoint", "JapaneseVowels", "PLAID", "nci_tpsa", "wehi", "chembl2321810", "karate"):
        assert name in stdout, name


def test_npy_series_pretrain_evaluate_embed(tmp_path, capsys):
    g = np.random.default_rng(0)
    x = g.normal(size=(40, 3, 50)).astype(np.float32)
    x[3, 1, 10:14] = np.nan  # missing values inside a series are kept (and counted)
    np.save(tmp_path / "train.npy", x)
    run = tmp_path / "run"
    _, err = pretrain(tmp_path / "train.npy", run, capsys, *SMALL_CNN)
    assert "4 missing values (NaN) in 1 series" in err
    code, stdout, err = run_cli(["evaluate", run, "--protocols", "rankme"], capsys)  # no labels: label-free only
    assert code == 0, err
    assert "rankme: rank=" in stdout
    rows = embed_rows(run, tmp_path / "train.npy", tmp_path / "e.parquet", capsys)
    assert len(rows) == 40 and rows["id"].is_unique
    assert np.isfinite(np.stack(rows["embedding"].to_numpy())).all()


def test_series_shorter_than_a_patch_is_one_line(tmp_path, capsys):
    np.save(tmp_path / "short.npy", np.random.default_rng(0).normal(size=(20, 1, 5)).astype(np.float32))
    code, _, err = run_cli(["pretrain", "--data", tmp_path / "short.npy", "--method", "mae", "--steps", "2", "--batch-size", "8",
                            "--out", tmp_path / "run", "--no-progress", "--no-eval"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "leaves 0 of 1 patches" in lines[0] and "Fix:" in lines[0]
    assert "Traceback" not in err
    code, _, err = run_cli(["pretrain", "--data", tmp_path / "short.npy", "--method", "tstcc", "--steps", "2", "--batch-size", "8",
                            "--out", tmp_path / "run2", "--no-progress", "--no-eval"], capsys)
    assert code == 2 and "predicts 6 steps ahead, and the series have 5 steps" in err and "Traceback" not in err


def test_longer_test_series_than_the_training_ones_embed(tmp_path, capsys):
    g = np.random.default_rng(1)
    np.save(tmp_path / "train.npy", g.normal(size=(30, 1, 40)).astype(np.float32))
    np.save(tmp_path / "long.npy", g.normal(size=(7, 1, 64)).astype(np.float32))
    run = tmp_path / "run"
    pretrain(tmp_path / "train.npy", run, capsys, *SMALL_CNN)
    rows = embed_rows(run, tmp_path / "long.npy", tmp_path / "e.parquet", capsys)
    assert len(rows) == 7 and np.isfinite(np.stack(rows["embedding"].to_numpy())).all()


@pytest.fixture
def smiles_csv(tmp_path) -> Path:
    pytest.importorskip("rdkit")
    labels = [i % 2 for i in range(len(SMILES))]
    frame = pd.DataFrame({"smiles": SMILES + ["C1CC(N"], "label": labels + [0]})  # the last one is broken
    path = tmp_path / "mols.csv"
    frame.to_csv(path, index=False)
    frame.iloc[::3].to_csv(tmp_path / "mols_test.csv", index=False)  # 9 rows, the broken one included
    return path


def test_smiles_csv_pretrain_evaluate_embed(tmp_path, smiles_csv, capsys):
    run = tmp_path / "run"
    _, err = pretrain(smiles_csv, run, capsys, "--set", "backbone.hidden_dim=16", "--set", "backbone.layers=2")
    # the invalid SMILES is counted and listed, like a corrupt image
    assert "skipped 1 unreadable molecule(s)" in err and "invalid SMILES 'C1CC(N'" in err
    assert "C1CC(N" in (run / "skipped.txt").read_text()
    code, stdout, err = run_cli(["evaluate", run, "--data", smiles_csv, "--test-split",
                                 smiles_csv.parent / "mols_test.csv", "--protocols", "knn"], capsys)
    assert code == 0, err
    assert "knn: accuracy=" in stdout
    rows = embed_rows(run, smiles_csv, tmp_path / "e.parquet", capsys)
    assert len(rows) == len(SMILES) and rows["id"].is_unique  # one row per valid molecule, with its id
    assert "C1CC(N" not in " ".join(rows["id"])


def test_molecule_label_column_by_name_or_none(smiles_csv):
    from selfsup.data.catalogue import load_dataset

    auto = load_dataset(str(smiles_csv))
    assert auto.classes == ["0", "1"] and len(auto.labels) == len(SMILES)
    assert any("read column 'label' as the class labels" in note for note in auto.notes)
    assert [s for s, _ in auto.skipped] == [f"{smiles_csv.name}:26"]  # the broken SMILES, listed by line
    assert load_dataset(str(smiles_csv), label="").labels is None


@needs_ucr
def test_pretraining_on_data_without_that_test_split_keeps_the_run(tmp_path, capsys):
    # the split cannot be read after pretraining: the run is kept, label-free protocols still run
    run = tmp_path / "run"
    code, stdout, err = run_cli(["pretrain", "--data", "GunPoint", "--set", f"data.root={SHARED}",
                                 "--set", "data.test_split=valid", "--steps", "2", "--batch-size", "8", "--out", run,
                                 "--no-progress", *SMALL_CNN], capsys)
    assert code == 0, err
    assert "note: time-series sets have the splits train and test, not 'valid'" in err and "skipped knn, linear" in err
    assert "rankme: rank=" in stdout and (run / "encoder" / "encoder.safetensors").is_file()
