"""The CLI's bad-input paths: one line with the cause and the fix, exit code 2, nothing saved is lost."""
import json

import numpy as np
import pytest
from PIL import Image

from selfsup.cli import main


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Fix:" in lines[0], lines[0]
    return lines[0]


def tiny_flags(out):
    return ["--steps", "2", "--batch-size", "16", "--out", str(out), "--no-progress", "--no-eval",
            "--set", "backbone.width=8", "--set", "method.hidden_dim=32", "--set", "method.out_dim=16"]


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["pretrain", "--data", str(tmp_path / "empty"), *tiny_flags(tmp_path / "run")], capsys)
    assert code == 2
    assert "empty" in error_line(err)


def test_missing_path(tmp_path, capsys):
    code, _, err = run_cli(["pretrain", "--data", str(tmp_path / "nowhere"), *tiny_flags(tmp_path / "run")], capsys)
    assert code == 2
    assert "nowhere" in error_line(err)


def test_unknown_method(tmp_path, fmnist_npz, capsys):
    code, _, err = run_cli(["pretrain", "--data", str(fmnist_npz), "--method", "simclrr", *tiny_flags(tmp_path / "r")], capsys)
    assert code == 2
    assert "Did you mean 'simclr'?" in error_line(err)


def test_config_key_typo(tmp_path, fmnist_npz, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("optim:\n  learning_rate: 0.1\n")
    code, _, err = run_cli(["pretrain", "--config", str(cfg), "--data", str(fmnist_npz), *tiny_flags(tmp_path / "r")], capsys)
    assert code == 2
    assert "optim.learning_rate" in error_line(err)
    code, _, err = run_cli(["pretrain", "--data", str(fmnist_npz), "--set", "method.temprature=0.1", *tiny_flags(tmp_path / "r")], capsys)
    assert code == 2
    assert "Did you mean 'temperature'?" in error_line(err)


def test_batch_larger_than_dataset(tmp_path, fmnist_npz, capsys):
    flags = tiny_flags(tmp_path / "r")
    flags[flags.index("--batch-size") + 1] = "4096"
    code, _, err = run_cli(["pretrain", "--data", str(fmnist_npz), *flags], capsys)
    assert code == 2
    assert "larger than the dataset (600 images" in error_line(err)


def test_corrupt_image_is_skipped_counted_and_reported(tmp_path, capsys):
    from tests.conftest import fmnist_arrays

    x, y = fmnist_arrays(40)
    root = tmp_path / "folder"
    for i, (img, label) in enumerate(zip(x, y)):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / f"c{label}" / f"{i}.png")
    (root / "c0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["pretrain", "--data", str(root), *tiny_flags(out)], capsys)
    assert code == 0, err
    assert "skipped 1 unreadable file" in err and "broken.png" in err
    assert "broken.png" in (out / "skipped.txt").read_text()
    assert (out / "encoder" / "encoder.safetensors").is_file()


def test_existing_run_is_not_overwritten(tmp_path, fmnist_npz, capsys):
    out = tmp_path / "run"
    assert run_cli(["pretrain", "--data", str(fmnist_npz), *tiny_flags(out)], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    code, _, err = run_cli(["pretrain", "--data", str(fmnist_npz), *tiny_flags(out)], capsys)
    assert code == 2 and "--resume" in error_line(err)
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before


def test_methods_and_datasets_listings(capsys):
    code, out, _ = run_cli(["methods"], capsys)
    assert code == 0
    from selfsup import registry

    for name in registry.names("method") + registry.names("auxiliary"):  # every registered objective, with its paper
        assert f"{name}  [" in out
    assert out.count("arXiv") >= len(registry.names("method")) + len(registry.names("auxiliary"))
    assert "temperature=0.5" in out and "auxiliary objectives" in out
    code, out, _ = run_cli(["datasets"], capsys)
    assert code == 0 and "fashion-mnist" in out and "cifar10" in out


def test_evaluate_and_embed_commands(tmp_path, fmnist_split_dir, capsys):
    out = tmp_path / "run"
    assert run_cli(["pretrain", "--data", str(fmnist_split_dir / "train.npz"), *tiny_flags(out)], capsys)[0] == 0
    code, stdout, err = run_cli(["evaluate", str(out), "--data", str(fmnist_split_dir / "train.npz"),
                                 "--test-split", str(fmnist_split_dir / "test.npz"), "--protocols", "knn,rankme"], capsys)
    assert code == 0, err
    assert "knn: accuracy=" in stdout
    results = json.loads((out / "results.json").read_text())
    assert {"pretrain", "knn", "rankme"} <= results.keys()
    code, stdout, err = run_cli(["embed", str(out), "--data", str(fmnist_split_dir / "test.npz"), "--out",
                                 str(tmp_path / "e.npy")], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "e.npy").shape[0] == 200
    code, _, err = run_cli(["embed", str(out), "--data", str(fmnist_split_dir / "test.npz"), "--out",
                            str(tmp_path / "e.csv")], capsys)
    assert code == 2 and ".csv" in error_line(err)
    code, _, err = run_cli(["evaluate", str(tmp_path / "no-run"), "--data", str(fmnist_split_dir / "train.npz")], capsys)
    assert code == 2 and "no encoder found" in error_line(err)
