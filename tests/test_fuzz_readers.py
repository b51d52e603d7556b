"""Every reader, fed damaged versions of valid files, gives a dataset or a DataError, nothing else.

Hypothesis mutates valid IDX files (raw and gzip), CIFAR pickle batches, STL-10 binaries, tables
(CSV/TSV with messy cells, parquet),
.npy/.npz arrays (plain and compressed), image files in a folder, time series (UCR/UEA .ts, .tsv
and .arff seeded with rows of the shared archive sets, float .npy/.npz) and graphs (molecule
CSV/.smi, edge lists with a node file, graph .npz): truncations, overwritten bytes (headers
included), inserted junk and pure random bytes; text formats also get files of random messy
headers and cells. A reader may accept a mutation that still parses (then the result must be a
well-formed dataset of its kind) but must never raise another exception type, hang or allocate
what the file only declares. Each test is bounded (max_examples, no deadline) so the whole file
runs in about 20-45 s.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import warnings
from pathlib import Path

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


# ================================================================ time series (data/series.py)
#
# Seeds: the header and first rows of real archive files (GunPoint, univariate, equal length; a
# slice of BasicMotions, 6 channels; the first rows of JapaneseVowels, 12 channels of unequal
# length), a few KB each, the same rows as UCR .tsv and as .arff (numeric and relational), and
# float (N, C, T) arrays with NaN. A kept dataset may hold NaN (missing values, padding), never an
# infinity; every series keeps an observed value; labels index the class list.

SHARED_UCR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ucr"


def _ts_seed(name: str, rows: int, values: int | None = None) -> bytes:
    """The first comment, the header and the first `rows` series of <name>_TRAIN.ts (each channel cut
    to its first `values` values, with @seriesLength to match); b"" when the shared sets are absent."""
    path = SHARED_UCR / name / f"{name}_TRAIN.ts"
    if not path.is_file():
        return b""
    comment, header, body = [], [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not header and line.startswith("#") and not comment:
                comment.append(line)
            elif line.startswith("@"):
                header.append(line)
            elif header and header[-1].lower() == "@data" and line.strip():
                body.append(line)
                if len(body) == rows:
                    break
    if values is not None:
        body = [":".join(",".join(c.split(",")[:values]) for c in row.split(":")[:-1]) + ":" + row.rsplit(":", 1)[1]
                for row in body]
        header = [f"@seriesLength {values}" if h.lower().startswith("@serieslength") else h for h in header]
    return ("\n".join(comment + header + body) + "\n").encode()


_TS = {"GunPoint": _ts_seed("GunPoint", 2), "BasicMotions": _ts_seed("BasicMotions", 3, values=16),
       "JapaneseVowels": _ts_seed("JapaneseVowels", 2)}
needs_ucr = pytest.mark.skipif(not all(_TS.values()), reason="the shared UCR sets (shared/datasets/ucr) are not here")


def _ts_rows(seed: bytes) -> list[tuple[list[str], str]]:
    """(channel texts, label) of each series line of a .ts seed (none for an absent seed)."""
    if not seed:
        return []
    text = seed.decode()
    rows = [line for line in text[text.lower().index("@data") + 5:].splitlines() if line.strip()]
    return [(row.split(":")[:-1], row.rsplit(":", 1)[1]) for row in rows]


def _tsv_seed() -> bytes:
    """UCR 2018 .tsv: the GunPoint rows (first 40 values), the last one cut to 25 and padded with NaN."""
    rows = _ts_rows(_TS["GunPoint"]) if _TS["GunPoint"] else [(["1.5,2,2.5"], "1"), (["0.5,1,1.5"], "2")]
    lines = []
    for k, (chans, label) in enumerate(rows):
        values = chans[0].split(",")[:40]
        if k == len(rows) - 1:
            values = values[:25] + ["NaN"] * (len(values) - 25)
        lines.append("\t".join([label, *values]))
    return ("\n".join(lines) + "\n").encode()


def _arff_seed(multivariate: bool) -> bytes:
    """The GunPoint rows (20 values) as numeric attributes, or the BasicMotions slice as a relational attribute."""
    rows = _ts_rows(_TS["BasicMotions" if multivariate else "GunPoint"])
    width = 20 if not multivariate else 16
    rows = [([",".join(c.split(",")[:width]) for c in chans], label) for chans, label in rows] or [(["1,2"], "1")]
    classes = sorted({label for _, label in rows} | ({"Walking"} if multivariate else {"2"}))
    out = ["% from the UCR/UEA archive", "@relation seed"]
    steps = [f"@attribute att{t} numeric" for t in range(width)]
    out += ["@attribute series relational", *["  " + s for s in steps], "@end series"] if multivariate else steps
    out += ["@attribute target {" + ",".join(classes) + "}", "", "@data"]
    for chans, label in rows:
        out.append("'" + "\\n".join(chans) + f"',{label}" if multivariate else f"{chans[0]},{label}")
    return ("\n".join(out) + "\n").encode()


_TSV = _tsv_seed()
_ARFF = {False: _arff_seed(False), True: _arff_seed(True)}


def _series_npz(compressed: bool) -> bytes:
    x = np.random.default_rng(4).normal(size=(4, 3, 9))
    x[1, :, 6:] = np.nan  # padding: a shorter series
    x[2, 0, 3] = np.nan  # a missing value
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, x=x, y=np.array(["walk", "run", "walk", "sit"]),
                                                      classes=np.array(["run", "sit", "walk"]))
    return buffer.getvalue()


_SERIES_NPY = _npy(np.where(np.arange(9) < 7, np.random.default_rng(5).random((4, 2, 9), dtype=np.float32), np.nan))


def _header_size(seed: bytes) -> int:
    at = seed.lower().find(b"@data")
    return at + 5 if at >= 0 else 64


def assert_wellformed_series(ds) -> None:
    from selfsup.data.series import SeriesDataset

    assert isinstance(ds, SeriesDataset) and len(ds) > 0 and len(ds.ids) == len(ds) == len(set(ds.ids))
    values = ds.values
    assert values.dtype == torch.float32 and values.dim() == 3 and values.shape[1] >= 1 and values.shape[2] >= 1
    assert not torch.isinf(values).any()  # NaN = missing or padding; an infinite value is a skipped series
    assert (ds.lengths >= 1).all()  # a series with no observed value is skipped
    mean, std = ds.normalization()
    assert all(math.isfinite(m) for m in mean + std)
    if ds.labels is not None:
        assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds),) and int(ds.labels.min()) >= 0
        if ds.classes is not None:  # (an .npz's own class names are kept as given, repeats included)
            assert int(ds.labels.max()) < len(ds.classes)
        else:  # integer labels without class names: K = max + 1 classes, a class index (as the image readers)
            assert int(ds.labels.max()) < 2**31
    for name, why in ds.skipped:
        f"{name}\t{why}".encode()
    for note in ds.notes:
        note.encode()


def dataset_or_data_error(load, check):
    """The dataset `load` gives, passed through `check` (well-formed), or None for a one-line DataError."""
    try:
        ds = load()
    except DataError as e:
        text = str(e)
        text.encode("utf-8", "backslashreplace")
        assert "\n" not in text and " Fix: " in text, text
        return None
    check(ds)
    return ds


def series_or_data_error(load):
    """The dataset `load` gives (well-formed), or None for a one-line DataError."""
    return dataset_or_data_error(load, assert_wellformed_series)


def _series_reread(path, ds) -> None:
    """A labelled file read again with its own class list (as a test split is) gives the same labels."""
    from selfsup.data.series import load_series

    if ds is not None and ds.labels is not None and ds.classes is not None:
        again = load_series(path, classes=ds.classes)
        assert again.ids == ds.ids and torch.equal(again.labels, ds.labels)


_NUMBERS = st.sampled_from(["1.5", "-3", "0", "2.25", "1e-50", "7", "?", "NaN"])
_TS_CELLS = st.one_of(  # mostly numbers (and missing values), so that many rows parse
    _NUMBERS, _NUMBERS, _NUMBERS,
    st.sampled_from(["", "?", "NaN", "nan", "1e39", "-1e39", "3.4028235e38", "inf", "-inf", "x", "(1,2)", "(0", " 7 ",
                     "0x1F", "1_000", "é", "\r", "\t", "#", "@", "\ufeff"]))
_TS_HEADER = st.sampled_from([
    "@problemName Fuzz", "@timeStamps false", "@timeStamps true", "@missing true", "@missing false",
    "@univariate true", "@univariate false", "@dimensions 2", "@dimensions 1", "@dimensions 0", "@dimensions ²",
    "@dimensions 99999999999999999999", "@dimensions x", "@equalLength true", "@equalLength false", "@equalLength",
    "@seriesLength 3", "@seriesLength 0", "@seriesLength ²", "@seriesLength 99999999999999999999",
    "@classLabel true a b", "@classLabel true 1 2 10", "@classLabel true 1 1.0 2", "@classLabel true",
    "@classLabel false", "@classLabel maybe a", "@targetLabel true", "@", "@ data", "# a comment", ""])
_TS_LABELS = st.sampled_from(["a", "b", "1", "1.0", "10", "2", "", " ", "?", "é", "nan", "1e400"])


@st.composite
def messy_ts(draw):
    """A .ts file of random header lines (flags, counts, class lists), then rows of random cells: most
    rows with the file's channel count and a label when the file has labels, some not."""
    lines = draw(st.lists(_TS_HEADER, max_size=8))
    if draw(st.integers(0, 9)):
        lines.append(draw(st.sampled_from(["@data", "@data", "@DATA", "@data extra"])))
    channels, labelled = draw(st.integers(1, 3)), draw(st.booleans())
    for _ in range(draw(st.integers(0, 8))):
        width = channels if draw(st.integers(0, 4)) else draw(st.integers(1, 4))
        row = ":".join(draw(st.lists(st.lists(_TS_CELLS, max_size=5).map(",".join), min_size=width, max_size=width)))
        if labelled if draw(st.integers(0, 4)) else not labelled:
            row += ":" + draw(_TS_LABELS)
        lines.append(row)
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8", "cp1252", "utf-16"])), errors="replace")


