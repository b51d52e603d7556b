"""Bad data through the CLI, end to end: each case is one `error: ... Fix: ...` line with exit code 2,
or the file is skipped, counted on stderr and listed in the run's skipped.txt; never a traceback.

(There is no table/CSV modality in selfsup yet, so "CSVs with broken rows" has no reader to test.)
"""
from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfsup.cli import main
from selfsup.data import load_dataset

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def tiny(out, *extra):
    return ["--steps", "2", "--batch-size", "8", "--out", out, "--no-progress", "--no-eval",
            "--set", "backbone.width=8", "--set", "method.hidden_dim=32", "--set", "method.out_dim=16",
            "--set", "train.threads=1", *extra]


def one_error_line(code, err) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and " Fix: " in lines[0], err
    return lines[0]


def png_declaring(width: int, height: int) -> bytes:
    """A 67-byte PNG whose header declares width x height 8-bit grey pixels, with no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def image(path, array, mode=None, fmt=None):
    path = os.fsencode(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = Image.fromarray(np.asarray(array, np.uint8))
    with open(path, "wb") as f:
        (im.convert(mode) if mode else im).save(f, format=fmt or "PNG")
    return path


@pytest.fixture
def messy_folder(tmp_path) -> Path:
    """Two classes of good images in every mode and two sizes, among files that cannot be used."""
    root = tmp_path / "messy"
    rng = np.random.default_rng(0)
    modes = ["L", "RGB", "RGBA", "P", "LA", "1", "CMYK", "I;16"]
    for i in range(16):
        cls = "a" if i % 2 else "b"
        size = (20, 16) if i % 4 else (24, 24)  # 12 of 20x16, 4 of 24x24: the most common size wins
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        mode = modes[i % len(modes)]
        if mode == "I;16":
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(root / cls / f"{i:02d}.png")
        elif mode == "CMYK":
            image(root / cls / f"{i:02d}.jpg", pixels, mode, "JPEG")
        else:
            image(root / cls / f"{i:02d}.png", pixels, mode)
    transparent = Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8)).convert("P")
    transparent.info["transparency"] = 0
    transparent.save(root / "a" / "palette-transparent.png")
    good = (root / "a" / "01.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    jpeg = image(root / "b" / "cut.jpg", rng.integers(0, 256, (20, 16, 3)), fmt="JPEG")
    data = Path(os.fsdecode(jpeg)).read_bytes()
    Path(os.fsdecode(jpeg)).write_bytes(data[: len(data) // 2])
    (root / "b" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / "b" / "huge.png").write_bytes(png_declaring(100_000, 100_000))  # over Pillow's own limit
    (root / "b" / "large.png").write_bytes(png_declaring(9000, 9000))  # under Pillow's, over selfsup's cap
    os.mkfifo(root / "b" / "fifo.png")  # opening it would block forever
    os.mkfifo(root / "loose-fifo.png")  # one beside the class folders too
    with open(os.path.join(os.fsencode(root / "a"), b"caf\xe9-\xff.png"), "wb") as f:  # Latin-1 name, broken
        f.write(b"\x89PNG\r\n\x1a\n")
    image(os.path.join(os.fsencode(root / "a"), b"ok-\xfe.png"), rng.integers(0, 256, (20, 16)))  # good, odd name
    return root


SKIPPED = {"truncated.png": "truncated", "cut.jpg": "truncated", "garbage.png": "not an image format",
           "empty.jpg": "not an image format", "huge.png": "decompression bomb",
           "large.png": "decompression bomb: 9000x9000 = 81000000 pixels declared, over the limit of 67108864",
           "fifo.png": "not a regular file", "loose-fifo.png": "not a regular file", "caf\\xe9-\\xff.png": "not an image format"}


def test_messy_folder_trains_skips_counts_and_lists(messy_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["pretrain", "--data", messy_folder, *tiny(out)], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert f"skipped {len(SKIPPED)} unreadable file(s)" in err and str(out / "skipped.txt") in err
    listed = (out / "skipped.txt").read_bytes().decode("utf-8")  # printable: valid UTF-8, bytes escaped
    rows = dict(line.split("\t") for line in listed.splitlines())
    assert {os.path.basename(name) for name in rows} == set(SKIPPED)
    for name, reason in rows.items():
        assert SKIPPED[os.path.basename(name)] in reason.lower(), (name, reason)
    encoder = json.loads((out / "encoder" / "encoder.json").read_text())
    assert len(encoder["mean"]) == 3  # grey, RGB, RGBA, palette, LA, 1-bit, CMYK and 16-bit: all RGB
    assert encoder["backbone"]["image_size"] == 20  # the most common size, 20x16, by its height

    # embed reads the same folder, warns with the count and writes one row per good image
    code, _, err = run_cli(["embed", out, "--data", messy_folder, "--out", tmp_path / "e.npy"], capsys)
    assert code == 0 and f"skipped {len(SKIPPED)} unreadable file(s)" in err
    ids = (tmp_path / "e.ids.txt").read_text(encoding="utf-8").splitlines()
    assert len(ids) == 18 and np.load(tmp_path / "e.npy").shape[0] == 18 and "a/ok-\\xfe.png" in ids


def test_channel_modes_convert_consistently(messy_folder):
    ds = load_dataset(str(messy_folder))
    assert ds.channels == 3 and ds.image_size == (20, 16) and len(ds) == 18
    grey = Image.open(messy_folder / "b" / "00.png")  # an L image among RGB ones: grey copied to 3 channels
    index = ds.ids.index("b/00.png")
    resized = np.asarray(grey.resize((16, 20), Image.Resampling.BILINEAR))
    assert (ds.images[index].numpy() == resized[None]).all()
    rgba = np.asarray(Image.open(messy_folder / "b" / "02.png"))  # alpha dropped, colour kept
    assert (ds.images[ds.ids.index("b/02.png")].numpy() == rgba[..., :3].transpose(2, 0, 1)).all()


def test_requested_image_size_resizes_every_image(messy_folder, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["pretrain", "--data", messy_folder, *tiny(out, "--set", "data.image_size=12")], capsys)
    assert code == 0, err
    assert json.loads((out / "encoder" / "encoder.json").read_text())["backbone"]["image_size"] == 12


@pytest.mark.slow
def test_non_utf8_names_in_a_real_process(messy_folder, tmp_path):
    """The names go through a real stderr and file system under a strict UTF-8 locale, not capsys."""
    out = tmp_path / "run"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONIOENCODING", None)
    env.pop("PYTHONUTF8", None)
    folder = os.fsencode(messy_folder)
    renamed = folder + b"-\xe9t\xe9"  # the data folder's own name is not UTF-8 either
    os.rename(folder, renamed)
    proc = subprocess.run([sys.executable, "-m", "selfsup.cli", "pretrain", "--data", renamed, *tiny(str(out))],
                          env=env, capture_output=True, timeout=300, check=False)
    err = proc.stderr.decode("utf-8")  # valid UTF-8: bytes that are not were escaped
    assert proc.returncode == 0, err
    assert "Traceback" not in err and f"skipped {len(SKIPPED)} unreadable" in err
    assert "run directory:" in proc.stdout.decode("utf-8")
    assert "caf\\xe9-\\xff.png" in (out / "skipped.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("case,needle", [
    ("empty", "holds no image files"),
    ("only-text", "holds no image files"),
    ("all-broken", "none of its 2 image files could be read"),
])
def test_folders_without_usable_images_are_one_line_errors(tmp_path, capsys, case, needle):
    root = tmp_path / case
    root.mkdir()
    if case == "only-text":
        (root / "notes.txt").write_text("no images here")
    if case == "all-broken":
        (root / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        (root / "b.png").write_bytes(png_declaring(100_000, 100_000))
    code, _, err = run_cli(["pretrain", "--data", root, *tiny(tmp_path / "run")], capsys)
    assert needle in one_error_line(code, err)
    assert not (tmp_path / "run").exists()  # refused before any work


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _npy(path, content, cut=None):
    """`content` (an array, saved with np.save, or raw bytes) at `path`, cut to `cut` bytes."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)
    if cut is not None:
        path.write_bytes(path.read_bytes()[:cut])
    return path


