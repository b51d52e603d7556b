"""The CLI's flags are pinned: adding, renaming or changing a flag must update the snapshot on purpose.

The snapshot lists, for the top-level parser and every subcommand, each argument's option strings,
dest, default, type, choices, nargs, action, required and metavar, one line per argument, built from
the argparse objects (not from `--help` text, whose wrapping depends on the terminal width). Help
texts are left out, so rewording a help line needs no update. To accept a change:

    SELFSUP_UPDATE_SNAPSHOTS=1 pytest tests/test_cli_snapshot.py
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from selfsup.cli import _parser

SNAPSHOT = Path(__file__).parent / "snapshots" / "cli_flags.txt"
SUBCOMMANDS = ("pretrain", "evaluate", "embed", "shard", "protocols", "methods", "datasets", "report")


def _name(value) -> str:
    if value is None or isinstance(value, (str, int, float, bool, list, tuple)):
        return repr(value)
    return getattr(value, "__name__", type(value).__name__)  # types and callables by name, not address


def describe(parser: argparse.ArgumentParser, title: str) -> list[str]:
    lines = [f"[{title}]"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            lines.append(f"subcommands dest={action.dest!r} required={action.required} choices={list(action.choices)}")
            continue
        fields = [
            " ".join(action.option_strings) or "(positional)",
            f"dest={action.dest!r}",
            f"action={type(action).__name__.strip('_').removesuffix('Action')}",
            f"default={_name(action.default)}",
            f"type={_name(action.type)}",
            f"choices={_name(action.choices)}",
            f"nargs={_name(action.nargs)}",
            f"required={action.required}",
            f"metavar={_name(action.metavar)}",
        ]
        lines.append("  ".join(fields))
    return lines


def snapshot_text() -> str:
    parser = _parser()
    lines = describe(parser, "selfsup")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in sub.choices.items():
        lines += [""] + describe(subparser, f"selfsup {name}")
    return "\n".join(lines) + "\n"


def test_every_documented_subcommand_exists():
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(SUBCOMMANDS) <= set(sub.choices)


def test_cli_flags_match_snapshot():
    current = snapshot_text()
    if os.environ.get("SELFSUP_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.is_file(), f"no snapshot at {SNAPSHOT}; create it with SELFSUP_UPDATE_SNAPSHOTS=1 pytest {__file__}"
    expected = SNAPSHOT.read_text()
    if current != expected:
        import difflib

        diff = "\n".join(difflib.unified_diff(expected.splitlines(), current.splitlines(), "snapshot", "current", lineterm=""))
        raise AssertionError(
            "the CLI's flags changed. If the change is intended, update the snapshot with\n"
            f"    SELFSUP_UPDATE_SNAPSHOTS=1 pytest {Path(__file__).name}\n"
            f"and commit {SNAPSHOT.relative_to(Path(__file__).parents[1])}. Diff:\n{diff}")


@pytest.mark.parametrize("columns", ["40", "200"])
def test_help_of_every_subcommand_renders(capsys, monkeypatch, columns):
    """`--help` prints and exits 0 for each subcommand, whatever the terminal width."""
    monkeypatch.setenv("COLUMNS", columns)
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as info:
            _parser().parse_args([name, "--help"])
        assert info.value.code == 0
        assert f"usage: selfsup {name}" in " ".join(capsys.readouterr().out.split())