_SEED_CLASSES = st.sampled_from([None, None, None, ["1", "2"], ["Standing", "Running", "Walking", "Badminton"], ["a"]])


@needs_ucr
@FUZZ
@given(case=st.sampled_from(sorted(_TS)), data=st.data(), classes=_SEED_CLASSES, as_test=st.booleans())
def test_ts_reader(tmp_path, case, data, classes, as_test):
    """as_test: the damaged file is the train split beside the good test split, which takes its class list."""
    from selfsup.data.series import load_series

    path = tmp_path / "Seed_TRAIN.ts"
    path.write_bytes(data.draw(mutated(_TS[case], header=_header_size(_TS[case]))))
    test = tmp_path / "Seed_TEST.ts"
    test.unlink(missing_ok=True)
    if as_test:
        test.write_bytes(_TS[case])
        series_or_data_error(lambda: load_series(test))
        return
    ds = series_or_data_error(lambda: load_series(path, classes=classes))
    _series_reread(path, ds)


@FUZZ
@given(data=messy_ts(), classes=st.sampled_from([None, None, ["a", "b"], ["1", "2", "10"]]))
def test_ts_reader_messy_headers_and_rows(tmp_path, data, classes):
    from selfsup.data.series import load_series

    path = tmp_path / "Messy_TRAIN.ts"
    path.write_bytes(data)
    ds = series_or_data_error(lambda: load_series(path, classes=classes))
    _series_reread(path, ds)


