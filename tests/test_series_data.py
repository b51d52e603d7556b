"""Time-series readers (data/series.py): the UCR/UEA .ts, .tsv and .arff formats, .npy/.npz arrays,
the named-set lookup and the catalogue's fallback to it, and the bad inputs each reader must
survive (skipped rows listed as file:line, notes, one-line DataErrors).

The nine shared sets (``shared/datasets/ucr``) are read with the shapes their README gives; the
.tsv and .arff readers are checked against the .ts reading of the same sets, converted here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data.catalogue import describe_series, load_dataset
from selfsup.data.series import (
    SeriesDataset,
    find_named_series,
    is_series_array,
    is_ucr_tsv,
    load_arff,
    load_named_series,
    load_series,
    load_series_arrays,
    load_ts,
    load_ucr_tsv,
    series_places,
    sort_classes,
)
from selfsup.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ucr"
needs_shared = pytest.mark.skipif(not (SHARED / "GunPoint" / "GunPoint_TRAIN.ts").is_file(),
                                  reason="the shared UCR sets are not here")

# name: (train count, test count, channels, length or None for variable, classes) as in the README
README = {
    "GunPoint": (50, 150, 1, 150, 2),
    "ItalyPowerDemand": (67, 1029, 1, 24, 2),
    "ArrowHead": (36, 175, 1, 251, 3),
    "OSULeaf": (200, 242, 1, 427, 6),
    "ACSF1": (100, 100, 1, 1460, 10),
    "PickupGestureWiimoteZ": (50, 50, 1, None, 10),
    "PLAID": (537, 537, 1, None, 11),
    "BasicMotions": (40, 40, 6, 100, 4),
    "JapaneseVowels": (270, 370, 12, None, 9),
}


@pytest.fixture(autouse=True)
def isolated_places(tmp_path_factory, monkeypatch):
    """No $SELFSUP_DATA and an empty user cache: lookups see only what a test puts there."""
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


_CACHE: dict = {}


def shared(name: str, split: str) -> SeriesDataset:
    if (name, split) not in _CACHE:
        _CACHE[name, split] = load_named_series(name, split, root=str(SHARED.parent))
    return _CACHE[name, split]


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Fix:" in text, text
    return text


def write_ts(path: Path, rows: list[str], *, header: str | None = None, labels: str = "a b") -> Path:
    header = header if header is not None else (
        f"# a comment\n@problemName Tiny\n@timeStamps false\n@missing false\n@univariate true\n"
        f"@equalLength true\n@seriesLength 3\n@classLabel true {labels}\n@data\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def data_rows(path: Path) -> list[tuple[list[str], str]]:
    """(channel texts, label) of every series line of a labelled .ts file, as written."""
    out, seen = [], False
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not seen:
            seen = line.lower().startswith("@data")
            continue
        if line and not line.startswith("#"):
            *chans, label = line.split(":")
            out.append((chans, label))
    return out


def assert_same_series(a: SeriesDataset, b: SeriesDataset) -> None:
    assert a.values.shape == b.values.shape
    assert torch.equal(torch.isnan(a.values), torch.isnan(b.values))
    assert torch.equal(torch.nan_to_num(a.values), torch.nan_to_num(b.values))
    assert torch.equal(a.labels, b.labels) and a.classes == b.classes


# ---------------------------------------------------------------------------- the shared sets

@needs_shared
@pytest.mark.parametrize("name", list(README))
def test_shared_sets_have_the_readme_shapes(name):
    n_train, n_test, channels, length, n_classes = README[name]
    train, test = shared(name, "train"), shared(name, "test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert train.channels == test.channels == channels
    assert train.values.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert len(train.classes) == n_classes and test.classes == train.classes
    assert int(train.labels.max()) < n_classes and int(test.labels.max()) < n_classes
    assert train.skipped == [] and test.skipped == []
    assert train.name == name and train.ids[0].startswith(str(SHARED / name))
    for ds in (train, test):
        lengths = ds.lengths
        assert int(lengths.max()) == ds.length  # padded to the longest, no further
        if length is not None:
            assert ds.length == length and bool((lengths == length).all())
            assert not torch.isnan(ds.values).any() and ds.notes == []
        else:  # variable length: NaN after each series' end, and a note saying so
            assert int(lengths.min()) < ds.length
            i = int(lengths.argmin())
            assert torch.isnan(ds.values[i, :, int(lengths[i]):]).all()
            assert not torch.isnan(ds.values[i, :, :int(lengths[i])]).any()
            assert any("lengths vary" in n and "padded with NaN" in n for n in ds.notes)
    if name == "JapaneseVowels":  # README: 7-29
        both = torch.cat([train.lengths, test.lengths])
        assert (int(both.min()), int(both.max())) == (7, 29)


@needs_shared
def test_class_order_is_numeric_or_lexicographic():
    assert shared("BasicMotions", "train").classes == ["Badminton", "Running", "Standing", "Walking"]
    # the _eq file declares "1 10 2 3 ..." (text order): read in numeric order
    eq = load_named_series("PickupGestureWiimoteZ_eq", "train", root=str(SHARED.parent))
    assert eq.classes == [str(i) for i in range(1, 11)] == shared("PickupGestureWiimoteZ", "train").classes
    assert torch.equal(eq.labels, shared("PickupGestureWiimoteZ", "train").labels)
    assert eq.length == 361 and shared("JapaneseVowels", "train").length == 26
    assert sort_classes(["10", "2", "-1", "1.5"]) == ["-1", "1.5", "2", "10"]
    assert sort_classes(["b", "10", "a"]) == ["10", "a", "b"]


@needs_shared
def test_values_are_the_files_numbers():
    gun = shared("GunPoint", "train")
    chans, label = data_rows(SHARED / "GunPoint" / "GunPoint_TRAIN.ts")[0]
    expected = torch.tensor([float(v) for v in chans[0].split(",")], dtype=torch.float32)
    assert torch.equal(gun.values[0, 0], expected) and gun.classes[int(gun.labels[0])] == label
    motions = shared("BasicMotions", "test")
    chans, label = data_rows(SHARED / "BasicMotions" / "BasicMotions_TEST.ts")[3]
    assert torch.equal(motions.values[3, 5], torch.tensor([float(v) for v in chans[5].split(",")]).float())
    assert motions.classes[int(motions.labels[3])] == label


# ------------------------------------------------------------------------- .tsv and .arff

def _to_tsv(source: Path, target: Path, width: int | None = None) -> Path:
    lines = []
    for chans, label in data_rows(source):
        values = chans[0].split(",")
        values += ["NaN"] * ((width or len(values)) - len(values))  # the 2018 archive's padding
        lines.append("\t".join([label, *values]))
    target.write_text("\n".join(lines) + "\n")
    return target


def _to_arff(source: Path, target: Path, classes: list[str], width: int) -> Path:
    rows = data_rows(source)
    channels = len(rows[0][0])
    out = [f"@relation {source.stem}"]
    steps = [f"@attribute att{t} numeric" for t in range(width)]
    if channels == 1:
        out += steps
    else:
        out += ["@attribute relationalAtt relational", *["  " + s for s in steps], "@end relationalAtt"]
    out += ["@attribute target {" + ",".join(classes) + "}", "", "@data"]
    for chans, label in rows:
        padded = [",".join(c.split(",") + ["?"] * (width - len(c.split(",")))) for c in chans]
        out.append(f"{padded[0]},{label}" if channels == 1 else "'" + "\\n".join(padded) + f"',{label}")
    target.write_text("\n".join(out) + "\n")
    return target


@needs_shared
@pytest.mark.parametrize("name, split, width", [("GunPoint", "TRAIN", None), ("PLAID", "TEST", 1400)])
def test_tsv_reads_the_same_values_as_ts(tmp_path, name, split, width):
    ts = shared(name, split.lower())
    path = _to_tsv(SHARED / name / f"{name}_{split}.ts", tmp_path / f"{name}_{split}.tsv", width)
    assert is_ucr_tsv(path)
    tsv = load_ucr_tsv(path, classes=ts.classes)
    assert_same_series(tsv, ts)  # NaN padding to 1400 is padding: the width is the longest series
    assert tsv.skipped == [] and not any("missing value" in n for n in tsv.notes)
    assert load_series(path, classes=ts.classes).length == ts.length


@needs_shared
@pytest.mark.parametrize("name, split, width", [("GunPoint", "TEST", 150), ("BasicMotions", "TRAIN", 100),
                                                ("JapaneseVowels", "TRAIN", 29)])
def test_arff_reads_the_same_values_as_ts(tmp_path, name, split, width):
    ts = shared(name, split.lower())
    path = _to_arff(SHARED / name / f"{name}_{split}.ts", tmp_path / f"{name}_{split}.arff", ts.classes, width)
    arff = load_arff(path)
    assert_same_series(arff, ts)  # JapaneseVowels: '?' padding to 29, read back to the longest (26)
    assert arff.skipped == [] and not any("missing value" in n for n in arff.notes)


def test_tsv_and_arff_skip_broken_rows(tmp_path):
    tsv = tmp_path / "Toy_TRAIN.tsv"
    tsv.write_text("1\t0.5\t0.25\t0.125\n2\t1\tx\t3\n\t1\t2\t3\n2\t1\tNaN\t3\n-1\t4\t5\tNaN\n")
    ds = load_ucr_tsv(tsv)
    assert ds.classes == ["-1", "1", "2"] and ds.labels.tolist() == [1, 2, 0]
    assert ds.skipped == [(f"{tsv}:2", "value 2 is not a number: 'x'"),
                          (f"{tsv}:3", "has an empty class label (the first field)")]
    assert ds.length == 3 and int(ds.lengths[2]) == 2
    assert ds.notes == [f"{tsv}: series lengths vary from 2 to 3; the shorter ones are padded with NaN to 3 "
                        "(NaN = missing or padding).",
                        f"{tsv}: 1 missing value (NaN) in 1 series is kept as NaN (missing)."]
    arff = tmp_path / "Toy.arff"
    arff.write_text("% comment\n@relation Toy\n@attribute a1 numeric\n@attribute a2 numeric\n"
                    "@attribute class {'x','y'}\n@data\n1,2,x\n1,2,3,y\n?,2,y\n1,2,z\n")
    ds = load_arff(arff)
    assert ds.classes == ["x", "y"] and ds.labels.tolist() == [0, 1] and ds.length == 2
    assert ds.notes == [f"{arff}: 1 missing value ('?') in 1 series is kept as NaN (missing)."]
    assert [s[0] for s in ds.skipped] == [f"{arff}:8", f"{arff}:10"]
    assert ds.skipped[0][1] == "has 3 values, the header declares 2 numeric attributes"
    assert "label 'z' is not one of the classes the header declares (x, y)" == ds.skipped[1][1]
    with pytest.raises(DataError, match="has no @data line") as exc:
        load_arff(write_ts(tmp_path / "bad.arff", [], header="@relation r\n@attribute a numeric\n"))
    one_line(exc)


def test_tsv_with_a_header_is_a_table_not_a_series(tmp_path):
    table = tmp_path / "table.tsv"
    table.write_text("label\tx\ty\n1\t2\t3\n")
    series = tmp_path / "plain.tsv"
    series.write_text("1\t2\t3\n")
    assert not is_ucr_tsv(table) and is_ucr_tsv(series)


# ---------------------------------------------------------------------------- .npy / .npz

def test_npy_with_nan_keeps_missing_values_and_skips_broken_series(tmp_path):
    x = np.arange(5 * 2 * 6, dtype=np.float64).reshape(5, 2, 6)
    x[0, 1, 2] = np.nan  # missing, inside the series
    x[1, :, 4:] = np.nan  # padding: series 1 has length 4
    x[2] = np.nan  # nothing observed
    x[3, 0, 0] = np.inf
    path = tmp_path / "series.npy"
    np.save(path, x)
    assert is_series_array(path)
    ds = load_series(path)
    assert ds.values.shape == (3, 2, 6) and ds.labels is None and ds.ids == ["series/0", "series/1", "series/4"]
    assert ds.lengths.tolist() == [6, 4, 6] and torch.isnan(ds.values[0, 1, 2])
    assert ds.skipped == [(f"{path}[2]", "every value is missing"),
                          (f"{path}[3]", "holds an infinite value (or one beyond float32)")]
    assert ds.notes == [f"{path}: 1 missing value (NaN) in 1 series is kept as NaN (missing)."]
    two_d = tmp_path / "flat.npy"
    np.save(two_d, np.ones((4, 9), dtype=np.int32))  # integers: not claimed as series, but readable as such
    assert not is_series_array(two_d) and load_series(two_d).values.shape == (4, 1, 9)


def test_npz_labels_and_class_names(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 3, 10)).astype(np.float32)
    names = tmp_path / "names.npz"
    np.savez(names, x=x, y=np.array(["walk", "run", "walk", "sit", "run", "walk"]))
    ds = load_series(names)
    assert ds.classes == ["run", "sit", "walk"] and ds.labels.tolist() == [2, 0, 2, 1, 0, 2]
    assert torch.equal(ds.values, torch.from_numpy(x))
    test = load_series_arrays(names, classes=["run", "walk"])  # the train split's classes
    assert test.labels.tolist() == [1, 0, 1, 0, 1] and test.skipped == [
        (f"{names}[3]", "label 'sit' is not one of the train split's classes (run, walk)")]
    ints = tmp_path / "ints.npz"
    np.savez(ints, x_train=x[:4, 0], y_train=np.array([0, 1, 1, 0]), x_test=x[4:, 0], y_test=np.array([1, 0]),
             classes=np.array(["neg", "pos"]))
    train, test = load_series(ints, "train"), load_series(ints, "test")
    assert train.values.shape == (4, 1, 10) and train.classes == ["neg", "pos"] and test.labels.tolist() == [1, 0]


def test_is_series_array_rule(tmp_path):
    cases = {
        "float_nct.npy": (np.zeros((2, 3, 8), np.float32), True),
        "float_nt.npy": (np.zeros((2, 8)), True),
        "float16_nt.npy": (np.zeros((2, 8), np.float16), True),
        "int_nt.npy": (np.zeros((2, 8), np.int64), False),
        "uint8_nt.npy": (np.zeros((2, 8), np.uint8), False),
        "uint8_nhw.npy": (np.zeros((2, 8, 8), np.uint8), False),
        "int_nhw.npy": (np.zeros((2, 8, 8), np.int32), False),
        "float_nchw.npy": (np.zeros((2, 1, 8, 8), np.float32), False),
        "bool_nt.npy": (np.zeros((2, 8), bool), False),
        "one_d.npy": (np.zeros(8), False),
    }
    for name, (array, expected) in cases.items():
        np.save(tmp_path / name, array)
        assert is_series_array(tmp_path / name) is expected, name
    np.savez_compressed(tmp_path / "series.npz", x=np.zeros((2, 3, 8), np.float32), y=np.zeros(2, np.int64))
    np.savez(tmp_path / "images.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.zeros(2, np.int64))
    np.savez(tmp_path / "named.npz", images=np.zeros((2, 8, 8), np.float32))
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    assert is_series_array(tmp_path / "series.npz")
    assert not is_series_array(tmp_path / "images.npz") and not is_series_array(tmp_path / "named.npz")
    assert not is_series_array(tmp_path / "broken.npy") and not is_series_array(tmp_path / "missing.npy")


# ------------------------------------------------------------------------------ bad input

def test_ragged_file_that_claims_equal_length_is_padded_with_a_note(tmp_path):
    path = write_ts(tmp_path / "Ragged_TRAIN.ts", ["1,2,3:a", "4,5:b", "6,7,8:a"])
    ds = load_ts(path)
    assert ds.values.shape == (3, 1, 3) and ds.lengths.tolist() == [3, 2, 3]
    assert torch.isnan(ds.values[1, 0, 2]) and ds.skipped == []
    assert ds.notes == [f"{path} declares @equalLength true, but its series have different lengths (e.g. 3 values "
                        f"at line 10, 2 at line 11); read as unequal length: the shorter ones are padded with NaN to 3."]


def test_missing_values_are_kept_as_nan_with_a_count(tmp_path):
    path = write_ts(tmp_path / "Gaps_TRAIN.ts", ["1,?,3:a", "NaN,5,nan:b", "7,8,9:a"])
    ds = load_ts(path)
    assert ds.values.shape == (3, 1, 3) and len(ds.skipped) == 0
    assert torch.isnan(ds.values[0, 0, 1]) and torch.isnan(ds.values[1, 0, 0])
    # the trailing nan of line 11 ends that series early: it is not counted as missing inside it
    assert ds.lengths.tolist() == [3, 2, 3]
    assert ds.notes == [f"{path}: 2 missing values ('?' or NaN) in 2 series are kept as NaN (missing), "
                        "although the header says @missing false."]


def test_broken_rows_are_skipped_with_file_line_and_reason(tmp_path):
    header = ("@problemName Two\n@univariate false\n@dimensions 2\n@equalLength true\n@seriesLength 3\n"
              "@classLabel true 2 1 10\n@data\n")
    rows = ["1,2,3:4,5,6:1", "1,2,3:1", "1,2,3:4,5,6:7,8,9:2", "1,x,3:4,5,6:2", "1,2,3:4,oops,6:10",
            "1,2,3:4,5,inf:1", "(0,1),(1,2):(0,3),(1,4):1", ":::1", "1,2,3:4,5,6:", "1,2,3:4,5,6:99", ":  :2",
            "?,?,?:?,?,?:1", "1,2,3:4,5,6:1.0"]
    path = write_ts(tmp_path / "Two_TRAIN.ts", rows, header=header)
    ds = load_ts(path)
    assert ds.classes == ["1", "2", "10"] and ds.labels.tolist() == [0, 0]  # "1.0" is class "1"
    assert ds.values.shape == (2, 2, 3) and ds.ids == [f"{path}:8", f"{path}:20"]
    assert ds.skipped == [
        (f"{path}:9", "has 1 channel, the file's series have 2"),
        (f"{path}:10", "has 3 channels, the file's series have 2"),
        (f"{path}:11", "channel 1, value 2 is not a number: 'x'"),
        (f"{path}:12", "channel 2, value 2 is not a number: 'oops'"),
        (f"{path}:13", "channel 2, value 3 (inf) is not a finite float32"),
        (f"{path}:14", "channel 1, value 1 is a timestamped (t, v) pair: timestamps are not supported"),
        (f"{path}:15", "has 3 channels, the file's series have 2"),
        (f"{path}:16", "has an empty class label"),
        (f"{path}:17", "label '99' is not one of the classes the header declares (1, 2, 10)"),
        (f"{path}:18", "empty series (no values)"),
        (f"{path}:19", "every value is missing"),
    ]


def test_files_without_data_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="has no @data line") as exc:
        load_ts(write_ts(tmp_path / "a.ts", ["1,2,3:a"], header="@problemName A\n@classLabel true a\n"))
    assert "line 3 holds data before it" in one_line(exc)
    with pytest.raises(DataError, match="has no series after its @data line") as exc:
        load_ts(write_ts(tmp_path / "b.ts", ["", "# nothing"]))
    one_line(exc)
    with pytest.raises(DataError, match=r"has no usable series \(e.g. .*c.ts:10: value 2 is not a number") as exc:
        load_ts(write_ts(tmp_path / "c.ts", ["1,x,3:a", "1,2,3:q"]))
    one_line(exc)
    with pytest.raises(DataError, match="timestamped series") as exc:
        load_ts(write_ts(tmp_path / "d.ts", ["(0,1),(1,2):a"], header="@timeStamps true\n@classLabel true a\n@data\n"))
    one_line(exc)
    with pytest.raises(DataError, match="does not exist") as exc:
        load_series(tmp_path / "nowhere.ts")
    one_line(exc)
    with pytest.raises(DataError, match="no usable series") as exc:
        np.save(tmp_path / "nan.npy", np.full((2, 5), np.nan))
        load_series(tmp_path / "nan.npy")
    one_line(exc)


def test_unlabelled_files_have_no_labels(tmp_path):
    for header in ("@classLabel false\n@data\n", "@problemName U\n@data\n"):
        ds = load_ts(write_ts(tmp_path / "U.ts", ["1,2,3", "4,5,6,7"], header=header))
        assert ds.labels is None and ds.classes is None and ds.num_classes is None
        assert ds.values.shape == (2, 1, 4) and any("lengths vary from 3 to 4" in n for n in ds.notes)


def test_test_split_is_read_with_the_train_classes(tmp_path):
    write_ts(tmp_path / "Toy" / "Toy_TRAIN.ts", ["1,2,3:b", "4,5,6:a"], labels="b a")
    test_file = write_ts(tmp_path / "Toy" / "Toy_TEST.ts", ["1,2,3:c", "4,5,6:a", "1,1,1:b"], labels="c b a")
    train = load_named_series("Toy", "train", root=str(tmp_path))
    test = load_named_series("toy", "test", root=str(tmp_path))
    assert train.classes == test.classes == ["a", "b"] and test.labels.tolist() == [0, 1]
    assert test.skipped == [(f"{test_file}:10", "label 'c' is not one of the train split's classes (a, b)")]
    # a file path: the train file beside it gives the class list, with a note
    direct = load_series(test_file)
    assert direct.classes == ["a", "b"] and direct.notes[0].startswith(f"{test_file}: class list taken from")
    assert load_series(tmp_path / "Toy", "test").classes == ["a", "b"]  # a set folder
    with pytest.raises(DataError, match="splits train and test") as exc:
        load_named_series("Toy", "unlabeled", root=str(tmp_path))
    one_line(exc)


# Found by tests/test_fuzz_readers.py: each of these raised another exception, or kept a label no
# class list can hold, before the reader was fixed.

def test_header_counts_that_are_digits_but_not_decimal_are_ignored(tmp_path):
    """'²' (a cp1252 byte in a damaged header) is str.isdigit() but int() refuses it: ValueError."""
    path = write_ts(tmp_path / "Sup.ts", ["1,2,3:a", "4,5,6:b"],
                    header="@dimensions \u00b2\n@seriesLength \u00b2\n@classLabel true a b\n@data\n")
    ds = load_ts(path)
    assert ds.values.shape == (2, 1, 3) and ds.labels.tolist() == [0, 1]


def test_arff_class_list_with_a_carriage_return(tmp_path):
    """A lone carriage return in the nominal list made csv raise _csv.Error (new-line character seen)."""
    path = tmp_path / "Cr.arff"
    path.write_bytes(b"@relation r\n@attribute a1 numeric\n@attribute class {a\rb,c}\n@data\n1,c\n2,a\rb\n")
    ds = load_arff(path)
    assert ds.classes == ["a\rb", "c"] and ds.labels.tolist() == [1, 0]


def test_npz_labels_beyond_a_class_index_are_skipped(tmp_path):
    """Integer labels without class names: 2**62 was kept (num_classes 2**62 + 1); 1e300 and a uint64
    beyond int64 turned into a negative label. All are skipped and listed, like a negative label."""
    x = np.ones((4, 1, 3), np.float32)
    for y in (np.array([0, 2**62, 1, 2**31]), np.array([0, 1e300, 1, 2.0**31]),
              np.array([0, 2**64 - 1, 1, 2**31], np.uint64)):
        np.savez(tmp_path / "big.npz", x=x, y=y)
        ds = load_series_arrays(tmp_path / "big.npz")
        assert ds.labels.tolist() == [0, 1] and ds.num_classes == 2 and ds.ids == ["big/0", "big/2"]
        assert [w for w, _ in ds.skipped] == [f"{tmp_path / 'big.npz'}[1]", f"{tmp_path / 'big.npz'}[3]"]
        assert all("is not a class index (0..K-1, below 2**31)" in why for _, why in ds.skipped)
    np.savez(tmp_path / "big.npz", x=x, y=np.array([0, 2**31 - 1, 1, 1]))  # the largest class index is kept
    assert load_series_arrays(tmp_path / "big.npz").num_classes == 2**31


# --------------------------------------------------------------------------- named lookup

def _fake_set(folder: Path, name: str, value: float = 1.0) -> Path:
    for split in ("TRAIN", "TEST"):
        write_ts(folder / name / f"{name}_{split}.ts", [f"{value},2,3:a", "4,5,6:b"])
    return folder / name


@needs_shared
def test_named_sets_resolve_from_root_in_both_layouts():
    direct = load_named_series("gunpoint", "test", root=str(SHARED))  # root/<Name>
    nested = load_named_series("ucr:GunPoint", "test", root=str(SHARED.parent))  # root/ucr/<Name>
    itself = load_named_series("GunPoint", "test", root=str(SHARED / "GunPoint"))  # root is the set folder
    assert_same_series(direct, nested)
    assert_same_series(direct, itself)
    assert direct.name == "GunPoint" and len(direct) == 150


@needs_shared
def test_load_dataset_falls_back_to_the_named_sets(monkeypatch):
    ds = load_dataset("GunPoint", split="test", root=str(SHARED.parent))
    assert isinstance(ds, SeriesDataset) and len(ds) == 150 and ds.classes == ["1", "2"]
    monkeypatch.setenv("SELFSUP_DATA", str(SHARED.parent))
    assert load_dataset("ucr:basicmotions").values.shape == (40, 6, 100)
    with pytest.raises(DataError, match=r"^mnist \(train\)"):  # a catalogue name still wins
        load_dataset("mnist", root=str(SHARED.parent))


def test_selfsup_data_is_searched_in_both_layouts(tmp_path, monkeypatch):
    _fake_set(tmp_path / "env" / "ucr", "Nested", 10.0)
    _fake_set(tmp_path / "env", "Flat", 20.0)
    _fake_set(tmp_path / "root", "Flat", 30.0)
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path / "env"))
    assert float(load_named_series("nested").values[0, 0, 0]) == 10.0
    assert float(load_named_series("FLAT").values[0, 0, 0]) == 20.0
    assert float(load_named_series("Flat", root=str(tmp_path / "root")).values[0, 0, 0]) == 30.0  # root first
    assert [o for _, o in series_places(str(tmp_path / "root"))][:4] == ["root", "root", "$SELFSUP_DATA", "$SELFSUP_DATA"]


def test_an_installed_aeon_data_folder_is_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "aeon"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('aeon must not be imported')\n")
    _fake_set(package / "datasets" / "data", "FakeAeonSet", 7.0)
    monkeypatch.delitem(__import__("sys").modules, "aeon", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ds = load_named_series("FakeAeonSet", "test")
    assert float(ds.values[0, 0, 0]) == 7.0
    assert find_named_series("fakeaeonset") == (str(package / "datasets" / "data" / "FakeAeonSet"), "FakeAeonSet")
    rows = {r["name"]: r for r in describe_series()}
    assert rows["FakeAeonSet"]["origin"] == "aeon" and rows["FakeAeonSet"]["splits"] == ["train", "test"]


def test_a_missing_name_says_where_it_looked_and_how_to_get_it(tmp_path):
    _fake_set(tmp_path / "ucr", "GunPoint")
    with pytest.raises(DataError) as exc:
        load_named_series("GunPont", "test", root=str(tmp_path))
    text = one_line(exc)
    assert f"looked for GunPont/GunPont_TEST.ts (or .tsv, .arff) in {tmp_path}, {tmp_path}/ucr" in text
    assert "/usr/share/datasets/ucr" in text and "Did you mean 'GunPoint'?" in text
    assert "www.timeseriesclassification.com" in text and f"{tmp_path}/ucr/GunPont/GunPont_TEST.ts" in text
    with pytest.raises(DataError, match="time-series set 'Nope'"):
        load_dataset("ucr:Nope", root=str(tmp_path))
    with pytest.raises(DataError, match="no dataset or path 'Nope'"):  # unprefixed: the catalogue's error
        load_dataset("Nope", root=str(tmp_path))
    (tmp_path / "ucr" / "GunPoint" / "GunPoint_TEST.ts").unlink()
    with pytest.raises(DataError, match="has no test split") as exc:
        load_named_series("GunPoint", "test", root=str(tmp_path))
    one_line(exc)


@needs_shared
def test_describe_series_lists_the_shared_sets():
    rows = {r["name"]: r for r in describe_series(str(SHARED.parent))}
    assert set(README) <= set(rows) and {"JapaneseVowels_eq", "PickupGestureWiimoteZ_eq"} <= set(rows)
    for name, (_, _, channels, length, classes) in README.items():
        row = rows[name]
        assert row["splits"] == ["train", "test"] and row["where"] == str(SHARED / name) and row["format"] == "ts"
        assert (row["channels"], row["length"], row["classes"]) == (channels, length or "variable", classes), name
        assert row["status"].startswith(f"found in {SHARED / name}")
    assert rows["JapaneseVowels_eq"]["length"] == 25


def test_describe_series_reads_tsv_and_arff_headers(tmp_path):
    (tmp_path / "ucr" / "Uni").mkdir(parents=True)
    (tmp_path / "ucr" / "Uni" / "Uni_TRAIN.tsv").write_text("1\t0.5\t0.25\tNaN\n2\t1\t2\t3\n")
    (tmp_path / "ucr" / "Multi").mkdir()
    (tmp_path / "ucr" / "Multi" / "Multi_TEST.arff").write_text(
        "@relation Multi\n@attribute rel relational\n@attribute t0 numeric\n@attribute t1 numeric\n@end rel\n"
        "@attribute class {a,b,c}\n@data\n'1,2\\n3,4\\n5,?',a\n")
    rows = {r["name"]: r for r in describe_series(str(tmp_path))}
    assert {k: rows["Uni"][k] for k in ("splits", "format", "channels", "length", "origin")} == {
        "splits": ["train"], "format": "tsv", "channels": 1, "length": 3, "origin": "root"}
    assert (rows["Multi"]["splits"], rows["Multi"]["channels"], rows["Multi"]["length"], rows["Multi"]["classes"]) == (
        ["test"], 3, 2, 3)
    assert load_named_series("multi", "test", root=str(tmp_path)).values.shape == (1, 3, 2)
    itself = describe_series(str(tmp_path / "ucr" / "Uni"))  # root is the set folder
    assert itself[0]["name"] == "Uni" and itself[0]["where"] == str(tmp_path / "ucr" / "Uni")
