"""Tables: CSV/TSV and parquet files read into a :class:`TableDataset`.

A table becomes one float32 matrix (N, F), a column per feature: numeric columns hold their values
(a missing value is filled with the train median of its column), categorical columns hold integer
codes (0 = missing or a category the training table did not have, 1..K = the K categories, most
frequent first). The encoding is a :class:`TableSchema`, inferred from the training table and
reused for every other split and for new data (it travels in the exported encoder), so a
category gets the same code everywhere.

Which columns are numeric: every column whose non-missing values all parse as finite numbers,
except for at most ``max_bad_fraction`` of them (those rows are broken and skipped); ``categorical``
forces a column to be categorical (codes such as zip codes), ``numeric`` forces the other way.
The label column (``label``; by default a column named label, target, class or y, if there is
one) is always categorical; rows without a label are skipped. A freshly inferred table says what
was inferred in its ``notes`` (the trainer prints them): one summary line, and a line for each
close call or surprise (mostly numbers read as categories, text in a numeric column, capped
categories, an empty column, a label that looks continuous) naming the ``--set data.numeric=[...]``
/ ``data.categorical=[...]`` that declares the column. A read with a ``schema`` infers nothing and
adds no such notes.

Broken rows never stop a read: a CSV row with the wrong number of fields, a field that is not
text (NUL bytes), a non-number in a numeric column, a missing label or a label the schema does not
know is skipped, counted and listed in ``skipped`` as ``(file:line, reason)``, as corrupt images
are. A file that cannot be read at all (empty, no header, no data rows, duplicate column names,
damaged parquet) is a DataError naming the file and the fix. A file that is not valid UTF-8 is
read as Windows-1252 (every byte is a character there) with a note.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError, closest
from ..files import display_path
from .dataset import check_samples

TABLE_EXTENSIONS = (".csv", ".tsv", ".tab", ".parquet", ".pq")
MISSING = frozenset({"", "?", "na", "n/a", "nan", "null", "none", "-"})  # compared after strip + lower
LABEL_NAMES = ("label", "target", "class", "y")
MAX_FIELD = 1 << 20  # bytes in one CSV field; a longer one makes its row broken (a runaway quote, a binary file)


@dataclass(frozen=True)
class Column:
    """One feature column. numeric: `fill` replaces missing values; categorical: code k + 1 is
    ``categories[k]``, code 0 is missing or unseen."""

    name: str
    kind: str  # "numeric" | "categorical"
    categories: tuple[str, ...] = ()
    fill: float = 0.0

    @property
    def cardinality(self) -> int:
        """Number of codes of a categorical column (categories + the missing code); 0 for numeric."""
        return len(self.categories) + 1 if self.kind == "categorical" else 0

    def to_dict(self) -> dict:
        out = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["categories"] = list(self.categories)
        else:
            out["fill"] = self.fill
        return out


@dataclass(frozen=True)
class TableSchema:
    """How a table's rows become feature vectors and labels (see the module docstring)."""

    columns: tuple[Column, ...]
    label: str | None = None
    classes: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        return {"columns": [c.to_dict() for c in self.columns], "label": self.label,
                "classes": None if self.classes is None else list(self.classes)}

    @classmethod
    def from_dict(cls, data: dict) -> "TableSchema":
        columns = tuple(Column(c["name"], c["kind"], tuple(c.get("categories", ())), float(c.get("fill", 0.0)))
                        for c in data["columns"])
        classes = data.get("classes")
        return cls(columns, data.get("label"), None if classes is None else tuple(classes))