@st.composite
def messy_tsv(draw):
    """UCR .tsv rows: a label cell, then random cells, tab (sometimes comma) separated."""
    rows = []
    for _ in range(draw(st.integers(0, 8))):
        sep = draw(st.sampled_from(["\t", "\t", ","]))
        rows.append(sep.join([draw(_TS_LABELS), *draw(st.lists(_TS_CELLS, max_size=6))]))
    return ("\n".join(rows) + "\n").encode(draw(st.sampled_from(["utf-8", "cp1252"])), errors="replace")


@FUZZ
@given(data=st.one_of(mutated(_TSV, header=24), messy_tsv()), classes=_SEED_CLASSES)
def test_ucr_tsv_reader(tmp_path, data, classes):
    from selfsup.data.series import load_series

    from selfsup.data.series import is_ucr_tsv

    path = tmp_path / "Seed_TRAIN.tsv"
    path.write_bytes(data)
    (tmp_path / "seed.tsv").write_bytes(data)
    assert isinstance(is_ucr_tsv(tmp_path / "seed.tsv"), bool)  # (the name alone says a _TRAIN.tsv is one)
    ds = series_or_data_error(lambda: load_series(path, classes=classes))
    _series_reread(path, ds)


_ARFF_LINES = st.sampled_from([
    "@relation r", "@attribute a9 numeric", "@attribute a2 REAL", "@attribute rel relational", "@end rel",
    "@attribute class {a,b}", "@attribute class {'x', 'y'}", "@attribute class {a\rb}", "@attribute class {}",
    "@attribute s string", "@attribute d date", "@attribute 'q q' numeric", "@attribute", "% a comment", "",
    "{0 1, 2 3}", "'1,2", "'',a", "\"1,2\\n3,4\",b"])


