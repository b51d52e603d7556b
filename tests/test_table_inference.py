"""A table's column kinds are inferred out loud: one summary line, a line for every close call, and
the override (data.numeric / data.categorical) named in it."""
from __future__ import annotations

import shlex

import numpy as np
import pytest

from selfsup.cli import main
from selfsup.config import load as load_config
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
    assert "3 of 200 values (1.5%) are not numbers, e.g. 'abc', 'unknown', '12.5.1'" in note
    assert "pass --set data.numeric=[x] (rows with text there are then skipped)" in note
    # following the advice: numeric, the three rows skipped and listed
    forced = load_table(path, numeric=("x",))
    assert next(c for c in forced.schema.columns if c.name == "x").kind == "numeric"
    assert len(forced) == 197 and [line for line, _ in forced.skipped] == ["t.csv:7", "t.csv:52", "t.csv:152"]
    assert not any(n.startswith("column 'x'") for n in forced.notes)  # declared: nothing left to guess


def test_numeric_column_with_one_text_value_says_the_row_is_skipped(tmp_path):
    table = load_table(numeric_with_text(tmp_path / "t.csv", {10: "oops"}))
    assert next(c for c in table.schema.columns if c.name == "x").kind == "numeric" and len(table) == 199
    note = next(n for n in table.notes if n.startswith("column 'x'"))
    assert "read as numeric, but 1 of 200 values (0.5%) is not a number, e.g. 'oops': that row is skipped" in note
    assert "pass --set data.categorical=[x]" in note
    assert [line for line, _ in table.skipped] == ["t.csv:12"]  # the skipped row is listed too
    assert len([n for n in table.notes if n.startswith("column ")]) == 1  # z and the label: nothing to say


def test_summary_lists_the_kinds_and_a_schema_read_adds_no_notes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("size,colour,count,label\n1.5,red,3,a\n2.5,blue,,b\n,red,1,a\n4.0,?,2,b\n")
    table = load_table(path)
    summary = table.notes[0]
    assert summary.startswith("read t.csv: 4 rows, 3 feature columns: 2 numeric (size, count), 1 categorical "
                              "with their category counts (colour 2); label 'label' (2 classes).")
    assert "--set data.numeric=[NAME]" in summary and "--set data.categorical=[NAME]" in summary
    assert len(table.notes) == 1
    again = load_table(path, schema=table.schema)  # a test split or new data: nothing is inferred
    assert again.notes == []


def test_capped_categories_are_said(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("code,v,label\n" + "\n".join(f"c{i % 40},{i},{'a' if i % 2 else 'b'}" for i in range(200)) + "\n")
    table = load_table(path, max_categories=16)
    assert any("column 'code' has 40 distinct values; the 16 most frequent are categories, the other 24 get code 0"
               in n for n in table.notes)
    declared = load_table(path, max_categories=16, categorical=("code",))  # declared, and still capped: said
    assert any(n.startswith("column 'code' has 40 distinct values") for n in declared.notes)


def test_long_column_lists_are_capped_and_declared_columns_get_no_note(tmp_path):
    path = tmp_path / "t.csv"
    names = [f"f{j}" for j in range(12)]
    path.write_text(",".join(names + ["code", "label"]) + "\n" + "\n".join(
        ",".join([str(i * j) for j in range(12)] + ["oops" if i == 3 else str(i), "a" if i % 2 else "b"])
        for i in range(200)) + "\n")
    table = load_table(path, categorical=("code",))
    assert "12 numeric (f0, f1, f2, f3, f4, f5, f6, f7 +4 more), 1 categorical" in table.notes[0]
    assert len(table.notes) == 1  # 'code' has a text value, but it was declared categorical


def test_the_override_is_quoted_when_a_name_needs_it(tmp_path):
    """The advice is typed as printed: names with spaces or YAML words (yes, null) are quoted."""
    path = tmp_path / "t.csv"
    rows = [f"{i},{i},{'a' if i % 2 else 'b'}" for i in range(200)]
    rows[7] = "n/a?,n/a?,a"
    path.write_text("unit price,yes,label\n" + "\n".join(rows) + "\n")
    notes = load_table(path).notes
    assert any("""pass --set 'data.categorical=["unit price"]'""" in n for n in notes)
    assert any("""pass --set 'data.categorical=["yes"]'""" in n for n in notes)
    for name in ("unit price", "yes"):  # and the shell and the config read it back as that name
        note = next(n for n in notes if n.startswith(f"column {name!r}"))
        words = shlex.split(note.split("pass ", 1)[1].rstrip("."))
        assert words[0] == "--set" and load_config(overrides=[words[1]]).data.categorical == (name,)


def test_a_continuous_label_and_an_empty_column_are_said(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("v,empty,price\n" + "\n".join(f"{i % 7},,{i * 1.25}" for i in range(300)) + "\n")
    table = load_table(path, label="price")
    assert any(n.startswith("label 'price' has 300 distinct values, mostly numbers, and each is a class") for n in table.notes)
    assert any(n.startswith("column 'empty' has no values") for n in table.notes)
    few = tmp_path / "few.csv"  # a label with a handful of numeric classes is ordinary
    few.write_text("v,label\n" + "\n".join(f"{i},{i % 10}" for i in range(300)) + "\n")
    assert len(load_table(few).notes) == 1


def test_pretraining_prints_the_inference(tmp_path, capsys):
    path = numeric_with_text(tmp_path / "t.csv", {5: "abc", 50: "unknown", 150: "12.5.1"})
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(path), "--steps", "2", "--batch-size", "32", "--out", str(tmp_path / "run"),
              "--no-progress", "--no-eval"])
    assert info.value.code == 0
    err = capsys.readouterr().err
    assert "note: read t.csv: 200 rows, 2 feature columns" in err
    assert "note: column 'x' is read as categorical" in err
