"""Time series: the in-memory dataset, and the readers of the UCR/UEA archive's formats.

A series dataset is one float32 tensor ``values`` (N, C, T): N series of C channels, padded to the
longest length T. NaN marks a missing value, and the padding after a shorter series' end: the
views skip it, the backbones mask it, and ``lengths`` (N,) holds each series' observed length (its
last observed step + 1). Labels are optional, as everywhere.

Readers (below the class; the formats, labels and bad-input rules are described there):
:func:`load_series` (a file or a set folder), :func:`load_named_series` (a UCR/UEA set by name,
looked up in :func:`series_places`), :func:`load_ts`, :func:`load_ucr_tsv`, :func:`load_arff`,
:func:`load_series_arrays`; :func:`is_series_array` and :func:`is_ucr_tsv` tell series files from
image arrays and tables without reading them; :func:`series_sets` lists the sets found.
"""
from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError, closest
from ..files import display_path
from .dataset import check_samples


@dataclass
class SeriesDataset:
    """values: (N, C, T) float32, NaN = missing or padding; labels (N,) int64 or None; ids one per series."""

    values: torch.Tensor
    labels: torch.Tensor | None
    ids: list[str]
    name: str
    source: str
    classes: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    modality = "series"
    schema = None  # nothing besides the normalization travels with a series encoder

    def __post_init__(self):
        check_samples(self.values, torch.float32, 3, "(N, C, T)", len(self.values), "series", labels=self.labels,
                      ids=self.ids)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def samples(self) -> torch.Tensor:
        return self.values

    @property
    def channels(self) -> int:
        return self.values.shape[1]

    @property
    def length(self) -> int:
        """T, the padded length."""
        return self.values.shape[2]

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) int64: each series' observed length, its last step with any observed channel + 1."""
        observed = ~torch.isnan(self.values).all(dim=1)  # (N, T)
        steps = torch.arange(1, self.length + 1).expand_as(observed)
        return (steps * observed).max(dim=1).values

    @property
    def num_classes(self) -> int | None:
        if self.labels is None:
            return None
        return len(self.classes) if self.classes is not None else int(self.labels.max()) + 1

    def input_spec(self) -> dict:
        """The backbone arguments the data fixes: the channel count and the padded length."""
        return {"in_channels": self.channels, "length": self.length}

    def normalization(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std over every observed value (NaN left out); std 1 for a constant channel."""
        x = self.values.transpose(0, 1).reshape(self.channels, -1).double()  # (C, N T)
        mean, std = [], []
        for row in x:
            seen = row[~torch.isnan(row)]
            m = float(seen.mean()) if len(seen) else 0.0
            s = float(seen.std()) if len(seen) > 1 else 0.0
            mean.append(m)
            std.append(s if s > 1e-12 and math.isfinite(s) else 1.0)
        return mean, std

    def subset(self, index) -> "SeriesDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return SeriesDataset(self.values[index], None if self.labels is None else self.labels[index],
                             [self.ids[i] for i in index.tolist()], self.name, self.source, self.classes,
                             list(self.skipped), list(self.notes))


# =============================================================================================
# Readers
#
# Formats (what the UCR/UEA archive ships, nothing more):
#
# - ``.ts`` (sktime/aeon format): a header of ``@key value`` lines (``@problemName``,
#   ``@timeStamps``, ``@missing``, ``@univariate``, ``@dimensions``, ``@equalLength``,
#   ``@seriesLength``, ``@classLabel true a b c`` or ``false``), ``#`` comments, then ``@data`` and one
#   series per line: channels separated by ``:``, values by ``,``, the class label last. ``?`` and
#   ``NaN`` are missing values. Unequal lengths are padded with NaN to the longest series (the width
#   is what the file holds: a trailing ``?`` still counts). ``@timeStamps true`` is a DataError (a
#   timestamped ``(t, v)`` row in an untimed file is a skipped row). A file that says
#   ``@equalLength true`` but holds series of different lengths is read anyway, as unequal length
#   padded with NaN, with a note naming the file and two of the lengths (and their lines).
#   ``@targetLabel true`` (regression) files are read without their targets, with a note.
# - ``.tsv`` (UCR 2018 univariate): one series per line, the label first, then the values, tab
#   separated (comma when a line holds no tab); ``NaN`` at the end of a line is the archive's
#   padding for variable-length sets, so the width is the longest series' last observed value.
# - ``.arff`` (Weka, as the archive writes it): univariate = numeric attributes + a nominal class
#   last; multivariate = one relational attribute whose value is ``'c1 values\nc2 values...'`` (a
#   literal backslash-n between channels) + the class. ``?`` is missing; trailing ``?`` is padding.
# - ``.npy`` (N, C, T) or (N, T) of any real dtype; ``.npz`` with ``x`` (or ``x_<split>``, ``X``,
#   ``series``, ``values``, ``data``, ``arr_0``), optional labels ``y`` (integers 0..K-1, or strings)
#   and class names ``classes``.
#
# Labels: the class list is the `classes` argument (the train split's list: pass it when reading
# the test split), else what the header declares (``@classLabel``, the ARFF nominal class), else
# the labels found; sorted in numeric order when every name is a number, else lexicographically. A
# label outside the list is a skipped record. A file without labels gives ``labels=None``.
#
# Broken records never stop a read: a row with the wrong number of channels, a value that is not a
# number, an infinite value, an empty series, a series whose every value is missing or a label
# outside the class list is skipped and listed in ``skipped`` as ``(file:line, reason)`` (arrays:
# ``(file[i], reason)``). Missing values inside a series (before its last observed value) are kept
# as NaN, with a note giving the count; NaN after it is padding. Lengths that vary get a note too. A
# file that cannot be read at all (no ``@data``, no rows, ``@timeStamps true``, an ARFF layout the
# archive does not use, an array of the wrong shape or dtype) is a DataError; so is a file whose
# every record is broken ("has no usable series (e.g. <first reason>)").
# =============================================================================================

SERIES_TEXT_EXTENSIONS = (".ts", ".tsv", ".arff")
SERIES_ARRAY_EXTENSIONS = (".npy", ".npz")
SPLITS = ("train", "test")
ARCHIVE_SITE = "https://www.timeseriesclassification.com"
SERIES_KEYS = ("x", "X", "series", "values", "data", "arr_0")
SERIES_LABEL_KEYS = ("y", "labels", "targets", "Y", "arr_1")
SERIES_CLASS_KEYS = ("classes", "class_names")
_SPLIT_SUFFIX = re.compile(r"_(train|test)$", re.IGNORECASE)
_MISSING = ("?", "nan", "NaN", "NAN")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _Skip(Exception):
    """A broken record: the reason it is skipped."""


def _short(token: str, limit: int = 24) -> str:
    token = token.strip()
    return repr(token if len(token) <= limit else token[:limit] + "...")


def _stem(path: str) -> str:
    """GunPoint for .../GunPoint_TRAIN.ts."""
    return _SPLIT_SUFFIX.sub("", os.path.splitext(os.path.basename(os.path.normpath(path)))[0])


def _read_text(path: str, where: str) -> tuple[str, list[str]]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(f"series file {where} does not exist.", "check the path.") from None
    except IsADirectoryError:
        raise DataError(f"{where} is a folder, not a series file.", "pass a .ts, .tsv or .arff file.") from None
    except OSError as exc:
        raise DataError(f"cannot read {where}: {exc.strerror or exc}.", "check the path and its permissions.") from None
    if b"\x00" in raw:
        raise DataError(f"{where} holds NUL bytes: it is not a text file.", "pass a .ts, .tsv or .arff text file.")
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        return raw.decode("cp1252", errors="replace"), [
            f"{where} is not valid UTF-8 (byte {exc.start}); read it as Windows-1252."]


def _lines(text: str):
    """(line number, stripped text) of every line."""
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line.strip()


def _parse_values(text: str, channel: int, multichannel: bool) -> np.ndarray:
    """One channel's comma-separated values -> float64 array; ``?``/NaN -> NaN; _Skip when broken."""
    text = text.strip()
    if not text:
        return np.empty(0)
    tokens = text.split(",")
    if len(tokens) > 1 and not tokens[-1].strip():
        tokens.pop()  # a trailing comma
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        values = np.empty(len(tokens))
        for j, token in enumerate(tokens):
            token = token.strip()
            if token in _MISSING:
                values[j] = np.nan
                continue
            try:
                values[j] = float(token)
            except ValueError:
                where = f"channel {channel + 1}, value {j + 1}" if multichannel else f"value {j + 1}"
                if token.startswith("("):
                    raise _Skip(f"{where} is a timestamped (t, v) pair: timestamps are not supported") from None
                raise _Skip(f"{where} is not a number: {_short(token)}") from None
    bad = np.isinf(values) | (np.abs(np.nan_to_num(values)) > _FLOAT32_MAX)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        where = f"channel {channel + 1}, value {j + 1}" if multichannel else f"value {j + 1}"
        raise _Skip(f"{where} ({tokens[j].strip()}) is not a finite float32")
    return values


def _is_number(name: str) -> float | None:
    try:
        value = float(name)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def sort_classes(names) -> list[str]:
    """Distinct class names in numeric order when every one is a number, else lexicographic."""
    names = list(dict.fromkeys(str(n) for n in names))
    numbers = [_is_number(n) for n in names]
    if names and all(v is not None for v in numbers):
        return [n for _, n in sorted(zip(numbers, names))]
    return sorted(names)


def _shown(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class _Labeler:
    """Label text -> class index in `classes`; "1.0" matches a class "1" by value."""

    def __init__(self, classes: list[str], origin: str):
        self.classes, self.origin = classes, origin
        self.index = {c: i for i, c in enumerate(classes)}
        self.by_value = {}
        for i, c in enumerate(classes):
            value = _is_number(c)
            if value is not None:
                self.by_value.setdefault(value, i)

    def __call__(self, label: str) -> int:
        if label in self.index:
            return self.index[label]
        value = _is_number(label)
        if value is not None and value in self.by_value:
            return self.by_value[value]
        raise _Skip(f"label {_short(label)} is not one of {self.origin} ({_shown(self.classes)})")


def _finish(rows: list, where: str, source: str, name: str, *, channels: int, labelled: bool,
            classes: list[str] | None, declared: list[str] | None, skipped: list, notes: list,
            width: str = "file", mark: str = "'?' or NaN", missing_extra: str = "") -> SeriesDataset:
    """Rows (line, [channel arrays], label text or None) -> SeriesDataset.

    width "file": T is the longest series as written; "observed": the last observed value (trailing
    NaN is the format's padding). Skips all-empty / all-missing series and labels outside the list.
    """
    kept, lines, label_text = [], [], []
    for line, chans, label in rows:
        if all(len(c) == 0 for c in chans):
            skipped.append((f"{where}:{line}", "empty series (no values)"))
            continue
        if all(np.isnan(c).all() for c in chans):
            skipped.append((f"{where}:{line}", "every value is missing"))
            continue
        kept.append(chans)
        lines.append(line)
        label_text.append(label)
    labels = None
    if labelled:
        if classes is not None:
            labeler = _Labeler(list(classes), "the train split's classes")
        elif declared:
            labeler = _Labeler(sort_classes(declared), "the classes the header declares")
        else:
            labeler = _Labeler(sort_classes(label_text), "the classes")
        index, keep = [], []
        for i, label in enumerate(label_text):
            try:
                index.append(labeler(label))
                keep.append(i)
            except _Skip as why:
                skipped.append((f"{where}:{lines[i]}", str(why)))
        kept, lines = [kept[i] for i in keep], [lines[i] for i in keep]
        labels = torch.tensor(index, dtype=torch.int64)
        classes = labeler.classes
    else:
        classes = None
    skipped.sort(key=lambda item: _line_of(item[0]))
    if not kept:
        first = f" (e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"{where} has no usable series{first}.",
                        "fix the listed rows, or pass another file." if skipped else "pass a file with series in it.")
    if width == "observed":
        ends = [max((int(np.flatnonzero(~np.isnan(c))[-1]) + 1 if (~np.isnan(c)).any() else 0) for c in chans)
                for chans in kept]
    else:
        ends = [max(len(c) for c in chans) for chans in kept]
    length = max(ends)
    values = np.full((len(kept), channels, length), np.nan, dtype=np.float32)
    for i, chans in enumerate(kept):
        for c, v in enumerate(chans):
            n = min(len(v), length)
            values[i, c, :n] = v[:n]
    ds = SeriesDataset(torch.from_numpy(values), labels, [f"{where}:{line}" for line in lines], name, source,
                       classes, skipped, notes)
    _missing_note(ds, where, notes, mark=mark, extra=missing_extra)
    return ds


def _line_of(location: str) -> int:
    tail = location.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _missing_note(ds: SeriesDataset, where: str, notes: list[str], mark: str = "'?' or NaN", extra: str = "") -> None:
    """A note counting the missing values inside the series (NaN before a series' last observed step)."""
    lengths = ds.lengths
    inside = torch.arange(ds.length).expand(len(ds), -1) < lengths[:, None]  # (N, T)
    missing = torch.isnan(ds.values) & inside[:, None, :]
    count = int(missing.sum())
    if count:
        series = int(missing.any(dim=2).any(dim=1).sum())
        notes.append(f"{where}: {count} missing value{'s' if count != 1 else ''} ({mark}) in {series} "
                     f"series {'are' if count != 1 else 'is'} kept as NaN (missing){extra}.")


def _parse_channels(raw: list, channels: int | None, where: str, skipped: list) -> tuple[int, list]:
    """(number, channel texts, label) rows -> (channels, [(number, [values per channel], label)]).

    `channels` None takes the most common count in the file; a row with another count, or a value
    that does not parse, is skipped with the reason (.ts and .arff alike)."""
    if channels is None:
        counts = Counter(len(parts) for _, parts, _ in raw)
        channels = counts.most_common(1)[0][0] if counts else 1
    rows = []
    for number, parts, label in raw:
        if len(parts) != channels:
            skipped.append((f"{where}:{number}", f"has {len(parts)} channel{'s' if len(parts) != 1 else ''}, "
                                                 f"the file's series have {channels}"))
            continue
        try:
            rows.append((number, [_parse_values(p, c, channels > 1) for c, p in enumerate(parts)], label))
        except _Skip as why:
            skipped.append((f"{where}:{number}", str(why)))
    return channels, rows


def _length_notes(rows: list, where: str, declared_equal: bool | None, declared_length: int | None,
                  notes: list[str]) -> None:
    """Notes on lengths that differ from what the header says, or vary (padded with NaN)."""
    sized = [(line, max(len(c) for c in chans)) for line, chans, _ in rows if any(len(c) for c in chans)]
    ragged_channels = next((line for line, chans, _ in rows if len({len(c) for c in chans}) > 1), None)
    if not sized:
        return
    lengths = [n for _, n in sized]
    lo, hi = min(lengths), max(lengths)
    if lo == hi and ragged_channels is not None:
        notes.append(f"{where}: the channels of some series differ in length (e.g. line {ragged_channels}); the "
                     f"shorter ones are padded with NaN to {hi}.")
    elif lo != hi:
        if declared_equal:
            first_line, first = sized[0]
            other_line, other = next((line, n) for line, n in sized if n != first)
            notes.append(f"{where} declares @equalLength true, but its series have different lengths (e.g. "
                         f"{first} values at line {first_line}, {other} at line {other_line}); read as unequal "
                         f"length: the shorter ones are padded with NaN to {hi}.")
        else:
            notes.append(f"{where}: series lengths vary from {lo} to {hi}; the shorter ones are padded with NaN "
                         f"to {hi} (NaN = missing or padding).")
    elif declared_length is not None and declared_length != hi:
        notes.append(f"{where} declares @seriesLength {declared_length}, but its series have {hi} values; read {hi}.")


# ---------------------------------------------------------------------------------------- .ts

def _header_flag(value: str | None) -> bool | None:
    if value is None:
        return None
    word = value.split()[0].lower() if value.split() else ""
    return {"true": True, "false": False}.get(word)


def read_ts_header(path: str, where: str | None = None, text: str | None = None) -> tuple[dict, int | None]:
    """(the header as {lower-case key: value text}, the line number of @data or None). Reads up to @data."""
    where = where or display_path(path)
    header: dict[str, str] = {}
    if text is None:
        try:
            handle = open(path, encoding="utf-8-sig", errors="replace")
        except OSError as exc:
            raise DataError(f"cannot read {where}: {exc.strerror or exc}.", "check the path and its permissions.") from None
        with handle:
            source = ((n, line.strip()) for n, line in enumerate(handle, 1))
            return _scan_header(source, header, where)
    return _scan_header(_lines(text), header, where)


def _scan_header(source, header: dict, where: str) -> tuple[dict, int | None]:
    for number, line in source:
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            header["_first_data_line"] = str(number)
            return header, None
        key, _, rest = line[1:].partition(" ")
        key = key.strip().lower()
        if key == "data":
            return header, number
        header[key] = rest.strip()
    return header, None


def load_ts(path: str, classes: list[str] | None = None, *, name: str | None = None) -> SeriesDataset:
    """A ``.ts`` file of the UCR/UEA archive (see the reader notes above this function's section)."""
    path = os.fspath(path)
    where = display_path(path)
    text, notes = _read_text(path, where)
    header, data_line = read_ts_header(path, where, text)
    if data_line is None:
        early = header.get("_first_data_line")
        raise DataError(
            f"{where} has no @data line" + (f" (line {early} holds data before it)" if early else "")
            + ": it is not a .ts file of the UCR/UEA archive.",
            "put the header lines (@problemName ..., @classLabel ...) first, then a line '@data', then one series "
            "per line.")
    if _header_flag(header.get("timestamps")):
        raise DataError(f"{where} holds timestamped series (@timeStamps true), which are not supported.",
                        "resample the series onto a regular grid and write them without timestamps "
                        "(values separated by ',', channels by ':').")
    labelled = bool(_header_flag(header.get("classlabel")))
    declared = header.get("classlabel", "").split()[1:] if labelled else None
    target = bool(_header_flag(header.get("targetlabel")))
    if target:
        notes.append(f"{where} holds regression targets (@targetLabel true); they are not read (labels=None).")
    dims = header.get("dimensions", "")
    # isdecimal, not isdigit: "²" is a digit that int() refuses (a cp1252 byte in a damaged header)
    channels = int(dims) if dims.isdecimal() and int(dims) > 0 else (1 if _header_flag(header.get("univariate")) else None)
    declared_length = header.get("serieslength", "")
    declared_length = int(declared_length) if declared_length.isdecimal() else None
    skipped: list[tuple[str, str]] = []
    raw = []  # (line, channel texts, label)
    for number, line in _lines(text):
        if number <= data_line or not line or line.startswith("#"):
            continue
        parts = line.split(":")
        label = None
        if labelled or target:
            if len(parts) < 2:
                skipped.append((f"{where}:{number}", "has no class label (the last ':' field)" if labelled
                                else "has no target (the last ':' field)"))
                continue
            label = parts.pop().strip()
            if labelled and not label:
                skipped.append((f"{where}:{number}", "has an empty class label"))
                continue
        raw.append((number, parts, label if labelled else None))
    if not raw and not skipped:
        raise DataError(f"{where} has no series after its @data line.", "pass a file with one series per line after @data.")
    channels, rows = _parse_channels(raw, channels, where, skipped)
    _length_notes(rows, where, _header_flag(header.get("equallength")), declared_length, notes)
    extra = ", although the header says @missing false" if _header_flag(header.get("missing")) is False else ""
    return _finish(rows, where, where, name or _stem(path), channels=channels, labelled=labelled, classes=classes,
                   declared=declared, skipped=skipped, notes=notes, missing_extra=extra)


# --------------------------------------------------------------------------------------- .tsv

def load_ucr_tsv(path: str, classes: list[str] | None = None, *, name: str | None = None) -> SeriesDataset:
    """A UCR 2018 ``.tsv`` file: one univariate series per line, the label first, tab separated;
    ``NaN`` at a line's end is padding (variable-length sets)."""
    path = os.fspath(path)
    where = display_path(path)
    text, notes = _read_text(path, where)
    rows, skipped = [], []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip().lstrip(" ")  # a leading tab is an empty label
        if not line.strip() or line.startswith("#"):
            continue
        label, sep, rest = line.partition("\t" if "\t" in line else ",")
        label = label.strip()
        if not sep or not rest.strip():
            skipped.append((f"{where}:{number}", "has a label but no values" if label else "has no values"))
            continue
        if not label:
            skipped.append((f"{where}:{number}", "has an empty class label (the first field)"))
            continue
        try:
            rows.append((number, [_parse_values(rest.replace("\t", ","), 0, False)], label))
        except _Skip as why:
            skipped.append((f"{where}:{number}", str(why)))
    if not rows and not skipped:
        raise DataError(f"{where} has no series.", "pass a file with one series per line: the label, then the values.")
    trimmed = [(n, [c[: int(np.flatnonzero(~np.isnan(c))[-1]) + 1] if (~np.isnan(c)).any() else c[:0] for c in ch], lab)
               for n, ch, lab in rows]
    _length_notes(trimmed, where, None, None, notes)
    return _finish(rows, where, where, name or _stem(path), channels=1, labelled=True, classes=classes,
                   declared=None, skipped=skipped, notes=notes, width="observed", mark="NaN")


def is_ucr_tsv(path) -> bool:
    """Whether a ``.tsv`` file is a UCR series file rather than a table, without reading it all: its
    name ends in ``_TRAIN.tsv`` / ``_TEST.tsv`` (the archive's names), or its first non-blank line
    has no header, i.e. holds two or more fields that are all numbers (or NaN). A table's first line
    is its header of column names."""
    path = os.fspath(path)
    stem, ext = os.path.splitext(os.path.basename(path))
    if ext.lower() in (".tsv", ".txt") and _SPLIT_SUFFIX.search(stem):
        return True
    try:
        with open(path, "rb") as handle:
            for _ in range(1000):
                raw = handle.readline(1 << 20)
                if not raw:
                    return False
                line = raw.decode("utf-8-sig", errors="replace").strip()
                if line and not line.startswith("#"):
                    break
            else:
                return False
    except OSError:
        return False
    fields = line.split("\t") if "\t" in line else line.split(",")
    if not raw.endswith(b"\n") and len(raw) >= 1 << 20:
        fields = fields[:-1]  # a cut line: its last field may be partial
    return len(fields) >= 2 and all(f.strip() in _MISSING or _is_number(f) is not None for f in fields)


# -------------------------------------------------------------------------------------- .arff

_ATTRIBUTE = re.compile(r"""@attribute\s+('[^']*'|"[^"]*"|\S+)\s*(.*)$""", re.IGNORECASE)


def _nominal(spec: str) -> list[str] | None:
    spec = spec.strip()
    if not (spec.startswith("{") and spec.endswith("}")):
        return None
    import csv

    try:
        cells = next(csv.reader([spec[1:-1]], quotechar="'", skipinitialspace=True), [])
    except csv.Error:  # a carriage return inside the list, a name over csv's field limit: plain commas
        cells = spec[1:-1].split(",")
    return [c.strip().strip("'\"") for c in cells if c.strip()]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def load_arff(path: str, classes: list[str] | None = None, *, name: str | None = None) -> SeriesDataset:
    """A Weka ``.arff`` file as the UCR/UEA archive writes it: numeric attributes + a nominal class
    (univariate), or one relational attribute (``'c1\\nc2...'`` per row) + the class (multivariate)."""
    path = os.fspath(path)
    where = display_path(path)
    text, notes = _read_text(path, where)
    numeric, relational, inner, declared, data_line = 0, None, 0, None, None
    labelled = inside = False  # inside: between @attribute <name> relational and @end <name>
    for number, line in _lines(text):
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if low.startswith("@data"):
            data_line = number
            break
        if low.startswith("@end"):
            inside = False
            continue
        if not low.startswith("@attribute"):
            continue
        match = _ATTRIBUTE.match(line)
        kind = match.group(2).strip() if match else ""
        numeric_kind = kind.lower() in ("numeric", "real", "integer")
        if labelled:
            raise DataError(f"{where}:{number}: an attribute follows the class attribute; the archive's ARFF files "
                            "end with the class.", "write the class attribute last.")
        if inside:
            if not numeric_kind:
                raise DataError(f"{where}:{number}: relational attribute {relational} holds a {kind or '?'} "
                                "attribute; only numeric ones (one per time step) are read.", "use numeric attributes.")
            inner += 1
        elif numeric_kind:
            if relational is not None:
                raise DataError(f"{where}:{number}: a numeric attribute after the relational one.",
                                "keep to the archive's layout: one relational attribute, then the class.")
            numeric += 1
        elif kind.lower() == "relational":
            if numeric or relational is not None:
                raise DataError(f"{where}:{number}: more than one series attribute (a relational attribute besides "
                                "others).", "keep to the archive's layout: one relational attribute, then the class.")
            relational, inside = _unquote(match.group(1)), True
        elif _nominal(kind) is not None:
            declared, labelled = _nominal(kind), True
        else:
            raise DataError(f"{where}:{number}: attribute type {_short(kind)} is not read; the archive's ARFF files "
                            "hold numeric (or relational) attributes and a nominal class.",
                            "convert the file to .ts, or keep to numeric attributes and a {class, list}.")
    if data_line is None:
        raise DataError(f"{where} has no @data line: it is not an ARFF file.",
                        "put the @relation and @attribute lines first, then '@data' and one series per line.")
    multivariate = relational is not None
    if not multivariate and not numeric:
        raise DataError(f"{where} declares no numeric or relational attribute: it holds no series.",
                        "pass an ARFF file with numeric attributes (one per time step) and a class.")
    raw, skipped = [], []
    for number, line in _lines(text):
        if number <= data_line or not line or line.startswith("%"):
            continue
        try:
            if line.startswith("{"):
                raise _Skip("sparse ARFF rows are not supported")
            if multivariate:
                quote = line[0]
                end = line.rfind(quote) if quote in "'\"" else -1
                if end <= 0:
                    raise _Skip("the series is not a quoted relational value ('c1 values\\nc2 values')")
                body, rest = line[1:end], line[end + 1:].strip()
                label = None
                if labelled:
                    if not rest.startswith(",") or not rest[1:].strip():
                        raise _Skip("has no class label after the series")
                    label = _unquote(rest[1:])
                parts = re.split(r"\\n|\n", body)
            else:
                tokens = line.split(",")
                label = _unquote(tokens.pop()) if labelled else None
                if len(tokens) != numeric:
                    raise _Skip(f"has {len(tokens)} values, the header declares {numeric} numeric attributes")
                parts = [",".join(tokens)]
            raw.append((number, parts, label))
        except _Skip as why:
            skipped.append((f"{where}:{number}", str(why)))
    if not raw and not skipped:
        raise DataError(f"{where} has no series after its @data line.", "pass a file with one series per line after @data.")
    channels, parsed = _parse_channels(raw, None, where, skipped)
    rows = []
    for number, chans, label in parsed:
        if multivariate and inner and max(len(c) for c in chans) > inner:
            skipped.append((f"{where}:{number}", f"has {max(len(c) for c in chans)} values in a channel, the header "
                                                 f"declares {inner}"))
            continue
        rows.append((number, chans, label))
    trimmed = [(n, [c[: int(np.flatnonzero(~np.isnan(c))[-1]) + 1] if (~np.isnan(c)).any() else c[:0] for c in ch], lab)
               for n, ch, lab in rows]
    _length_notes(trimmed, where, None, None, notes)
    return _finish(rows, where, where, name or _stem(path), channels=channels, labelled=labelled, classes=classes,
                   declared=declared, skipped=skipped, notes=notes, width="observed", mark="'?'")


# ------------------------------------------------------------------------------- .npy / .npz

def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(handle)
    reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if reader is None:
        raise ValueError(f"npy version {version}")
    shape, _, dtype = reader(handle)
    return tuple(shape), np.dtype(dtype)


def _npz_headers(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of an .npz, from each member's header only (nothing is decompressed past it)."""
    import zipfile

    out = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if member.endswith(".npy"):
                with archive.open(member) as handle:
                    out[member[:-4]] = _npy_header(handle)
    return out


def _series_like(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    # (N, H, W) float with H == W is a stack of square grey images far more often than series with
    # as many channels as steps: it stays an image (data.modality=series reads it as series).
    square = len(shape) == 3 and shape[1] == shape[2]
    return dtype.kind == "f" and len(shape) in (2, 3) and not square


def is_series_array(path) -> bool:
    """Whether an ``.npy``/``.npz`` file holds time series rather than images, from the array header
    alone (no data is read: ``.npy`` through ``np.load(mmap_mode="r")``, ``.npz`` members' headers).

    The rule: a float array (float16/32/64) of 2 or 3 dimensions is a series, (N, T) or (N, C, T),
    unless it is (N, H, H): square grey images. Every other array stays an image: uint8 and other integer arrays of any shape, bool, any 4-D
    array (float (N, C, H, W) images included), and the shapes and dtypes no reader takes (1-D, 5-D,
    complex, object; the image reader reports them). So float images in [0, 1] must be 4-D (N, C, H,
    W) / (N, H, W, C) to be read as images, and integer series go through :func:`load_series_arrays`
    (or are saved as floats). ``data.modality`` (``load_dataset(..., modality=)``) overrides the rule.
    In an ``.npz`` the array
    looked at is the first of series, values (a series array when its shape and dtype fit), images,
    imgs (always images), x_train, x, X, data, arr_0, x_test. Unreadable files give False (the image
    reader then names the damage).
    """
    path = os.fspath(path)
    try:
        if path.lower().endswith(".npz"):
            headers = _npz_headers(path)
            for key in ("series", "values"):
                if key in headers and _series_like(*headers[key]):
                    return True
            if "images" in headers or "imgs" in headers:
                return False
            key = next((k for k in ("x_train", "x", "X", "data", "arr_0", "x_test") if k in headers), None)
            return key is not None and _series_like(*headers[key])
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return isinstance(array, np.ndarray) and _series_like(array.shape, array.dtype)
    except Exception:  # damaged, foreign or object arrays: not a series this reader can take
        return False


def _int_labels(array: np.ndarray, where: str) -> np.ndarray | None:
    """Integer labels from an int array or an integral float array; None when they are names."""
    if array.dtype.kind in "iu":  # clipped, so that a uint64 or 1e300 beyond int64 stays large, not negative
        return np.clip(array, -2**62, 2**62).astype(np.int64)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            raise DataError(f"{where} holds non-integer float labels.", "store integer labels 0..K-1, or class names.")
        return np.clip(array, -2**62, 2**62).astype(np.int64)
    if array.dtype.kind in "US":
        return None
    raise DataError(f"{where} has dtype {array.dtype}; labels must be integers 0..K-1 or strings.",
                    "store one integer label (or class name) per series.")


def load_series_arrays(path, split: str = "train", classes: list[str] | None = None, *,
                       name: str | None = None) -> SeriesDataset:
    """Series from an ``.npy`` array (N, C, T) or (N, T), or an ``.npz`` with the series under
    ``x_<split>`` or x, X, series, values, data, arr_0; labels under ``y_<split>`` or y, labels,
    targets, Y, arr_1 (integers 0..K-1 or class names); class names under classes or class_names.
    NaN is a missing value (trailing NaN: padding); a series holding an infinite value, or no
    observed value, is skipped."""
    path = os.fspath(path)
    where = display_path(path)
    name = name or _stem(path)
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False) if path.lower().endswith(".npy") \
            else np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"array file {where} does not exist.", "check the path.") from None
    except ValueError as exc:
        raise DataError(f"{where} cannot be read without pickle, or is not an array file ({exc}).",
                        "save plain numeric arrays with np.save / np.savez.") from None
    except Exception as exc:
        raise DataError(f"{where} is not a readable .npy/.npz file ({type(exc).__name__}: {exc}).",
                        "save the series with np.save or np.savez.") from None
    y = own_classes = None
    y_where = x_where = where
    try:
        if isinstance(loaded, np.ndarray):
            x = loaded
        else:
            with loaded:
                keys = set(loaded.files)
                x_key = next((k for k in (f"x_{split}", *SERIES_KEYS) if k in keys), None)
                if x_key is None:
                    raise DataError(f"{where} has no series array for split {split!r} (keys: "
                                    f"{', '.join(sorted(keys)) or 'none'}).",
                                    f"store the series under x_{split} or one of: {', '.join(SERIES_KEYS)}.")
                x, x_where = loaded[x_key], f"{where}[{x_key}]"
                y_key = next((k for k in (f"y_{split}", *SERIES_LABEL_KEYS) if k in keys), None)
                if y_key is not None:
                    y, y_where = loaded[y_key], f"{where}[{y_key}]"
                c_key = next((k for k in SERIES_CLASS_KEYS if k in keys), None)
                if c_key is not None:
                    names = loaded[c_key]
                    if names.dtype.kind not in "USiu":
                        raise DataError(f"{where}[{c_key}] has dtype {names.dtype}; class names must be strings.",
                                        "store the class names as a string array.")
                    own_classes = [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c)
                                   for c in names.reshape(-1).tolist()]
    except DataError:
        raise
    except Exception as exc:  # damaged archive member
        raise DataError(f"{where} is damaged ({type(exc).__name__}: {exc}).", "save the arrays again.") from None
    if x.dtype.kind not in "iuf":
        raise DataError(f"{x_where} has dtype {x.dtype}; series must be numbers (float or integer).",
                        "convert the array to float32 before saving it.")
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3:
        raise DataError(f"{x_where} has shape {tuple(x.shape)}; series must be (N, C, T) or (N, T).",
                        "reshape the array to (series, channels, steps).")
    if 0 in x.shape:
        raise DataError(f"{x_where} has shape {tuple(x.shape)} and holds no series.", "pass a non-empty array.")
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32 becomes inf: skipped below
        values = np.asarray(x, dtype=np.float32)
    n = len(values)
    skipped, notes = [], []
    keep = np.ones(n, dtype=bool)
    infinite = np.isinf(values).any(axis=(1, 2))
    empty = np.isnan(values).all(axis=(1, 2))
    reasons = {}
    for i in np.flatnonzero(infinite):
        reasons[int(i)] = "holds an infinite value (or one beyond float32)"
    for i in np.flatnonzero(empty & ~infinite):
        reasons[int(i)] = "every value is missing"
    labels = None
    if y is not None:
        y = np.asarray(y).reshape(-1) if np.asarray(y).ndim == 2 and 1 in np.asarray(y).shape else np.asarray(y)
        if y.ndim != 1 or len(y) != n:
            raise DataError(f"{y_where} has shape {tuple(y.shape)}; labels must be one per series ({n},).",
                            "store one label per series.")
        ints = _int_labels(y, y_where)
        if ints is None or own_classes is not None and classes is not None:  # map by name
            if ints is None:
                names = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in y.tolist()]
            else:
                names = [own_classes[v] if 0 <= v < len(own_classes) else None for v in ints.tolist()]
            class_list = list(classes) if classes is not None else (own_classes or sort_classes(names))
            origin = "the train split's classes" if classes is not None else "the classes"
            labeler = _Labeler(class_list, origin)
            index = np.zeros(n, dtype=np.int64)
            for i, label in enumerate(names):
                try:
                    if label is None:
                        raise _Skip(f"label {int(ints[i])} has no name in {where}[classes]")
                    index[i] = labeler(label)
                except _Skip as why:
                    reasons.setdefault(i, str(why))
            classes = class_list
        else:
            index = ints
            class_list = list(classes) if classes is not None else own_classes
            for i in np.flatnonzero(index < 0):
                reasons.setdefault(int(i), f"negative label {int(index[i])}")
            if class_list is not None:
                for i in np.flatnonzero(index >= len(class_list)):
                    reasons.setdefault(int(i), f"label {int(index[i])} is beyond the {len(class_list)} classes")
            else:  # K = the largest label + 1 classes: a class index, below 2**31 (as the image readers)
                for i in np.flatnonzero(index >= 2**31):
                    reasons.setdefault(int(i), f"label {int(index[i])} is not a class index (0..K-1, below 2**31)")
            classes = class_list
        labels = index
    else:
        classes = None
    for i in sorted(reasons):
        keep[i] = False
        skipped.append((f"{where}[{i}]", reasons[i]))
    if not keep.any():
        raise DataError(f"{x_where} has no usable series (e.g. {skipped[0][0]}: {skipped[0][1]}).",
                        "fix the listed series, or pass another file.")
    index = np.flatnonzero(keep)
    kept = values if keep.all() else values[index]
    tensor = torch.from_numpy(np.array(kept, dtype=np.float32, copy=kept is x or not kept.flags.writeable))
    ds = SeriesDataset(tensor, None if labels is None else torch.from_numpy(labels[index]),
                       [f"{name}/{i}" for i in index.tolist()], name, where, classes, skipped, notes)
    _missing_note(ds, where, notes, mark="NaN")
    return ds


