"""Checkpoints: written atomically, loaded without pickle code execution, old ones pruned only after
a new one is complete.

Layout in a run directory: ``checkpoints/step-00001000.pt`` (+ the newest is what ``--resume`` loads).
A file appears under its final name only through ``os.replace`` of a fully written and fsynced
temporary file in the same directory, so a crash mid-write leaves at most a ``.tmp`` file behind;
the next save removes such leftovers (``.step-*.tmp``).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import torch

from .errors import CheckpointError, disk_error
from .files import atomic_write

_NAME = re.compile(r"^step-(\d{8})\.pt$")

# Test-only fault injection (tests/test_kill_resume.py), read once, on first use:
# SELFSUP_FAULT="save:<point>[:<n>[:pause]]" SIGKILLs this process the n-th time (default 1) a
# checkpoint save reaches <point>, or with "pause" sleeps 60 s there so that a test can signal it:
#   partial        the temporary file is half written
#   before-rename  the temporary file is complete and fsynced, not yet renamed
#   after-rename   the new checkpoint is in place, older ones not yet pruned
#   pruning        the first old checkpoint is deleted, others may remain
_FAULT: list[str] | None = None
_fault_hits: dict[str, int] = {}


def _fault(point: str, path: Path) -> None:
    global _FAULT
    if _FAULT is None:
        _FAULT = os.environ.get("SELFSUP_FAULT", "").split(":")
    if _FAULT[0] != "save" or _FAULT[1:2] != [point] or not re.match(r"\.?step-\d{8}\.pt", path.name):
        return  # not asked for, or not a checkpoint
    _fault_hits[point] = _fault_hits.get(point, 0) + 1
    if _fault_hits[point] != (int(_FAULT[2]) if len(_FAULT) > 2 else 1):
        return
    if point == "partial":
        os.truncate(path, os.path.getsize(path) // 2)
    if _FAULT[3:] == ["pause"]:
        os.write(2, f"selfsup-fault: paused at save:{point}\n".encode())
        time.sleep(60)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def remove_temporaries(directory: str | os.PathLike) -> None:
    """Delete the ``.step-*.tmp`` files a killed save left in `directory` (never a complete checkpoint)."""
    for stale in Path(directory).glob(".step-*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def save_checkpoint(directory: str | os.PathLike, step: int, state: dict, keep: int = 2) -> Path:
    """Write `state` as checkpoint `step`, then delete all but the newest `keep` complete ones.

    A failed write (disk full, read-only, no permission) raises a DiskError naming the cause; then
    nothing is pruned and no temporary file is left."""
    directory = Path(directory)

    def write(tmp: Path) -> None:
        # Through a Python file: torch.save(state, path) reports a full disk as an opaque RuntimeError.
        with open(tmp, "wb") as f:
            torch.save(state, f)
        _fault("partial", tmp)

    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_temporaries(directory)
        path = atomic_write(checkpoint_path(directory, step), write, before_rename=lambda p: _fault("before-rename", p))
    except OSError as exc:  # nothing was pruned: the previous checkpoint is still the newest
        raise disk_error(exc, checkpoint_path(directory, step), "checkpoint", latest_checkpoint(directory)) from exc
    _fault("after-rename", path)
    for old in list_checkpoints(directory)[:-keep]:  # keep >= 1: the one just written always stays
        old.unlink(missing_ok=True)
        _fault("pruning", old)
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs); a bad file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist.", "pass a run directory or a step-*.pt file.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded safely ({reason}).",
                              "it is truncated, not a selfsup checkpoint, or contains code; move it away "
                              "(--resume then takes the previous one) or use another checkpoint.") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"checkpoint '{path}' is not a selfsup checkpoint (no training step in it).",
                              "use a step-*.pt file written by `selfsup pretrain`.")
    return state


def load_state(target, state: dict, key: str, path: str | os.PathLike) -> None:
    """``target.load_state_dict(state[key])`` for a module or an optimizer; a missing entry or a
    mismatch (another backbone width, method option or optimizer) is a CheckpointError that names
    the file and the first difference, instead of torch's many-line message."""
    if key not in state:
        raise CheckpointError(f"checkpoint '{path}' has no '{key}' state.", "use a step-*.pt file written by `selfsup pretrain`.")
    try:
        target.load_state_dict(state[key])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        detail = describe_mismatch(target.state_dict(), state[key]) if isinstance(target, torch.nn.Module) else None
        if detail is None:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"checkpoint '{path}' does not match this run's {key}: {detail}.",
                              "resume with the settings it was trained with (config.yaml in its run directory), "
                              "or start a new run with another --out.") from None


def describe_mismatch(expected: dict, found: dict) -> str | None:
    """The first difference between two state dicts, and how many there are, in words."""
    diffs = [f"'{k}' has shape {list(found[k].shape)} in the file and {list(v.shape)} in the model"
             for k, v in expected.items() if k in found and torch.is_tensor(found[k]) and torch.is_tensor(v)
             and found[k].shape != v.shape]
    diffs += [f"'{k}' is missing from the file" for k in expected if k not in found]
    diffs += [f"the file has '{k}', which the model does not" for k in found if k not in expected]
    if not diffs:
        return None
    return diffs[0] + (f" (and {len(diffs) - 1} more difference{'s' if len(diffs) > 2 else ''})" if len(diffs) > 1 else "")


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None
