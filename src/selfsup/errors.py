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


class RunInterrupted(SelfsupError):
    """Not a mistake: SIGINT or SIGTERM stopped training after a checkpoint was saved.

    The message says where it was saved and how to resume; the CLI prints it on one line and exits
    with `exit_code`, 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, problem: str, fix: str, signum: int):
        super().__init__(problem, fix)
        self.args = (f"{problem} To continue: {fix}",)  # a request, not an error: no "Fix:"
        self.signum, self.exit_code = signum, 128 + signum


def closest(name: str, choices) -> str:
    """' Did you mean X?' for the closest of `choices`, or '' when nothing is close."""
    import difflib

    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


class DiskError(SelfsupError):
    """A file could not be written: the disk is full, read-only, or not writable by this user."""


# errno name -> (the cause in words, what to do about it where it happened)
_DISK_CAUSES = {
    "ENOSPC": ("the disk is full", "free space on that disk"),
    "EDQUOT": ("the disk quota is exceeded", "free space within the quota"),
    "EROFS": ("the file system is read-only", "remount it read-write"),
    "EACCES": ("permission denied", "make '{dir}' writable for this user"),
    "EPERM": ("the operation is not permitted", "make '{dir}' writable for this user"),
    "ENOENT": ("files cannot be created there", "choose a folder you can write to"),
    "ENOTDIR": ("a part of the path is a file, not a folder", "choose a path whose folders are folders"),
    "EISDIR": ("it is a folder", "name a file, not a folder"),
}


def disk_error(exc: OSError, path, what: str, kept=None) -> DiskError:
    """A DiskError for `exc`, raised while writing `what` to `path`. `kept` names the previous
    checkpoint, still complete on disk (None: there is none); the fix then says to resume from it."""
    import errno as _errno
    import os

    name = _errno.errorcode.get(exc.errno or 0, "")
    cause, remedy = _DISK_CAUSES.get(name, ("the write failed", "check that disk"))
    remedy = remedy.format(dir=os.path.dirname(os.fspath(path)) or ".")
    detail = exc.strerror or str(exc) or type(exc).__name__
    problem = f"could not write {what} '{path}': {cause}"
    problem += "." if detail.lower() == cause else f" ({detail})."
    if kept is not None:
        problem += f" The previous checkpoint '{kept}' is kept."
        fix = f"{remedy}, then rerun with --resume (or start over with an --out on another disk)."
    else:
        fix = f"{remedy} or pass an --out on another disk, then rerun."
    return DiskError(problem, fix)


def os_error(exc: OSError) -> SelfsupError:
    """A one-line error for an OSError that reached the CLI: the file, the cause and what to do."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "")
    where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
    detail = exc.strerror or str(exc) or type(exc).__name__
    if name in ("ENOSPC", "EDQUOT"):
        fix = "free space on that disk, or write to another one, then rerun."
    elif name in ("EACCES", "EPERM", "EROFS"):
        fix = "check the permissions of that path, or choose another one, then rerun."
    else:
        fix = "check the path, then rerun."
    return SelfsupError(f"cannot access{where}: {detail}.", fix)