# --------------------------------------------------------------------------- one entry point

def _split_file(directory: str, stem: str, split: str) -> str | None:
    """<stem>_<SPLIT>.ts (else .tsv, .arff) in `directory`, matched case-insensitively."""
    try:
        entries = {e.lower(): e for e in os.listdir(directory)}
    except OSError:
        return None
    for ext in SERIES_TEXT_EXTENSIONS:
        hit = entries.get(f"{stem}_{split}{ext}".lower())
        if hit is not None and os.path.isfile(os.path.join(directory, hit)):
            return os.path.join(directory, hit)
    return None


def _sibling_train(path: str) -> str | None:
    """The train file next to a ``<Name>_TEST.<ext>`` file, if there is one."""
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if not stem.lower().endswith("_test"):
        return None
    directory = os.path.dirname(path) or "."
    hit = _split_file(directory, stem[:-5], "train")
    return hit if hit and os.path.splitext(hit)[1].lower() == ext.lower() else None


def train_classes(path: str) -> list[str] | None:
    """The class list a train file gives its split (the header's declaration when it has one)."""
    path = os.fspath(path)
    low = path.lower()
    if low.endswith(".ts"):
        header, _ = read_ts_header(path)
        if _header_flag(header.get("classlabel")) is False or "classlabel" not in header:
            return None
        names = header["classlabel"].split()[1:]
        if names:
            return sort_classes(names)
    return _read_file(path, "train", None).classes


