"""Outputs do not depend on how they were computed: embed and evaluate give the same bits across
reruns, batch sizes, thread counts and decode workers, and an embed killed with SIGKILL resumes to
a byte-identical file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.backbones.base import build_backbone
from selfsup.cli import main
from selfsup.encoder import Encoder, save_encoder
from selfsup.evaluation import evaluate
from selfsup.evaluation.features import FORWARD_CHUNK, extract_features, extract_to_file

SRC = str(Path(__file__).resolve().parents[1] / "src")


def random_encoder(name="convnet6", channels=1, size=28, seed=0, **options) -> Encoder:
    torch.manual_seed(seed)
    backbone = build_backbone(name, in_channels=channels, image_size=size, **options)
    return Encoder(backbone, [0.3] * channels, [0.35] * channels, "image").eval()


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("encoder") / "encoder"
    save_encoder(random_encoder(width=8), directory)
    return directory


@pytest.fixture
def threads():
    """Set torch's thread count inside a test; the session's setting is restored after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    return out


def test_features_do_not_depend_on_batch_size_or_threads(threads):
    # 130 rows: two full chunks and a last one of two rows, the shapes oneDNN computes differently.
    images = torch.randint(0, 256, (2 * FORWARD_CHUNK + 2, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    # Batch sizes 1..64 all move one chunk at a time, 1024 moves 16; two threads on a loaded two-core
    # machine run 10x slower, so they are checked on the small net in fp32 (the ResNet was checked by
    # hand with 1, 2 and 3 threads).
    cases = [(random_encoder(width=8), [(1, 1, False), (1, 1024, False), (2, 7, False), (1, 7, True), (1, 1024, True)]),
             (random_encoder("resnet18"), [(1, 7, False), (1, 1024, False), (1, 7, True), (1, 1024, True)])]
    for encoder, combos in cases:
        reference = {}
        for n_threads, batch_size, amp in combos:
            threads(n_threads)
            feats = extract_features(encoder, images, batch_size=batch_size, amp=amp)
            reference.setdefault(amp, feats)
            assert torch.equal(feats, reference[amp]), (encoder.backbone.spec["name"], n_threads, batch_size, amp)
        # a row's features do not depend on its neighbours: the same rows, shifted, give the same bits
        assert torch.equal(extract_features(encoder, images[3:]), reference[False][3:])


def test_embed_files_are_identical_across_reruns_batch_sizes_and_threads(tmp_path, encoder_dir, fmnist_npz,
                                                                          capsys, threads):
    outputs = {}
    for n_threads, batch_size in [(1, 7), (2, 1024), (1, 7)]:
        threads(n_threads)
        out = tmp_path / f"e-{n_threads}-{batch_size}-{len(outputs)}.npy"
        run_cli(["embed", str(encoder_dir), "--data", str(fmnist_npz), "--out", str(out),
                 "--batch-size", str(batch_size)], capsys)
        stem = out.with_suffix("")
        outputs[out.name] = [out.read_bytes(), Path(f"{stem}.ids.txt").read_bytes(),
                             Path(f"{stem}.labels.npy").read_bytes()]
        assert sorted(p.name for p in tmp_path.iterdir() if ".part" in p.name) == []  # work files removed
    first = next(iter(outputs.values()))
    assert np.load(tmp_path / next(iter(outputs))).shape[0] == 600
    for name, files in outputs.items():
        assert files == first, name
    parquet = []
    for batch_size in (5, 700):
        out = tmp_path / f"e{batch_size}.parquet"
        run_cli(["embed", str(encoder_dir), "--data", str(fmnist_npz), "--out", str(out),
                 "--batch-size", str(batch_size)], capsys)
        parquet.append(out.read_bytes())
    assert parquet[0] == parquet[1]


def test_evaluate_results_are_identical_across_reruns_batch_sizes_and_threads(fmnist_split_dir, threads):
    from selfsup.data import load_dataset

    train = load_dataset(str(fmnist_split_dir / "train.npz"))
    test = load_dataset(str(fmnist_split_dir / "test.npz"))
    encoder = random_encoder(width=8)
    options = {"linear": {"lambdas": (1e-4, 1e-2), "max_iter": 30}}  # a short grid: two threads are slow here
    results = []
    for n_threads, batch_size in [(1, 7), (2, 1024), (1, 7)]:
        threads(n_threads)
        results.append(evaluate(encoder, train, test, protocols=("knn", "linear", "rankme"), batch_size=batch_size,
                                options=options))
    assert 0.3 < results[0]["knn"]["accuracy"] <= 1  # a real result, not a degenerate one
    for r in results[1:]:
        assert r["knn"] == results[0]["knn"] and r["linear"] == results[0]["linear"]
        # RankMe's SVD runs in LAPACK, whose last bit depends on the thread count (seen: 1 ulp)
        assert r["rankme"] == pytest.approx(results[0]["rankme"], rel=1e-12)


def test_api_evaluate_reruns_give_equal_results(fmnist_split_dir, threads):
    from selfsup.api import evaluate as api_evaluate

    threads(1)
    encoder = random_encoder(width=8, seed=3)
    runs = [api_evaluate(encoder, data=str(fmnist_split_dir / "train.npz"), test_split=str(fmnist_split_dir / "test.npz"),
                         protocols=("knn", "rankme"), device="cpu") for _ in range(2)]
    assert runs[0] == runs[1]


def test_folder_decoding_does_not_depend_on_worker_count(tmp_path):
    from PIL import Image

    from selfsup.data import load_image_folder

    rng = np.random.default_rng(0)
    for i in range(24):  # mixed sizes and modes: resizing and conversion run in the workers too
        size = (12, 10) if i % 3 else (20, 16)
        image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        (image.convert("L") if i % 4 == 0 else image).save(tmp_path / f"{i:02d}.png")
    one = load_image_folder(tmp_path, workers=1)
    for workers in (2, 5):
        other = load_image_folder(tmp_path, workers=workers)
        assert torch.equal(other.images, one.images) and other.ids == one.ids


def test_resume_keeps_recorded_rows_and_cuts_the_rest(tmp_path, capsys, threads):
    threads(1)
    encoder = random_encoder(width=8)
    images = torch.randint(0, 256, (5 * FORWARD_CHUNK + 9, 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    reference = extract_features(encoder, images).numpy()
    work = tmp_path / "e.part"
    record = tmp_path / "e.part.json"
    full = np.array(extract_to_file(encoder, images, work, "key-1", batch_size=64))
    assert np.array_equal(full, reference)
    assert json.loads(record.read_text())["rows"] == len(images)

    # A process killed after writing rows 128..191 but before recording them: the record says 128.
    state = json.loads(record.read_text())
    record.write_text(json.dumps({**state, "rows": 2 * FORWARD_CHUNK}))
    dim = reference.shape[1]
    with open(work, "r+b") as f:
        f.truncate(3 * FORWARD_CHUNK * dim * 4)
        f.seek(2 * FORWARD_CHUNK * dim * 4)
        f.write(b"\xff" * FORWARD_CHUNK * dim * 4)  # the unrecorded block: garbage that must be cut off
        f.seek(0)
        f.write(np.full(dim, 7.0, "<f4").tobytes())  # marks row 0 to show the recorded rows are kept
    resumed = np.array(extract_to_file(encoder, images, work, "key-1", batch_size=1024))
    assert "128 of 329 rows were done" in capsys.readouterr().err
    assert (resumed[0] == 7.0).all() and np.array_equal(resumed[1:], reference[1:])

    # Another key (other weights or data) or a damaged record: start over.
    for text in (json.dumps({**state, "rows": 2 * FORWARD_CHUNK, "key": "key-2"}), "{not json"):
        record.write_text(text)
        again = np.array(extract_to_file(encoder, images, work, "key-1", batch_size=128))
        assert np.array_equal(again, reference)
        assert "resuming" not in capsys.readouterr().err


@pytest.mark.slow
def test_embed_killed_with_sigkill_resumes_to_identical_file(tmp_path, encoder_dir, capsys, threads):
    threads(1)
    rng = np.random.default_rng(5)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.integers(0, 256, (64 * FORWARD_CHUNK, 28, 28), dtype=np.uint8),
             y=rng.integers(0, 10, 64 * FORWARD_CHUNK))
    reference = tmp_path / "reference.npy"
    run_cli(["embed", str(encoder_dir), "--data", str(data), "--out", str(reference), "--batch-size", "1024"], capsys)

    out = tmp_path / "killed.npy"
    record = tmp_path / "killed.npy.part.json"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "selfsup.cli", "embed", str(encoder_dir), "--data", str(data),
                             "--out", str(out), "--batch-size", "64"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_at = 10 * FORWARD_CHUNK  # mid-way: 10 of 64 blocks recorded
    deadline = time.monotonic() + 120
    rows = 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                rows = json.loads(record.read_text())["rows"]
            except (OSError, ValueError):
                rows = 0  # not written yet (atomic replace: never half-written)
            if rows >= kill_at:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"embed ended before it was killed (rc {proc.returncode}): {err!r}"
    assert not out.exists()  # no final file before the last row
    assert kill_at <= json.loads(record.read_text())["rows"] < 64 * FORWARD_CHUNK

    captured = run_cli(["embed", str(encoder_dir), "--data", str(data), "--out", str(out), "--batch-size", "1000"], capsys)
    assert "resuming from" in captured.err
    assert out.read_bytes() == reference.read_bytes()
    assert (tmp_path / "killed.ids.txt").read_bytes() == (tmp_path / "reference.ids.txt").read_bytes()
    assert not record.exists() and not (tmp_path / "killed.npy.part").exists()