@st.composite
def messy_arff(draw):
    """An ARFF file in the archive's layout (k numeric attributes, or a relational one of k, then a
    nominal class), with random lines put in, and rows of random cells, mostly of the declared width."""
    relational, width = draw(st.booleans()), draw(st.integers(1, 4))
    steps = [f"@attribute t{k} {draw(st.sampled_from(['numeric', 'real', 'integer']))}" for k in range(width)]
    lines = ["@relation r", *(["@attribute rel relational", *steps, "@end rel"] if relational else steps),
             draw(st.sampled_from(["@attribute class {a,b}", "@attribute class {'x', 'y'}", "@attribute class {1,2,10}"]))]
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(_ARFF_LINES))
    if draw(st.integers(0, 9)):
        lines.append("@data")
    for _ in range(draw(st.integers(0, 6))):
        size = width if draw(st.integers(0, 3)) else draw(st.integers(0, 5))
        channels = [",".join(draw(st.lists(_TS_CELLS, min_size=size, max_size=size)))
                    for _ in range(draw(st.integers(1, 3)) if relational else 1)]
        label = draw(st.sampled_from(["a", "b", "'x'", "y", "1", "10", "1.0", "", "z"]))
        lines.append("'" + "\\n".join(channels) + "'," + label if relational else f"{channels[0]},{label}")
        if not draw(st.integers(0, 5)):
            lines.append(draw(_ARFF_LINES))
    return ("\n".join(lines) + "\n").encode(draw(st.sampled_from(["utf-8", "cp1252"])), errors="replace")


@needs_ucr
@FUZZ
@given(data=st.one_of(mutated(_ARFF[False], header=_header_size(_ARFF[False])),
                      mutated(_ARFF[True], header=_header_size(_ARFF[True])), messy_arff()), classes=_SEED_CLASSES)
def test_arff_reader(tmp_path, data, classes):
    from selfsup.data.series import load_series

    path = tmp_path / "Seed_TRAIN.arff"
    path.write_bytes(data)
    ds = series_or_data_error(lambda: load_series(path, classes=classes))
    _series_reread(path, ds)


_SERIES_ARRAYS = {"npy": _SERIES_NPY, "npz": _series_npz(False), "npz-compressed": _series_npz(True)}


@FUZZ
@given(case=st.sampled_from(sorted(_SERIES_ARRAYS)), data=st.data())
def test_series_array_reader(tmp_path, case, data):
    from selfsup.data.series import load_series

    from selfsup.data.series import is_series_array

    damaged = data.draw(mutated(_SERIES_ARRAYS[case], header=128 if case == "npy" else 64))
    path = tmp_path / f"series.{case[:3]}"
    path.write_bytes(damaged)
    assert isinstance(is_series_array(path), bool)  # the catalogue's test: never an exception
    series_or_data_error(lambda: load_series(path))


_SERIES_DTYPES = st.sampled_from(["<f4", ">f8", "f2", "<f8", "u1", "<i8", ">i4", "?", "c8", "U2", "M8[s]"])
_SERIES_LABELS = st.sampled_from([
    st.integers(-2, 5) | st.sampled_from([2**31, 2**62]), st.floats() | st.sampled_from([1e300, -1e300]),
    st.sampled_from(["a", "b", "é", "", "1"]), st.integers(0, 2**64 - 1)])


@FUZZ
@given(n=st.integers(0, 4), rest=st.lists(st.integers(0, 4), max_size=3).map(tuple), dtype=_SERIES_DTYPES,
       fill=st.sampled_from([0, 1, -1, 0.5, np.nan, np.inf, 1e39, 1e300]), holes=st.integers(0, 3),
       x_key=st.sampled_from(["x", "x_train", "series", "arr_0", "images"]), data=st.data(),
       names=st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c", "a"]), max_size=4),
                       st.lists(st.floats(), max_size=2)),
       classes=st.sampled_from([None, ["a", "b"], ["0", "1"]]))