def _read_file(path: str, split: str, classes) -> SeriesDataset:
    low = path.lower()
    if low.endswith(".ts"):
        return load_ts(path, classes)
    if low.endswith((".tsv", ".txt")):
        return load_ucr_tsv(path, classes)
    if low.endswith(".arff"):
        return load_arff(path, classes)
    if low.endswith(SERIES_ARRAY_EXTENSIONS):
        return load_series_arrays(path, split, classes)
    raise DataError(f"{display_path(path)} is not a series file.",
                    "pass a .ts, .tsv or .arff file of the UCR/UEA archive, or an .npy/.npz array (N, C, T).")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"time-series sets have the splits train and test, not {split!r}.{closest(split, SPLITS)}",
                        "pass split='train' or split='test'.")
    return split


def load_series(path, split: str = "train", classes: list[str] | None = None) -> SeriesDataset:
    """Series from a file (``.ts``, ``.tsv``, ``.arff``, ``.npy``, ``.npz``; `split` picks ``x_<split>``
    in an ``.npz``, and for a ``<Name>_TRAIN`` text file split ``test`` reads the ``<Name>_TEST`` file
    beside it, so that a run trained on the train file finds its test split; otherwise a text file is
    read whatever the split) or from a set folder holding ``<Name>_TRAIN.ts`` / ``<Name>_TEST.ts``
    (`split` picks the file).

    `classes`: the train split's class list (``train.classes``) when reading a test split. When it is
    not given for a ``<Name>_TEST`` file, the class list of ``<Name>_TRAIN`` beside it is used (with a note).
    """
    path = os.path.expanduser(os.fspath(path))
    if os.path.isdir(path):
        split = _check_split(split)
        stems = _folder_sets(path)
        if not stems:
            raise DataError(f"folder {display_path(path)} holds no <Name>_TRAIN / <Name>_TEST series files (.ts, .tsv, "
                            ".arff).", "pass the file itself, or a folder holding a set of the UCR/UEA archive.")
        folder = os.path.basename(os.path.normpath(path)).lower()
        stem = next((s for s in stems if s.lower() == folder), sorted(stems)[0])
        return _load_pair(path, stem, split, classes, stem)
    if not os.path.exists(path):
        raise DataError(f"series file {display_path(path)} does not exist.", "check the path.")
    note = None
    stem, ext = os.path.splitext(os.path.basename(path))
    if split == "test" and stem.lower().endswith("_train") and not path.lower().endswith(SERIES_ARRAY_EXTENSIONS):
        hit = _split_file(os.path.dirname(path) or ".", stem[:-6], "test")
        if hit and os.path.splitext(hit)[1].lower() == ext.lower():  # <Name>_TRAIN.ts -> <Name>_TEST.ts
            path = hit
    if classes is None and not path.lower().endswith(SERIES_ARRAY_EXTENSIONS):
        sibling = _sibling_train(path)
        if sibling is not None:
            classes = train_classes(sibling)
            if classes is not None:
                note = f"{display_path(path)}: class list taken from the train split {display_path(sibling)}."
    ds = _read_file(path, split, classes)
    if note:
        ds.notes.insert(0, note)
    return ds


