"""Errors a user can cause. Each says what went wrong and what to do instead, on one line.

The CLI prints ``error: <message>`` for any :class:`SelfsupError` and exits with code 2; any
other exception is a bug in selfsup and keeps its traceback.
"""
from __future__ import annotations


class SelfsupError(Exception):
    """A problem with the user's input: `problem` names it (with the value), `fix` says what to do."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem, self.fix = problem, fix
        super().__init__(problem if not fix else f"{problem} Fix: {fix}")


class DataError(SelfsupError):
    """Missing, empty or unreadable data."""


class ConfigError(SelfsupError):
    """An unknown key, a wrong type or an out-of-range value in a config or flag."""


class CheckpointError(SelfsupError):
    """A checkpoint or encoder file that is missing, truncated or does not match the model."""


class NonFiniteLossError(SelfsupError):
    """Training produced a NaN or Inf; the last good checkpoint is kept."""


def closest(name: str, choices) -> str:
    """' Did you mean X?' for the closest of `choices`, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""