def test_series_arrays_wrong_dtypes_shapes_and_values(tmp_path, n, rest, dtype, fill, holes, x_key, data, names,
                                                      classes):
    from selfsup.data.series import load_series_arrays

    shape = (n, *rest)
    try:
        with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            x = np.full(shape, fill, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        x = np.zeros(shape, dtype=dtype)
    if x.dtype.kind == "f" and x.size:
        x.reshape(-1)[::max(1, holes)] = np.nan if holes else x.reshape(-1)[0]  # missing values
    arrays = {x_key: x}
    if data.draw(st.integers(0, 3)):  # labels, mostly one per series
        size = max(0, n + data.draw(st.sampled_from([0, 0, 0, 1, -1])))
        arrays["y"] = np.array(data.draw(st.lists(data.draw(_SERIES_LABELS), min_size=size, max_size=size)))
    if names is not None:
        arrays["classes"] = np.array(names)
    np.savez(tmp_path / "a.npz", **arrays)
    np.save(tmp_path / "a.npy", x)
    series_or_data_error(lambda: load_series_arrays(tmp_path / "a.npz", classes=classes))
    series_or_data_error(lambda: load_series_arrays(tmp_path / "a.npy"))


# ================================================================ graphs (data/graph.py)
#
# Seeds: a molecule CSV (SMILES, label, target, an invalid SMILES and a salt among them), a .smi
# file, an edge CSV with a node CSV (and a whitespace edge list), and a graph .npz (node_ptr, x,
# edge_attr, label, target); random arrays for the .npz keys. A kept dataset must satisfy the
# Graphs invariants: offsets start at 0, never decrease and end at the node / edge counts, every
# edge joins two nodes of its own graph, no graph is empty, features are finite, labels index the
# class list (node labels: -1 = none).

_MOLECULES = ("id,smiles,label,target\n"
              "m1,CCO,active,1.5\n"
              "m2,c1ccccc1,inactive,2.25\n"
              "m3,CC(=O)Oc1ccccc1C(=O)O,active,-0.5\n"
              "m4,[Na+].[Cl-],inactive,0\n"
              "m5,C1CC,active,3\n"
              "m6,N#N,inactive,\n"
              "m7,O=C([O-])C[NH3+],active,7\n"
              "m8,C[C@H](N)C(=O)O,inactive,1e3\n"
              "m9,c1ccncc1,active,0.25\n"
              "m10,FC(F)(F)Br,inactive,-2\n").encode()
_SMI = b"SMILES Name\n# a comment\nCCO ethanol\n\nc1ccccc1 benzene ring\nC1CC broken\n[Na+].[Cl-] salt\nN#N\nCN1C=NC2=C1C(=O)N(C(=O)N2C)C caffeine\n"
_MOL_CELLS = st.sampled_from(["CCO", "c1ccccc1", "C1CC", "[Na+].[Cl-]", "C(", "c1cc", "[Xe]", "*", "[*]", "[2H]",
                              "F[Si-2](F)(F)(F)(F)F", "C=1CC=1", "[C@@H](F)(Cl)Br", "", "?", "NA", "1.5", "-3",
                              "1e309", "1e39", "nan", "inf", "x,y", '"', '""', "é", "\r", "a\nb", " 7 ", "\t", ";"])
_SMILES = st.sampled_from(["CCO", "c1ccccc1", "CC(=O)O", "[Na+].[Cl-]", "N#N", "C1CC", "O"])
_MOL_HEADER = st.sampled_from(["smiles", "SMILES", "id", "name", "label", "target", "y", "", "x", "canonical_smiles"])


@st.composite
def messy_molecules(draw):
    """A molecule CSV of random column names and cells (SMILES good and bad, numbers, missing markers, quotes)."""
    header = draw(st.lists(_MOL_HEADER, min_size=1, max_size=4))
    rows = []
    for _ in range(draw(st.integers(0, 10))):  # mostly as wide as the header, SMILES mostly under a SMILES name
        width = len(header) if draw(st.integers(0, 4)) else draw(st.integers(0, 5))
        rows.append([draw(_SMILES if j < len(header) and "smiles" in header[j].lower() and draw(st.integers(0, 3))
                          else _MOL_CELLS) for j in range(width)])
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    return text.encode(draw(st.sampled_from(["utf-8", "cp1252", "utf-16"])), errors="replace")


def assert_wellformed_graphs(ds) -> None:
    from selfsup.data.graph import GraphDataset

    assert isinstance(ds, GraphDataset) and len(ds) > 0 and len(ds.ids) == len(ds)
    g = ds.graphs
    n, v, e = len(g), g.num_nodes, g.num_edges
    assert g.x.dtype == torch.float32 and g.x.dim() == 2 and torch.isfinite(g.x).all()
    assert g.edge_index.dtype == torch.int64 and g.edge_index.shape == (2, e)
    for ptr, total in ((g.node_ptr, v), (g.edge_ptr, e)):
        assert ptr.dtype == torch.int64 and ptr.shape == (n + 1,) and int(ptr[0]) == 0 and int(ptr[-1]) == total
        assert (ptr[1:] >= ptr[:-1]).all()
    assert (g.nodes_per_graph > 0).all()  # an empty graph is skipped and listed, never kept
    if e:  # every edge joins two nodes of the graph that owns it
        owner = torch.repeat_interleave(torch.arange(n), g.edges_per_graph)
        assert ((g.edge_index >= g.node_ptr[owner]) & (g.edge_index < g.node_ptr[owner + 1])).all()
    if g.edge_attr is not None:
        assert g.edge_attr.dtype == torch.float32 and g.edge_attr.dim() == 2 and len(g.edge_attr) == e
        assert torch.isfinite(g.edge_attr).all()
    if ds.labels is not None:
        assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,) and ds.classes is not None
        assert len(set(ds.classes)) == len(ds.classes)
        assert 0 <= int(ds.labels.min()) and int(ds.labels.max()) < len(ds.classes)
    if ds.targets is not None:
        assert ds.targets.dtype == torch.float32 and ds.targets.shape == (n,) and torch.isfinite(ds.targets).all()
    if ds.node_labels is not None:
        assert ds.node_labels.dtype == torch.int64 and ds.node_labels.shape == (v,) and ds.node_classes is not None
        assert int(ds.node_labels.min()) >= -1 and int(ds.node_labels.max()) < len(ds.node_classes)
    if ds.node_ids is not None:
        assert len(ds.node_ids) == v
    batch = g.index(torch.arange(n))  # the batch gather (no Python loop) relies on the offsets
    assert torch.equal(batch.x, g.x) and torch.equal(batch.edge_index, g.edge_index)
    for name, why in ds.skipped:
        f"{name}\t{why}".encode()
    for note in ds.notes:
        note.encode()