def _folder_sets(directory: str) -> dict[str, dict[str, str]]:
    """{stem: {split: file}} for the <stem>_TRAIN/_TEST series files in `directory`."""
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return {}
    sets: dict[str, dict[str, str]] = {}
    for ext in reversed(SERIES_TEXT_EXTENSIONS):  # .ts wins over .tsv over .arff
        for entry in entries:
            stem, e = os.path.splitext(entry)
            match = _SPLIT_SUFFIX.search(stem)
            if e.lower() != ext or match is None:
                continue
            full = os.path.join(directory, entry)
            if os.path.isfile(full):
                sets.setdefault(stem[: match.start()], {})[match.group(1).lower()] = full
    return sets


def _load_pair(directory: str, stem: str, split: str, classes, name: str) -> SeriesDataset:
    target = _split_file(directory, stem, split)
    if target is None:
        present = sorted(_folder_sets(directory).get(stem, {}))
        raise DataError(f"time-series set {name!r} has no {split} split: {display_path(directory)} holds "
                        f"{', '.join(present) or 'no split'} but no {stem}_{split.upper()}.ts (.tsv, .arff).",
                        f"copy {stem}_{split.upper()}.ts from the archive ({ARCHIVE_SITE}) into {display_path(directory)}.")
    if classes is None and split != "train":
        train = _split_file(directory, stem, "train")
        if train is not None:
            classes = train_classes(train)
    ds = _read_file(target, split, classes)
    ds.name = name
    return ds