@dataclass
class TableDataset:
    """values: (N, F) float32 (numeric values and categorical codes, see :class:`TableSchema`);
    labels: (N,) int64 or None; ids: one string per row (``<file>:<line>``).

    `skipped` lists ``(file:line, reason)`` for broken rows; `notes` says how the file was read
    when that is worth knowing (an encoding fallback); `source` is the file.
    """

    values: torch.Tensor
    labels: torch.Tensor | None
    ids: list[str]
    name: str
    source: str
    schema: TableSchema
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    modality = "table"

    def __post_init__(self):
        check_samples(self.values, torch.float32, 2, "(N, F)", len(self.values), "rows", labels=self.labels, ids=self.ids)
        if self.values.shape[1] != len(self.schema.columns):
            raise ValueError(f"{self.values.shape[1]} value columns for {len(self.schema.columns)} schema columns")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def samples(self) -> torch.Tensor:
        return self.values

    @property
    def classes(self) -> list[str] | None:
        return None if self.schema.classes is None else list(self.schema.classes)

    @property
    def num_classes(self) -> int | None:
        return None if self.labels is None else len(self.schema.classes)

    @property
    def cardinalities(self) -> list[int]:
        return [c.cardinality for c in self.schema.columns]

    def input_spec(self) -> dict:
        """The backbone arguments the data fixes: the column count and each column's codes."""
        return {"in_channels": len(self.schema.columns), "cardinalities": self.cardinalities}

    def normalization(self) -> tuple[list[float], list[float]]:
        """Per-column mean and std of the numeric columns; categorical codes pass unchanged (0, 1)."""
        mean, std = [], []
        for j, column in enumerate(self.schema.columns):
            if column.kind == "numeric":
                x = self.values[:, j].double()
                mean.append(float(x.mean()))
                spread = float(x.std()) if len(x) > 1 else 0.0
                std.append(spread if spread > 1e-12 and math.isfinite(spread) else 1.0)
            else:
                mean.append(0.0)
                std.append(1.0)
        return mean, std

    def subset(self, index) -> "TableDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return TableDataset(self.values[index], None if self.labels is None else self.labels[index],
                            [self.ids[i] for i in index.tolist()], self.name, self.source, self.schema,
                            list(self.skipped), list(self.notes))


def is_table_file(path: str) -> bool:
    return path.lower().endswith(TABLE_EXTENSIONS)


# ---------------------------------------------------------------------------------------------
# Reading: file -> header + string/number columns, with broken rows set aside


def _decode(raw: bytes, where: str) -> tuple[str, list[str]]:
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        note = (f"{where} is not valid UTF-8 (byte {exc.start}); read it as Windows-1252. "
                "Re-save it as UTF-8 if its text looks wrong.")
        return raw.decode("cp1252", errors="replace"), [note]