def graphs_or_data_error(load, path=None):
    """The dataset `load` gives (well-formed), or None for a one-line DataError; `path`: the catalogue's
    test of it (is_graph_file) gives a bool, never an exception."""
    from selfsup.data.graph import is_graph_file

    if path is not None:
        assert isinstance(is_graph_file(str(path)), bool)
    return dataset_or_data_error(load, assert_wellformed_graphs)


@FUZZ
@given(data=st.one_of(mutated(_MOLECULES, header=24), messy_molecules()), suffix=st.sampled_from([".csv", ".tsv"]))
def test_molecule_csv_reader(tmp_path, data, suffix):
    from selfsup.data.graph import load_graphs

    if suffix == ".tsv":
        data = data.replace(b",", b"\t")
    path = tmp_path / f"mols{suffix}"
    path.write_bytes(data)
    graphs_or_data_error(lambda: load_graphs(path), path)


@FUZZ
@given(data=st.one_of(mutated(_SMI, header=24),
                      st.lists(st.lists(_MOL_CELLS, min_size=1, max_size=3).map(" ".join), max_size=8)
                      .map(lambda lines: ("\n".join(lines) + "\n").encode())))
def test_smi_reader(tmp_path, data):
    from selfsup.data.graph import load_graphs

    path = tmp_path / "mols.smi"
    path.write_bytes(data)
    graphs_or_data_error(lambda: load_graphs(path), path)


