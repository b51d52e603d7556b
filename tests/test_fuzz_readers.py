"""Every reader, fed damaged versions of valid files, gives a dataset or a DataError, nothing else.

Hypothesis mutates valid IDX files (raw and gzip), CIFAR pickle batches, STL-10 binaries, tables
(CSV/TSV with messy cells, parquet),
.npy/.npz arrays (plain and compressed) and image files in a folder: truncations, overwritten
bytes (headers included), inserted junk and pure random bytes. A reader may accept a mutation
that still parses (then the result must be a well-formed ImageDataset) but must never raise
another exception type, hang or allocate what the file only declares. Each test is bounded
(max_examples, no deadline) so the whole file runs in about 20-30 s.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from selfsup.data import (
    load_arrays,
    load_cifar10,
    load_idx,
    load_image_folder,
    load_stl10,
)
from selfsup.data.dataset import ImageDataset
from selfsup.errors import DataError

pytestmark = pytest.mark.slow

# About 2-3 s per test on a loaded two-core machine; a failure prints the blob that replays it.
# The examples are derandomized (the same 250 per reader on every run, as in Hypothesis's "ci"
# profile), so CI does not fail at random on a change that touched no reader; set
# SELFSUP_FUZZ_RANDOM=1 (and raise SELFSUP_FUZZ_EXAMPLES) to explore new inputs locally.
FUZZ = settings(max_examples=int(os.environ.get("SELFSUP_FUZZ_EXAMPLES", "250")), deadline=None, print_blob=True,
                derandomize=os.environ.get("SELFSUP_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def mutated(draw, valid: bytes, header: int = 32):
    """`valid` damaged: cut short, bytes overwritten (often in the header), junk inserted, or replaced."""
    kind = draw(st.sampled_from(["truncate", "overwrite", "header", "insert", "random"]))
    data = bytearray(valid)
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, max(0, len(data) - 1)))])
    if kind == "random":
        return draw(st.binary(max_size=2 * len(valid)))
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:])
    top = min(header, len(data)) if kind == "header" else len(data)
    for _ in range(draw(st.integers(1, 6))):
        if top:
            data[draw(st.integers(0, top - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def assert_wellformed(ds: ImageDataset) -> None:
    assert isinstance(ds, ImageDataset)
    assert ds.images.dtype == torch.uint8 and ds.images.dim() == 4 and len(ds) > 0
    assert ds.images.shape[1] in (1, 3) and len(ds.ids) == len(ds)
    if ds.labels is not None:
        assert ds.labels.dtype == torch.int64 and (ds.labels >= 0).all()
    for name, why in ds.skipped:  # printable: a skip list can be written and printed as UTF-8
        f"{name}\t{why}".encode()


def accepts_or_data_error(load):
    try:
        ds = load()
    except DataError as e:
        str(e).encode("utf-8", "backslashreplace")
        return None
    assert_wellformed(ds)
    return ds


# ---------------------------------------------------------------- IDX

def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


_IDX_IMAGES = _idx(np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4))
_IDX_LABELS = _idx(np.array([1, 0, 2], np.uint8))


@FUZZ
@given(images=mutated(_IDX_IMAGES, header=16), labels=mutated(_IDX_LABELS, header=8),
       damage=st.sampled_from(["images", "labels", "both"]), compress=st.booleans())
def test_idx_reader(tmp_path, images, labels, damage, compress):
    images = images if damage != "labels" else _IDX_IMAGES
    labels = labels if damage != "images" else _IDX_LABELS
    pack = gzip.compress if compress else bytes
    (tmp_path / "x").write_bytes(pack(images))
    (tmp_path / "y").write_bytes(pack(labels))
    accepts_or_data_error(lambda: load_idx(tmp_path / "x", tmp_path / "y"))


@FUZZ
@given(data=mutated(gzip.compress(_IDX_IMAGES), header=24))
def test_idx_reader_damaged_gzip(tmp_path, data):
    (tmp_path / "x.gz").write_bytes(data)
    accepts_or_data_error(lambda: load_idx(tmp_path / "x.gz"))


def test_idx_gzip_bomb_reads_only_what_the_header_declares(tmp_path):
    # 2 images of 2x2 declared, then 64 MiB of zeros: a reader that decompresses it all would
    # allocate them; this one stops after the declared size and reports the extra bytes.
    bomb = _idx(np.zeros((2, 2, 2), np.uint8)) + bytes(64 << 20)
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(bomb, compresslevel=1))
    with pytest.raises(DataError, match="has bytes after the data of shape"):
        load_idx(tmp_path / "bomb.gz")


# ---------------------------------------------------------------- CIFAR

def _cifar_batch(n=2, protocol=2) -> bytes:
    rng = np.random.default_rng(0)
    record = {b"batch_label": b"test", b"labels": rng.integers(0, 10, n).tolist(),
              b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"a.png"] * n}
    return pickle.dumps(record, protocol=protocol)


@FUZZ
@given(data=mutated(_cifar_batch(), header=64), protocol=st.sampled_from([2, 4]))
def test_cifar_reader_damaged_pickle(tmp_path, data, protocol):
    if protocol != 2:  # the mutation was drawn from protocol 2; redo it on a protocol-4 file of the same length
        data = _cifar_batch(protocol=protocol)[:len(data)]
    (tmp_path / "test_batch").write_bytes(data)
    accepts_or_data_error(lambda: load_cifar10(tmp_path, "test"))


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.binary(max_size=8) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=6), inner, max_size=4),
    max_leaves=12)
_ARRAYS = st.builds(lambda shape, dtype: np.zeros(shape, dtype),
                    st.lists(st.integers(0, 3), max_size=3).map(tuple),
                    st.sampled_from([np.uint8, np.int64, np.float32, np.int8]))


@FUZZ
@given(data=st.one_of(_VALUES, _ARRAYS, st.lists(st.lists(st.integers(0, 255), max_size=4), max_size=3)),
       labels=st.one_of(_VALUES, _ARRAYS), key=st.sampled_from([b"data", "data", b"other"]))
def test_cifar_reader_wellformed_pickles_of_wrong_content(tmp_path, data, labels, key):
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({key: data, b"labels": labels}, f, protocol=2)
    accepts_or_data_error(lambda: load_cifar10(tmp_path, "test"))


# ---------------------------------------------------------------- STL-10

@FUZZ
@given(n_images=st.integers(0, 3), extra=st.integers(-3, 3), labels=st.binary(max_size=5),
       split=st.sampled_from(["train", "unlabeled"]))
def test_stl10_reader(tmp_path, n_images, extra, labels, split):
    size = max(0, n_images * 3 * 96 * 96 + extra)
    prefix = "train" if split == "train" else "unlabeled"
    (tmp_path / f"{prefix}_X.bin").write_bytes(bytes(size))
    (tmp_path / "train_y.bin").write_bytes(labels)
    accepts_or_data_error(lambda: load_stl10(tmp_path, split))


# ---------------------------------------------------------------- npy / npz

def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(1)
    arrays = {"x": rng.integers(0, 256, (3, 6, 6), dtype=np.uint8), "y": np.array([0, 2, 1]),
              "classes": np.array(["a", "b", "c"])}
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


_NPY = _npy(np.random.default_rng(2).random((3, 5, 5), dtype=np.float32))


@FUZZ
@given(data=mutated(_NPY, header=128))
def test_npy_reader(tmp_path, data):
    (tmp_path / "a.npy").write_bytes(data)
    accepts_or_data_error(lambda: load_arrays(tmp_path / "a.npy"))


@FUZZ
@given(data=st.one_of(mutated(_npz(False), header=64), mutated(_npz(True), header=64)))
def test_npz_reader(tmp_path, data):
    (tmp_path / "a.npz").write_bytes(data)
    accepts_or_data_error(lambda: load_arrays(tmp_path / "a.npz"))


_DTYPES = st.sampled_from(["u1", "i2", "<i8", ">u4", "f2", "<f4", ">f8", "?", "c8", "V3", "U2", "S2", "M8[s]"])


@FUZZ
@given(shape=st.lists(st.integers(0, 4), max_size=5).map(tuple), dtype=_DTYPES, fill=st.sampled_from([0, 1, 255, 300, -1, 0.5, np.nan, np.inf]),
       labels=st.one_of(st.none(), st.lists(st.integers(-2, 2**40), max_size=5), st.lists(st.floats(), max_size=5)))
def test_npz_reader_wrong_dtypes_shapes_and_values(tmp_path, shape, dtype, fill, labels):
    try:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN cast to an integer dtype
            x = np.full(shape, fill, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        x = np.zeros(shape, dtype=dtype)
    arrays = {"x": x}
    if labels is not None:
        arrays["y"] = np.array(labels)
    np.savez(tmp_path / "a.npz", **arrays)
    accepts_or_data_error(lambda: load_arrays(tmp_path / "a.npz"))


# ---------------------------------------------------------------- image folder

def _image_bytes(fmt: str, mode: str) -> bytes:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


_IMAGES = {(fmt, mode): _image_bytes(fmt, mode) for fmt, mode in [
    ("PNG", "RGB"), ("PNG", "P"), ("PNG", "LA"), ("JPEG", "RGB"), ("JPEG", "L"), ("GIF", "P"), ("BMP", "RGB"),
    ("TIFF", "RGBA"), ("WEBP", "RGB"), ("PPM", "RGB")]}
_EXT = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp", "PPM": "ppm"}


@FUZZ
@given(case=st.sampled_from(sorted(_IMAGES)), data=st.data())
def test_image_folder_reader(tmp_path, case, data):
    fmt, _ = case
    damaged = data.draw(mutated(_IMAGES[case], header=48))
    folder = tmp_path / "f"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    (folder / f"damaged.{_EXT[fmt]}").write_bytes(damaged)
    (folder / "good.png").write_bytes(_IMAGES[("PNG", "RGB")])
    # a small pixel cap: a mutated header that declares a huge image is skipped without decoding it
    ds = accepts_or_data_error(lambda: load_image_folder(folder, max_pixels=1 << 16, workers=2))
    assert ds is not None and "good.png" in ds.ids  # the good image is never lost to a bad neighbour
    assert len(ds) + len(ds.skipped) == 2


# ---------------------------------------------------------------- tables (CSV, parquet)

def assert_wellformed_table(ds) -> None:
    from selfsup.data import TableDataset

    assert isinstance(ds, TableDataset) and len(ds) > 0 and len(ds.ids) == len(ds)
    assert ds.values.dtype == torch.float32 and ds.values.dim() == 2
    assert torch.isfinite(ds.values).all()  # missing values are filled, never NaN
    assert ds.values.shape[1] == len(ds.schema.columns) > 0
    for j, column in enumerate(ds.schema.columns):
        if column.kind == "categorical":
            codes = ds.values[:, j]
            assert (codes == codes.round()).all() and codes.min() >= 0 and codes.max() <= len(column.categories)
    if ds.labels is not None:
        assert ds.labels.dtype == torch.int64 and 0 <= int(ds.labels.min()) and int(ds.labels.max()) < len(ds.classes)
    for name, why in ds.skipped:
        f"{name}\t{why}".encode()


_CSV = ("size,colour,count,label\n" + "".join(
    f"{i * 0.37:.2f},{['red', 'green', 'blue'][i % 3]},{i % 5},{'ab'[i % 2]}\n" for i in range(40))).encode()
_CELLS = st.sampled_from(["", "?", "NA", "1.5", "-3", "1e309", "nan", "inf", "red", "x,y", '"', '""', "\x00", "\r",
                          "é", "\ufeff", "a\nb", " 7 ", "0x1F", "1_000", "\t"])


@st.composite
def messy_csv(draw):
    """Rows of random cells (missing markers, quotes, separators, NULs, non-numbers) and widths."""
    header = draw(st.lists(st.sampled_from(["a", "b", "label", "", "a b", "é"]), min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(_CELLS, min_size=0, max_size=6), max_size=12))
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    encoding = draw(st.sampled_from(["utf-8", "cp1252", "utf-16"]))
    return text.encode(encoding, errors="replace")


@FUZZ
@given(data=st.one_of(mutated(_CSV, header=24), messy_csv()), suffix=st.sampled_from([".csv", ".tsv"]))
def test_table_reader_csv(tmp_path, data, suffix):
    from selfsup.data import load_table

    path = tmp_path / f"t{suffix}"
    path.write_bytes(data)
    try:
        ds = load_table(path)
    except DataError as e:
        str(e).encode("utf-8", "backslashreplace")
        return
    assert_wellformed_table(ds)
    other = load_table(path, schema=ds.schema)  # a schema always re-reads the file it came from
    assert other.schema == ds.schema and len(other) == len(ds)


def _parquet() -> bytes:
    import pandas as pd

    frame = pd.DataFrame({"size": np.arange(30) * 0.5, "colour": ["red", "blue", None] * 10,
                          "flag": [True, False, True] * 10, "label": ["a", "b"] * 15})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def test_parquet_with_a_damaged_column_name(tmp_path):
    """Found by the fuzz test below: a byte of the footer overwritten inside a column name made
    pyarrow raise UnicodeDecodeError from `column_names`; it is a one-line DataError."""
    from selfsup.data import load_table

    data = _parquet()
    at = data.index(b"\x18\x04flag", data.index(b"\x18\x06schema")) + 2  # the name in the footer's schema
    (tmp_path / "t.parquet").write_bytes(data[:at] + b"\x80" + data[at + 1:])
    with pytest.raises(DataError, match=r"t\.parquet has a column name that is not valid UTF-8"):
        load_table(tmp_path / "t.parquet")


@FUZZ
@given(data=mutated(_parquet(), header=8))
def test_table_reader_parquet(tmp_path, data):
    from selfsup.data import load_table

    (tmp_path / "t.parquet").write_bytes(data)
    try:
        ds = load_table(tmp_path / "t.parquet")
    except DataError as e:
        str(e).encode("utf-8", "backslashreplace")
        return
    assert_wellformed_table(ds)