def _delimiter(path: str, text: str) -> str:
    if path.lower().endswith((".tsv", ".tab")):
        return "\t"
    sample = text[:65536]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_csv(path: str, where: str) -> tuple[list[str], dict[str, list], list[str], list, list[str]]:
    """(header, columns as lists of str, row ids, skipped, notes) of a delimited text file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise DataError(f"cannot read {where}: {exc.strerror or exc}.", "check the path and its permissions.") from None
    if not raw.strip():
        raise DataError(f"{where} is empty.", "pass a CSV file with a header row and data rows.")
    text, notes = _decode(raw, where)
    delimiter = _delimiter(path, text)
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = None
        while header is None:
            try:
                row = next(reader)
            except StopIteration:
                raise DataError(f"{where} has no header row.", "put the column names in the first line.") from None
            except csv.Error as exc:
                raise DataError(f"{where}: the header row cannot be parsed ({exc}).",
                                "put the column names, separated by commas, in the first line.") from None
            if any(cell.strip() for cell in row):
                header = [cell.strip() for cell in row]
        if any("\x00" in h for h in header):
            raise DataError(f"{where} has NUL bytes in its header: it is not a text table.", "pass a CSV file.")
        header = [h or f"column_{j + 1}" for j, h in enumerate(header)]
        _check_header(header, where)
        width = len(header)
        has_nul = "\x00" in text
        rows, ids, skipped = [], [], []
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                skipped.append((f"{where}:{line}", f"cannot be parsed ({exc})"))
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if len(row) != width:
                skipped.append((f"{where}:{line}", f"has {len(row)} fields, the header has {width}"))
                continue
            if has_nul and any("\x00" in cell for cell in row):
                skipped.append((f"{where}:{line}", "contains a NUL byte"))
                continue
            rows.append(row)
            ids.append(f"{where}:{line}")
    finally:
        csv.field_size_limit(limit)
    columns = {name: [row[j] for row in rows] for j, name in enumerate(header)}
    return header, columns, ids, skipped, notes


def _read_parquet(path: str, where: str) -> tuple[list[str], dict[str, list], list[str], list, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{where} cannot be read as parquet ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).",
                        "check that the file is complete, or re-export it.") from None
    try:
        header = [str(name) for name in table.column_names]
    except UnicodeDecodeError as exc:  # a damaged footer: pyarrow decodes the names only when asked
        raise DataError(f"{where} has a column name that is not valid UTF-8 ({exc.reason} at byte {exc.start}): "
                        "the file's footer is damaged.", "check that the file is complete, or re-export it.") from None
    _check_header(header, where)
    columns = {}
    for name, column in zip(header, table.columns):
        kind = column.type
        try:  # values are decoded lazily: a damaged page shows up only here
            if pa.types.is_integer(kind) or pa.types.is_floating(kind):
                columns[name] = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
            elif pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind) \
                    or pa.types.is_dictionary(kind):
                columns[name] = ["" if v is None else str(v) for v in column.to_pylist()]
            else:
                raise DataError(f"{where}: column {name!r} has type {kind}, which is not a number, text or boolean.",
                                "drop or convert that column before saving the table.")
        except (pa.ArrowException, UnicodeDecodeError, ValueError, OverflowError) as exc:
            raise DataError(f"{where}: column {name!r} cannot be decoded ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}).",
                            "check that the file is complete, or re-export it.") from None
    ids = [f"{where}:{i}" for i in range(table.num_rows)]
    if table.num_rows == 0:
        raise DataError(f"{where} has no rows.", "pass a table with data rows.")
    return header, columns, ids, [], []


def _check_header(header: list[str], where: str) -> None:
    seen, duplicates = set(), []
    for name in header:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise DataError(f"{where} has duplicate column names: {', '.join(map(repr, duplicates))}.",
                        "give every column its own name in the header.")


# ---------------------------------------------------------------------------------------------
# Encoding: columns -> schema, values and labels


@dataclass
class _Parsed:
    """One column, parsed once per distinct value: row i has text[inverse[i]], and so on."""

    text: list[str]  # stripped
    inverse: np.ndarray  # (N,) index into the distinct values
    missing: np.ndarray  # (U,) bool
    number: np.ndarray  # (U,) float64, NaN for missing and for text that is not a finite number

    def rows(self, per_value: np.ndarray) -> np.ndarray:
        return per_value[self.inverse]


# Values are stored as float32: a number beyond its range would become inf there, so it counts as
# not a finite number (found by the parquet fuzz test: a damaged page decoded to 1e300-like values).
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _to_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if abs(value) <= FLOAT32_MAX else math.nan  # NaN and +-inf fail the test too


def _number_text(value: float) -> str:
    if not math.isfinite(value):
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _parse(values) -> _Parsed:
    if isinstance(values, np.ndarray):  # a numeric parquet column; NaN = null
        uniq, inverse = np.unique(values, return_inverse=True)
        number = uniq.astype(np.float64)
        number[~(np.abs(number) <= FLOAT32_MAX)] = np.nan
        return _Parsed([_number_text(v) for v in uniq], inverse.reshape(-1), np.isnan(number), number)
    import pandas as pd

    inverse, uniq = pd.factorize(np.array(values, dtype=object), use_na_sentinel=False)  # hashing, not sorting
    text = [v.strip() for v in uniq]
    missing = np.array([t.lower() in MISSING for t in text], dtype=bool)
    number = np.array([_to_float(t) for t in text], dtype=np.float64)
    number[missing] = np.nan
    return _Parsed(text, inverse.reshape(-1), missing, number)


def _sorted_classes(values) -> tuple[str, ...]:
    unique = sorted(set(values))
    try:  # numeric labels in numeric order (2 before 10)
        return tuple(sorted(unique, key=float))
    except ValueError:
        return tuple(unique)


def _infer_column(name: str, parsed: _Parsed, kind: str | None, max_categories: int,
                  max_bad_fraction: float) -> Column:
    counts = np.bincount(parsed.inverse, minlength=len(parsed.text))
    present = int(counts[~parsed.missing].sum())
    bad = int(counts[np.isnan(parsed.number) & ~parsed.missing].sum())
    if kind == "numeric" or (kind is None and present and bad <= max_bad_fraction * present):
        numbers = parsed.rows(parsed.number)
        ok = numbers[~np.isnan(numbers)]
        return Column(name, "numeric", fill=float(np.median(ok)) if len(ok) else 0.0)
    totals: dict[str, int] = {}
    for text, miss, count in zip(parsed.text, parsed.missing, counts):
        if not miss and count:
            totals[text] = totals.get(text, 0) + int(count)
    ranked = sorted(totals, key=lambda v: (-totals[v], v))[:max_categories]
    return Column(name, "categorical", tuple(ranked))


def _names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")


def _setting(option: str, name: str) -> str:
    """The exact `--set` that declares column `name` (a YAML list, shell-quoted when it must be)."""
    import shlex

    import yaml

    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", name) is not None
    try:
        plain = plain and yaml.safe_load(f"[{name}]") == [name]
    except yaml.YAMLError:
        plain = False
    value = f"data.{option}=[{name}]" if plain else shlex.quote(f"data.{option}=[{json.dumps(name)}]")
    return f"--set {value}"


def _percent(part: int, whole: int) -> str:
    share = 100 * part / max(whole, 1)
    return f"{share:.1f}%" if share >= 0.1 or share == 0 else f"{share:.1g}%"


MANY_CLASSES = 100  # a label with more classes than this, mostly numbers, looks like a continuous target


def _inference_notes(where: str, n_rows: int, columns: tuple[Column, ...], parsed: dict, forced: dict,
                     label: str | None, classes, max_categories: int) -> list[str]:
    """What was inferred for each column, in one summary line, plus a line for each column whose
    kind was a close call or a surprise, each naming the column, the evidence and the override:
    a column read as categorical although most of its values are numbers, a numeric column with
    text in it (those rows are skipped), a categorical column with more than `max_categories`
    values, an empty column, a label that looks like a continuous target. A declared column gets
    no note on its kind."""
    numeric = [c.name for c in columns if c.kind == "numeric"]
    categorical = [f"{c.name} {len(c.categories)}" for c in columns if c.kind == "categorical"]
    summary = (f"read {where}: {n_rows} rows, {len(columns)} feature columns: {len(numeric)} numeric"
               + (f" ({_names(numeric)})" if numeric else "") + f", {len(categorical)} categorical"
               + (f" with their category counts ({_names(categorical)})" if categorical else "")
               + (f"; label {label!r} ({len(classes)} classes)" if label else "; no label column (--set data.label=NAME names one)")
               + ". Declare a column's kind with --set data.numeric=[NAME] or --set data.categorical=[NAME].")
    notes = [summary]
    for column in columns:
        declared = column.name in forced  # its kind was not guessed: no kind note
        p = parsed[column.name]
        counts = np.bincount(p.inverse, minlength=len(p.text))
        seen = (counts > 0) & ~p.missing
        present = int(counts[seen].sum())
        text_values = seen & np.isnan(p.number)
        bad = int(counts[text_values].sum())
        if not present:
            notes.append(f"column {column.name!r} has no values (every row is missing there): it carries nothing; "
                         "drop it from the table.")
            continue

        def evidence() -> str:
            shown = [repr(p.text[k][:20]) for k in np.flatnonzero(text_values)[:3]]  # in order of appearance
            return (f"{bad} of {present} values ({_percent(bad, present)}) "
                    f"{'is not a number' if bad == 1 else 'are not numbers'}, e.g. {', '.join(shown)}")

        if declared:
            pass
        elif column.kind == "categorical" and 0 < bad <= 0.5 * present:
            notes.append(f"column {column.name!r} is read as categorical ({len(column.categories)} categories) although "
                         f"most of its values are numbers: {evidence()}. If it is numeric, pass "
                         f"{_setting('numeric', column.name)} (rows with text there are then skipped).")
        elif column.kind == "numeric" and bad:
            notes.append(f"column {column.name!r} is read as numeric, but {evidence()}: "
                         f"{'that row is' if bad == 1 else 'those rows are'} skipped (listed with the broken rows). "
                         f"If it is categorical, pass {_setting('categorical', column.name)}.")
        if column.kind == "categorical":
            distinct = int(seen.sum())
            if distinct > max_categories:
                notes.append(f"column {column.name!r} has {distinct} distinct values; the {max_categories} most "
                             f"frequent are categories, the other {distinct - max_categories} get code 0, as a "
                             "missing value does" + (" (an identifier? drop it from the table)" if distinct >= 0.9 * present
                                                     else "") + ".")
    if label and classes is not None and len(classes) > MANY_CLASSES:
        numbers = sum(not math.isnan(_to_float(c)) for c in classes)
        if numbers >= 0.5 * len(classes):
            notes.append(f"label {label!r} has {len(classes)} distinct values, mostly numbers, and each is a class: "
                         "the kNN and linear probes need classes, not a continuous target. Bin it into classes "
                         "before reading, or name another label column with --set data.label=NAME.")
    return notes


def load_table(path: str | os.PathLike, label: str | None = None, schema: TableSchema | None = None,
               categorical: tuple[str, ...] = (), numeric: tuple[str, ...] = (), max_categories: int = 256,
               max_bad_fraction: float = 0.01, name: str | None = None, rows: slice | None = None) -> TableDataset:
    """Read a CSV/TSV or parquet file into a TableDataset (see the module docstring).

    label: the label column (None: a column named label/target/class/y if any; "" for none).
    schema: the encoding of another split (its columns, label and classes); the file must have
    those columns. categorical / numeric: column names whose kind is forced. max_categories: the
    most frequent categories kept per column (the rest get code 0). rows: a slice of the data rows
    (a named dataset's split). name: the dataset's name (default: the file name).
    """
    path = os.fspath(path)
    where = display_path(os.path.basename(path))
    if not os.path.isfile(path):
        raise DataError(f"no table file {display_path(path)}.", "check the path.")
    reader = _read_parquet if path.lower().endswith((".parquet", ".pq")) else _read_csv
    header, columns, ids, skipped, notes = reader(path, where)
    if rows is not None:
        index = range(len(ids))[rows]
        ids = [ids[i] for i in index]
        columns = {k: (v[rows] if isinstance(v, np.ndarray) else v[rows]) for k, v in columns.items()}

    if schema is not None:
        label = schema.label
        missing_cols = [c.name for c in schema.columns if c.name not in columns]
        if missing_cols:
            raise DataError(f"{where} lacks the column(s) {', '.join(map(repr, missing_cols[:5]))} of the table the "
                            f"encoder was trained on.", f"pass a table with the columns {', '.join(c.name for c in schema.columns)}.")
        if label and label not in columns:
            label = None  # unlabelled new data: features only
    else:
        if label is None:
            label = next((h for h in header if h.strip().lower() in LABEL_NAMES), None)
        elif label == "":
            label = None
        elif label not in columns:
            raise DataError(f"{where} has no column {label!r}.{closest(label, header)}",
                            f"choose the label column from: {', '.join(header[:20])}.")
        for option, names in (("categorical", categorical), ("numeric", numeric)):
            unknown = [c for c in names if c not in columns]
            if unknown:
                raise DataError(f"data.{option} names column(s) {', '.join(map(repr, unknown))} that {where} does not have."
                                f"{closest(unknown[0], header)}", f"choose from: {', '.join(header[:20])}.")
    if not ids:
        first = f" (e.g. line {skipped[0][0].rsplit(':', 1)[-1]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"{where} has no usable data rows{first}.", "check the file's separator and its rows.")

    needed = set(header) if schema is None else {c.name for c in schema.columns} | {label}
    parsed = {name: _parse(values) for name, values in columns.items() if name in needed}
    reasons: dict[int, str] = {}
    labels = classes = None
    if label is not None:
        p = parsed[label]
        classes = schema.classes if schema is not None and schema.classes is not None else \
            _sorted_classes(t for t, m, c in zip(p.text, p.missing, np.bincount(p.inverse, minlength=len(p.text))) if not m and c)
        lookup = {c: i for i, c in enumerate(classes)}
        code = np.array([-1 if m else lookup.get(t, -2) for t, m in zip(p.text, p.missing)], dtype=np.int64)
        labels = p.rows(code)
        for i in np.flatnonzero(labels < 0):
            reasons.setdefault(int(i), f"has no value in the label column {label!r}" if labels[i] == -1 else
                               f"has label {p.text[p.inverse[i]]!r}, which the training table does not have")
    if schema is not None:
        table_columns = schema.columns
    else:
        forced = {**{c: "categorical" for c in categorical}, **{c: "numeric" for c in numeric}}
        table_columns = tuple(_infer_column(h, parsed[h], forced.get(h), max_categories, max_bad_fraction)
                              for h in header if h != label)
    if not table_columns:
        raise DataError(f"{where} has no feature columns besides the label {label!r}.", "pass a table with features.")

    values = np.zeros((len(ids), len(table_columns)), dtype=np.float32)
    for j, column in enumerate(table_columns):
        p = parsed[column.name]
        if column.kind == "numeric":
            broken = np.isnan(p.number) & ~p.missing
            for i in np.flatnonzero(p.rows(broken)):
                reasons.setdefault(int(i), f"has {p.text[p.inverse[i]][:40]!r} in the numeric column {column.name!r}")
            values[:, j] = p.rows(np.where(np.isnan(p.number), column.fill, p.number))
        else:
            lookup = {c: k + 1 for k, c in enumerate(column.categories)}
            values[:, j] = p.rows(np.array([0 if m else lookup.get(t, 0) for t, m in zip(p.text, p.missing)],
                                           dtype=np.float32))
    keep = np.ones(len(ids), dtype=bool)
    for i in sorted(reasons):
        keep[i] = False
        skipped.append((ids[i], reasons[i]))
    if not keep.any():
        raise DataError(f"{where} has no usable data rows (e.g. {skipped[0][0]} {skipped[0][1]}).",
                        "fix the rows, or choose the label and numeric columns with data.label / data.categorical.")
    index = np.flatnonzero(keep)
    if schema is None:  # only a freshly inferred encoding is worth describing
        notes = notes + _inference_notes(where, int(keep.sum()), table_columns, parsed, forced, label, classes,
                                         max_categories)
    data_schema = schema if schema is not None else TableSchema(table_columns, label, classes)
    return TableDataset(
        torch.from_numpy(np.ascontiguousarray(values[index])),
        None if labels is None else torch.from_numpy(labels[index]),
        [ids[i] for i in index], name or where, display_path(path), data_schema, skipped, notes)