# ------------------------------------------------------------------------------ named sets

def _package_data_dirs() -> list[tuple[str, str]]:
    """(<pkg>/datasets/data, pkg) for an installed aeon or sktime, found without importing it."""
    import importlib.util

    out = []
    for package in ("aeon", "sktime"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        for location in list(spec.submodule_search_locations or []):
            data = os.path.join(location, "datasets", "data")
            if os.path.isdir(data) and (data, package) not in out:
                out.append((data, package))
    return out


def series_places(root: str | None = None) -> list[tuple[str, str]]:
    """(folder holding <Name>/ set folders, origin) in lookup order: `root` and `root/ucr`,
    ``$SELFSUP_DATA`` and ``$SELFSUP_DATA/ucr``, ``/usr/share/datasets/ucr``, the user cache's ``ucr``,
    then the data folders of an installed aeon or sktime (``<pkg>/datasets/data``)."""
    from .catalogue import SYSTEM_DIR, search_dirs

    places = search_dirs(os.fspath(root) if root else None)
    fixed = {os.path.expanduser(SYSTEM_DIR), places[-1]}  # system folder and user cache: only their ucr/
    env = os.environ.get("SELFSUP_DATA")
    out: list[tuple[str, str]] = []
    for place in places:
        origin = ("root" if root and place == os.path.expanduser(os.fspath(root)) else
                  "$SELFSUP_DATA" if env and place == os.path.expanduser(env) else
                  "system" if place == os.path.expanduser(SYSTEM_DIR) else "cache")
        layouts = [os.path.join(place, "ucr")] if place in fixed and origin in ("system", "cache") \
            else [place, os.path.join(place, "ucr")]
        for layout in layouts:
            if (layout, origin) not in out:
                out.append((layout, origin))
    return out + _package_data_dirs()


def _parse_name(name: str) -> str:
    text = os.fspath(name).strip()
    low = text.lower()
    for prefix in ("ucr:", "uea:"):
        if low.startswith(prefix):
            return text[len(prefix):].strip()
    return text


def _entry(directory: str, wanted: str) -> str | None:
    """The entry of `directory` named `wanted`, case-insensitively (exact spelling first)."""
    if os.path.isdir(os.path.join(directory, wanted)):
        return wanted
    try:
        return next((e for e in sorted(os.listdir(directory)) if e.lower() == wanted.lower()
                     and os.path.isdir(os.path.join(directory, e))), None)
    except OSError:
        return None


def find_named_series(name: str, root: str | None = None) -> tuple[str, str] | None:
    """(set folder, file stem) of the first place holding the set `name`, or None. The set folder is
    ``<place>/<Name>``; a variant such as ``JapaneseVowels_eq`` is also found in ``<place>/JapaneseVowels``.
    `root` may also be the set folder itself."""
    stem = _parse_name(name)
    if not stem or any(sep in stem for sep in ("/", "\\")) or stem in (".", ".."):
        return None
    folders = [stem] + ([stem.rsplit("_", 1)[0]] if "_" in stem.strip("_") else [])
    if root:
        base = os.path.expanduser(os.fspath(root))
        real = _stem_in(base, stem)
        if real is not None:
            return base, real
    for place, _ in series_places(root):
        for folder in folders:
            entry = _entry(place, folder)
            if entry is None:
                continue
            real = _stem_in(os.path.join(place, entry), stem)
            if real is not None:
                return os.path.join(place, entry), real
    return None


def _stem_in(directory: str, stem: str) -> str | None:
    """The real spelling of `stem` when `directory` holds a train or test file of it."""
    sets = _folder_sets(directory) if os.path.isdir(directory) else {}
    return next((s for s in sets if s.lower() == stem.lower()), None)


def load_named_series(name: str, split: str = "train", root: str | None = None,
                      classes: list[str] | None = None) -> SeriesDataset:
    """A set of the UCR/UEA archive by name (``GunPoint``, ``gunpoint``, ``ucr:GunPoint``), looked up
    in :func:`series_places` order. The test split is read with the train split's class list (or
    `classes` when given). A missing set is a DataError naming the places and how to get the archive."""
    split = _check_split(split)
    found = find_named_series(name, root)
    if found is None:
        raise _not_found(_parse_name(name), split, root)
    directory, stem = found
    return _load_pair(directory, stem, split, classes, stem)


def _not_found(name: str, split: str, root: str | None) -> DataError:
    places = series_places(root)
    shown = ", ".join(display_path(p) for p, origin in places if origin not in ("aeon", "sktime"))
    packages = [origin for _, origin in places if origin in ("aeon", "sktime")]
    shown += (f", and the {' and '.join(packages)} data folder{'s' if len(packages) > 1 else ''}" if packages
              else " (no aeon or sktime data folder is installed)")
    known = [row["name"] for row in series_sets(root)]
    if root:
        dest = os.path.join(os.path.expanduser(os.fspath(root)), "ucr")
    elif os.environ.get("SELFSUP_DATA"):
        dest = os.path.join(os.environ["SELFSUP_DATA"], "ucr")
    else:
        dest = next(p for p, origin in places if origin == "cache")
    return DataError(
        f"time-series set {name!r} ({split}) was not found: looked for {name}/{name}_{split.upper()}.ts (or .tsv, "
        f".arff) in {shown}.{closest(name, known)}",
        f"download it from the UCR/UEA archive ({ARCHIVE_SITE}) and unzip it so that "
        f"{display_path(os.path.join(dest, name, name + '_' + split.upper() + '.ts'))} exists"
        + ("" if root or os.environ.get("SELFSUP_DATA") else " (or into a folder named by $SELFSUP_DATA or --root)")
        + ".")


def _peek(path: str) -> dict:
    """channels, length and classes of a series file from its header (and first row), cheaply."""
    info = {"channels": None, "length": None, "classes": None}
    low = path.lower()
    try:
        if low.endswith(".ts"):
            header, data_line = read_ts_header(path)
            dims = header.get("dimensions", "")
            if dims.isdigit():
                info["channels"] = int(dims)
            elif _header_flag(header.get("univariate")):
                info["channels"] = 1
            equal = _header_flag(header.get("equallength"))
            if equal is False:
                info["length"] = "variable"
            elif equal and header.get("serieslength", "").isdigit():
                info["length"] = int(header["serieslength"])
            if _header_flag(header.get("classlabel")) and header["classlabel"].split()[1:]:
                info["classes"] = len(set(header["classlabel"].split()[1:]))
            elif _header_flag(header.get("classlabel")) is False or "classlabel" not in header:
                info["classes"] = 0
            if data_line is not None and (info["channels"] is None or info["length"] is None):
                first = _first_row(path, data_line)
                if first is not None:
                    parts = first.split(":")
                    if _header_flag(header.get("classlabel")) or _header_flag(header.get("targetlabel")):
                        parts = parts[:-1]
                    if info["channels"] is None:
                        info["channels"] = len(parts)
                    if info["length"] is None and equal is not False:
                        info["length"] = max(len([t for t in p.split(",") if t.strip()]) for p in parts)
        elif low.endswith(".tsv"):
            first = _first_row(path, 0)
            if first is not None:
                info["channels"] = 1
                info["length"] = len(first.replace("\t", ",").split(",")) - 1
        elif low.endswith(".arff"):
            info.update(_peek_arff(path))
    except (OSError, DataError, ValueError):
        pass
    return info


def _peek_arff(path: str) -> dict:
    """channels, length (the attributes per channel: the padded width) and classes of an ARFF header."""
    steps, relational, classes, data_line = 0, False, None, None
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            low = line.strip().lower()
            if low.startswith("@data"):
                data_line = number
                break
            match = _ATTRIBUTE.match(line.strip()) if low.startswith("@attribute") else None
            if match is None:
                continue
            kind = match.group(2).strip()
            if kind.lower() in ("numeric", "real", "integer"):
                steps += 1
            elif kind.lower() == "relational":
                relational = True
            elif _nominal(kind) is not None:
                classes = len(_nominal(kind))
    channels = 1
    if relational and data_line is not None:
        first = _first_row(path, data_line)
        channels = len(re.split(r"\\n", first)) if first else None
    return {"channels": channels, "length": steps or None, "classes": classes or 0}


def _first_row(path: str, after: int) -> str | None:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if number > after and line and not line.startswith(("#", "@", "%")):
                return line
    return None


def series_sets(root: str | None = None) -> list[dict]:
    """One dict per series set found in :func:`series_places` (the first place wins for a name):
    name, splits, where (the set folder), origin (root, $SELFSUP_DATA, system, cache, aeon, sktime),
    format (ts, tsv, arff), channels, length (an int, "variable", or None when the header does not
    say), classes (the count declared, 0 for unlabelled, None when unknown), status (one line). Reads
    headers only."""
    rows, seen = [], set()
    folders: list[tuple[str, str]] = []
    if root:  # root may be a set folder itself
        folders.append((os.path.expanduser(os.fspath(root)), "root"))
    for place, origin in series_places(root):
        try:
            entries = sorted(os.listdir(place))
        except OSError:
            continue
        folders += [(os.path.join(place, e), origin) for e in entries if os.path.isdir(os.path.join(place, e))]
    for folder, origin in folders:
        for stem, files in sorted(_folder_sets(folder).items()):
            if stem.lower() in seen:
                continue
            seen.add(stem.lower())
            first = files.get("train") or files.get("test")
            info = _peek(first)
            bits = [f"{info['channels']} channel{'s' if info['channels'] != 1 else ''}" if info["channels"] else None,
                    f"length {info['length']}" if info["length"] else None,
                    f"{info['classes']} classes" if info["classes"] else None]
            detail = ", ".join(b for b in bits if b)
            rows.append({"name": stem, "splits": [s for s in SPLITS if s in files], "where": folder,
                         "origin": origin, "format": os.path.splitext(first)[1].lstrip(".").lower(), **info,
                         "status": f"found in {display_path(folder)}" + (f" ({detail})" if detail else "")})
    return rows