@pytest.mark.parametrize("make,needle", [
    (lambda p: _npz(p, x=np.zeros((8, 4, 6, 6), np.uint8)), "C = 1 or 3"),  # RGBA arrays: refused, not guessed
    (lambda p: _npz(p, x=np.zeros((8, 6, 6, 2), np.uint8)), "C = 1 or 3"),
    (lambda p: _npz(p, x=np.zeros((8, 36), np.uint8)), "images must be"),
    (lambda p: _npz(p, x=np.full((8, 6, 6), np.nan, np.float32)), "finite and in [0, 1]"),
    (lambda p: _npz(p, x=np.full((8, 6, 6), 2.0)), "finite and in [0, 1]"),
    (lambda p: _npz(p, x=np.full((8, 6, 6), 300, np.int32)), "must be in 0..255"),
    (lambda p: _npz(p, x=np.zeros((8, 6, 6), np.complex64)), "dtype complex64"),
    (lambda p: _npz(p, x=np.zeros((0, 6, 6), np.uint8)), "holds no images"),
    (lambda p: _npz(p, x=np.zeros((8, 6, 6), np.uint8), y=np.arange(7)), "labels must be integers of shape (8,)"),
    (lambda p: _npz(p, x=np.zeros((8, 6, 6), np.uint8), y=np.full(8, 0.5)), "labels must be integers"),
    (lambda p: _npy(p.with_suffix(".npy"), np.zeros(3, object)), "cannot be read without pickle"),
    (lambda p: _npy(p.with_suffix(".npy"), np.zeros((8, 6, 6), np.uint8), cut=20), "not a readable .npy/.npz file"),
    (lambda p: _npy(p, b"PK\x03\x04 not a zip archive"), "not a readable .npy/.npz file"),
])
def test_bad_arrays_are_one_line_errors(tmp_path, capsys, make, needle):
    path = make(tmp_path / "bad.npz")
    code, _, err = run_cli(["pretrain", "--data", path, *tiny(tmp_path / "run")], capsys)
    assert needle in one_error_line(code, err)
    assert not (tmp_path / "run").exists()


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