_NODE_NAMES = "abcdefgh"
_EDGE_PAIRS = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 5), (5, 3), (6, 7), (0, 6), (1, 1), (3, 2)]
_EDGES_CSV = ("source,target,weight\n" + "".join(f"{_NODE_NAMES[a]},{_NODE_NAMES[b]},{k % 3 + 1}\n"
                                                  for k, (a, b) in enumerate(_EDGE_PAIRS))).encode()
_EDGES_TXT = ("# source target\n" + "".join(f"{a} {b}\n" for a, b in _EDGE_PAIRS)).encode()


def _node_csv(names) -> bytes:
    """id, two features and a label (one node unlabelled) for each node name."""
    return ("id,f1,f2,label\n" + "".join(f"{n},{k * 0.5},{k % 2},{'xy'[k % 2] if k != 3 else ''}\n"
                                         for k, n in enumerate(names))).encode()


_NODES_CSV, _NODES_TXT = _node_csv(_NODE_NAMES), _node_csv(range(8))  # the .txt edge list names its nodes 0..7


@st.composite
def messy_nodes(draw, names: str):
    """A node CSV naming the nodes `names` (now and then one left out or repeated), with random
    feature cells (numbers, beyond float32, missing, text) and labels."""
    ids = [c for c in names if draw(st.integers(0, 9))] + draw(st.lists(st.sampled_from(names), max_size=1))
    cell = st.sampled_from(["0", "1.5", "-2", "1e-40", "1e39", "-1e39", "1e309", "nan", "", "x", " 3 "])
    rows = [f"{i},{draw(cell)},{draw(cell)},{draw(st.sampled_from(['x', 'y', '', '?', 'NA']))}" for i in ids]
    return ("id,f1,f2,label\n" + "".join(r + "\n" for r in rows)).encode()


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["csv", "txt"]),
       damage=st.sampled_from(["edges", "nodes", "both", "messy nodes"]), with_nodes=st.booleans(), directed=st.booleans())
def test_edge_list_reader(tmp_path, data, kind, damage, with_nodes, directed):
    from selfsup.data.graph import load_graphs

    edges = _EDGES_CSV if kind == "csv" else _EDGES_TXT
    nodes = _NODES_CSV if kind == "csv" else _NODES_TXT
    if damage in ("edges", "both"):
        edges = data.draw(mutated(edges, header=24))
    if damage in ("nodes", "both"):
        nodes = data.draw(mutated(nodes, header=16))
    if damage == "messy nodes":
        nodes, with_nodes = data.draw(messy_nodes(_NODE_NAMES if kind == "csv" else "01234567")), True
    (tmp_path / f"edges.{kind}").write_bytes(edges)
    (tmp_path / "nodes.csv").write_bytes(nodes)
    options = {"directed": directed}
    if with_nodes:
        options["nodes"] = tmp_path / "nodes.csv"
    graphs_or_data_error(lambda: load_graphs(tmp_path / f"edges.{kind}", **options), tmp_path / f"edges.{kind}")


