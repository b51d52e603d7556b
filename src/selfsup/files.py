"""Writing files so that nothing half-written is ever seen, and naming paths in messages.

Every file selfsup writes (checkpoints, encoders, configs, results, reports, feature caches)
appears under its final name only through ``os.replace`` of a complete, fsynced temporary file
in the same folder, so a crash or a full disk leaves the previous version or nothing, never a
truncated file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def display_path(path: str | os.PathLike) -> str:
    """`path` as printable text: bytes that are not UTF-8 become backslash escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (where the file system allows opening a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None],
                 before_rename: Callable[[Path], None] | None = None) -> Path:
    """Call ``write(tmp_path)``, fsync it, then rename it to `path`; on any error remove the temporary
    file. `before_rename(path)` runs between the two (the checkpoint tests kill the process there)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if before_rename is not None:
            before_rename(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def writable(path: str | os.PathLike, what: str, directory: bool = False) -> Path:
    """Fail before any work, with a one-line DiskError, when `path` (a file, or with `directory` a
    folder to write files in) cannot be written: its folder is created and a probe file written
    and removed there. Returns the path."""
    from .errors import disk_error

    path = Path(path)
    folder = path if directory else path.parent
    probe = folder / f".selfsup-write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb"):
            pass
        probe.unlink()
        if not directory and path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path))
    except OSError as exc:
        raise disk_error(exc, path, what) from None
    return path