@pytest.mark.parametrize("damage,needle", [
    ("images", "train-images-idx3-ubyte.gz is truncated or not valid gzip"),
    ("labels-raw", "train-labels-idx1-ubyte is truncated: shape (16,) needs 24 bytes, the file has 20"),
    ("count", "has 15 labels but"),
])
def test_truncated_idx_files_are_one_line_errors(tmp_path, capsys, damage, needle):
    folder = tmp_path / "mnist"  # a folder holding MNIST's files is read as MNIST
    folder.mkdir()
    x = gzip.compress(_idx(np.zeros((16, 28, 28), np.uint8)))
    y = _idx(np.zeros(16, np.uint8))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(x[: len(x) // 2] if damage == "images" else x)
    if damage == "labels-raw":
        (folder / "train-labels-idx1-ubyte").write_bytes(y[:-4])
    else:
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(15, np.uint8)) if damage == "count" else y))
    code, _, err = run_cli(["pretrain", "--data", folder, *tiny(tmp_path / "run")], capsys)
    assert needle in one_error_line(code, err)


def test_damaged_cifar_batch_is_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    record = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(pickle.dumps(record, protocol=2))
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": [[1, 2], [3]], b"labels": 5}, protocol=2))
    code, _, err = run_cli(["pretrain", "--data", folder, *tiny(tmp_path / "run")], capsys)
    assert "data_batch_3" in one_error_line(code, err)


def test_non_utf8_output_path_prints_escaped_on_a_strict_stdout(tmp_path, monkeypatch):
    import io

    import torch

    from selfsup.backbones.base import build_backbone
    from selfsup.encoder import Encoder, save_encoder

    torch.manual_seed(0)
    save_encoder(Encoder(build_backbone("convnet6", in_channels=1, image_size=6, width=8), [0.5], [0.5], "image"), tmp_path / "enc")
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 6, 6), np.uint8))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")  # a UTF-8 terminal
    monkeypatch.setattr(sys, "stdout", stdout)
    out = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"emb-\xff.npy"))
    with pytest.raises(SystemExit) as info:
        main(["embed", str(tmp_path / "enc"), "--data", str(tmp_path / "d.npz"), "--out", out])
    assert info.value.code == 0
    stdout.flush()
    assert "emb-\\udcff.npy" in stdout.buffer.getvalue().decode("utf-8")
    assert os.path.exists(os.path.join(os.fsencode(tmp_path), b"emb-\xff.npy"))
    assert os.path.exists(os.path.join(os.fsencode(tmp_path), b"emb-\xff.ids.txt"))