def _graph_npz(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(
        buffer, edge_index=np.array([[0, 1, 1, 2, 2, 0, 3, 4, 5, 6], [1, 0, 2, 1, 0, 2, 4, 3, 6, 5]]),
        node_ptr=np.array([0, 3, 3, 5, 7]), x=np.arange(14, dtype=np.float32).reshape(7, 2),
        edge_attr=np.ones((10, 1), np.float32), label=np.array(["ring", "star", "chain", "ring"]),
        target=np.array([1.5, 0.0, 2.5, -1.0]))
    return buffer.getvalue()


@FUZZ
@given(data=st.one_of(mutated(_graph_npz(False), header=64), mutated(_graph_npz(True), header=64)))
def test_graph_npz_reader(tmp_path, data):
    from selfsup.data.graph import load_graphs

    (tmp_path / "g.npz").write_bytes(data)
    graphs_or_data_error(lambda: load_graphs(tmp_path / "g.npz"), tmp_path / "g.npz")


# Huge values are only ones no machine can allocate (a node count or graph id of 2**40 or more), so a
# reader that trusts them fails at once instead of filling the test machine's memory.
_GRAPH_INTS = st.lists(st.integers(-1, 6) | st.sampled_from([2**40, 2**62]), min_size=1, max_size=12)
_GRAPH_DTYPES = st.sampled_from(["<i8", "<i8", "<i8", ">i4", "u1", "<f4", "<f8", "?", "U2", "c8"])
_GRAPH_SHAPES = {"edge_index": [(2, -1), (2, -1), (-1, 2), (-1,), (), (3, -1)], "node_ptr": [(-1,), (-1,), (), (2, -1)],
                 "graph": [(-1,), (-1,), ()], "x": [(-1, 2), (-1,), (-1, 1, 1), ()], "edge_attr": [(-1, 1), (-1,), ()],
                 "label": [(-1,), (-1,), (), (-1, 2)], "target": [(-1,), ()], "edge_ptr": [(-1,)], "other": [(-1,)]}


@st.composite
def graph_array(draw, shapes):
    """An array for one .npz key: one of `shapes` (with sizes 0..5 for -1), an often-integer dtype,
    small values (sorted half the time), now and then a NaN, infinity or value beyond float32."""
    shape = tuple(draw(st.integers(0, 5)) if d == -1 else d for d in draw(st.sampled_from(shapes)))
    values = draw(_GRAPH_INTS)
    if draw(st.booleans()):
        values = sorted(values)
    dtype = draw(_GRAPH_DTYPES)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = np.resize(np.array(values, dtype=np.int64), shape).astype(dtype)
        if array.dtype.kind == "f" and array.size and draw(st.booleans()):
            array.reshape(-1)[draw(st.integers(0, array.size - 1))] = draw(st.sampled_from([np.nan, np.inf, 1e39, 1e300]))
    return array


@st.composite
def graph_arrays(draw):
    """The arrays of a valid graph .npz (up to 4 graphs of up to 6 nodes, some empty; node_ptr, graph or
    neither; optional x, edge_attr, label, target, edge_ptr), then up to two of them replaced by random ones."""
    v = draw(st.integers(1, 6))
    node_ptr = np.array([0, *sorted(draw(st.lists(st.integers(0, v), max_size=3))), v])
    n = len(node_ptr) - 1
    edges = [(draw(st.integers(lo, hi - 1)), draw(st.integers(lo, hi - 1)))
             for lo, hi in zip(node_ptr[:-1], node_ptr[1:]) if hi > lo for _ in range(draw(st.integers(0, 3)))]
    arrays = {"edge_index": np.array(edges, dtype=np.int64).reshape(-1, 2).T}
    e = len(edges)
    form = draw(st.sampled_from(["node_ptr", "graph", "x only"]))
    if form == "node_ptr":
        arrays["node_ptr"] = node_ptr
    elif form == "graph":
        arrays["graph"] = np.repeat(np.arange(n), np.diff(node_ptr))
    if form == "x only" or draw(st.booleans()):
        arrays["x"] = draw(st.sampled_from([np.ones((v, 3), np.float32), np.arange(v, dtype=np.int64)]))
    if draw(st.booleans()):
        arrays["edge_attr"] = np.ones((e, 2), np.float32)
    if draw(st.booleans()):
        arrays["label"] = np.array(draw(st.lists(st.sampled_from(["a", "b", "", "nan"]) | st.integers(-1, 3).map(str),
                                                 min_size=n, max_size=n)))
    if draw(st.booleans()):
        arrays["target"] = np.linspace(-1, 1, n)
    if draw(st.booleans()):
        arrays["edge_ptr"] = draw(st.sampled_from([_edge_ptr(arrays["edge_index"], node_ptr), np.zeros(n + 1, np.int64)]))
    for key in sorted(draw(st.sets(st.sampled_from(sorted(_GRAPH_SHAPES)), max_size=2))):
        arrays[key] = draw(graph_array(_GRAPH_SHAPES[key]))
    return arrays


def _edge_ptr(edge_index: np.ndarray, node_ptr: np.ndarray) -> np.ndarray:
    owner = np.searchsorted(node_ptr, edge_index[0], side="right") - 1
    out = np.zeros(len(node_ptr), np.int64)
    np.cumsum(np.bincount(owner, minlength=len(node_ptr) - 1), out=out[1:])
    return out


@FUZZ
@given(arrays=graph_arrays())
def test_graph_npz_wrong_arrays(tmp_path, arrays):
    from selfsup.data.graph import load_graph_npz

    np.savez(tmp_path / "g.npz", **arrays)
    graphs_or_data_error(lambda: load_graph_npz(tmp_path / "g.npz"))
