"""Checkpoints: written atomically, loaded without pickle code execution, old ones pruned only after
a new one is complete.

Layout in a run directory: ``checkpoints/step-00001000.pt`` (+ the newest is what ``--resume`` loads).
A file appears under its final name only through ``os.replace`` of a fully written and fsynced
temporary file in the same directory, so a crash mid-write leaves at most a ``.tmp`` file behind.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import torch

from ..errors import CheckpointError

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def _fsync_dir(directory: Path) -> None:
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


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, fsync it, then rename it to `path`; on any error remove the temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def save_checkpoint(directory: str | os.PathLike, step: int, state: dict, keep: int = 2) -> Path:
    """Write `state` as checkpoint `step`, then delete all but the newest `keep` complete ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = atomic_write(checkpoint_path(directory, step), lambda tmp: torch.save(state, tmp))
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs); a bad file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist.", "pass a run directory or a step-*.pt file.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded safely ({reason}).",
                              "it is truncated, not a selfsup checkpoint, or contains code; use another checkpoint.") from None


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None
