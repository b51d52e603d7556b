"""A table's column kinds are inferred out loud: one summary line, a line for every close call, and
the override (data.numeric / data.categorical) named in it."""
from __future__ import annotations

import numpy as np
import pytest

from selfsup.cli import main
from selfsup.data.table import load_table


def numeric_with_text(path, text_rows: dict[int, str], n: int = 200):
    rng = np.random.default_rng(0)
    values = [f"{v:.4f}" for v in rng.normal(size=n)]
    for i, text in text_rows.items():
        values[i] = text
    path.write_text("x,z,label\n" + "\n".join(f"{v},{rng.normal():.2f},{'a' if i % 2 else 'b'}"
                                               for i, v in enumerate(values)) + "\n")
    return path


def test_mostly_numeric_column_read_as_categorical_is_named_with_the_fix(tmp_path):
    """The reported case: 3 text values in 200 (1.5%) turned a numeric column into ~200 categories, silently."""
    path = numeric_with_text(tmp_path / "t.csv", {5: "abc", 50: "unknown", 150: "12.5.1"})
    table = load_table(path)
    x = next(c for c in table.schema.columns if c.name == "x")
    assert x.kind == "categorical"  # more than 1% text: the rule stays as it was ...
    note = next(n for n in table.notes if n.startswith("column 'x'"))  # ... but it is said, with the way out
    assert f"read as categorical ({len(x.categories)} categories) although most of its values are numbers" in note
    assert len(x.categories) > 190
    assert "3 of 200 values (1.5%) are not numbers" in note and "'abc'" in note
    assert "--set data.numeric=[x]" in note
    # following the advice: numeric, the three rows skipped and listed
    forced = load_table(path, numeric=("x",))
    assert next(c for c in forced.schema.columns if c.name == "x").kind == "numeric"
    assert len(forced) == 197 and [line for line, _ in forced.skipped] == ["t.csv:7", "t.csv:52", "t.csv:152"]
    assert not any(n.startswith("column 'x'") for n in forced.notes)  # declared: nothing left to guess


def test_numeric_column_with_one_text_value_says_the_row_is_skipped(tmp_path):
    table = load_table(numeric_with_text(tmp_path / "t.csv", {10: "oops"}))
    assert next(c for c in table.schema.columns if c.name == "x").kind == "numeric" and len(table) == 199
    note = next(n for n in table.notes if n.startswith("column 'x'"))
    assert "read as numeric, but 1 of 200 values (0.5%) is not a number (e.g. 'oops'): that row is skipped" in note
    assert "--set data.categorical=[x]" in note


def test_summary_lists_the_kinds_and_a_schema_read_adds_no_notes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("size,colour,count,label\n1.5,red,3,a\n2.5,blue,,b\n,red,1,a\n4.0,?,2,b\n")
    table = load_table(path)
    summary = table.notes[0]
    assert summary.startswith("read t.csv: 4 rows, 3 feature columns: 2 numeric (size, count), 1 categorical "
                              "(with their number of categories: colour 2); label 'label' (2 classes).")
    assert "data.numeric=[NAME]" in summary and len(table.notes) == 1
    again = load_table(path, schema=table.schema)  # a test split or new data: nothing is inferred
    assert again.notes == []


def test_capped_categories_are_said(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("code,v,label\n" + "\n".join(f"c{i % 40},{i},{'a' if i % 2 else 'b'}" for i in range(200)) + "\n")
    table = load_table(path, max_categories=16)
    assert any("column 'code' has 40 distinct values; the 16 most frequent are categories" in n for n in table.notes)


def test_pretraining_prints_the_inference(tmp_path, capsys):
    path = numeric_with_text(tmp_path / "t.csv", {5: "abc", 50: "unknown", 150: "12.5.1"})
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(path), "--steps", "2", "--batch-size", "32", "--out", str(tmp_path / "run"),
              "--no-progress", "--no-eval"])
    assert info.value.code == 0
    err = capsys.readouterr().err
    assert "note: read t.csv: 200 rows, 2 feature columns" in err
    assert "note: column 'x' is read as categorical" in err
