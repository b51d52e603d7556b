"""A graceful stop on SIGINT (Ctrl-C) or SIGTERM (``kill``, a cluster's pre-emption notice).

While the trainer steps, the first signal only raises a flag: the step in progress finishes, the
loop saves a checkpoint and raises :class:`~selfsup.errors.RunInterrupted`, which the CLI prints on
one line (where it saved, how to resume) before exiting with ``128 + signal number``: 130 for
SIGINT, 143 for SIGTERM, the shell's own codes for a process killed by them. So the save starts
within one step of the signal, and nothing is cut off half-written.

A second signal exits at once through ``os._exit`` with the same code, even inside a save: the
checkpoint being written is still a temporary file then (see ``checkpoint.atomic_write``), so the
last complete checkpoint stays intact and the next save or resume removes the leftover.

Handlers are installed only in the main thread (Python allows no other) and only around the step
loop, and the previous handlers come back when training returns or raises, so a library user's
own handling of Ctrl-C is untouched outside ``train()``.
"""
from __future__ import annotations

import os
import signal
import threading

from ..errors import RunInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


class StopSignals:
    """``with StopSignals() as stop: ... stop.install() ... if stop.signum: ...``

    `install()` takes over SIGINT and SIGTERM (a no-op outside the main thread); leaving the
    ``with`` block, or `restore()`, puts the previous handlers back.
    """

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def install(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return self
        for signum in SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is closest
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            os.write(2, f"selfsup: second {name}, exiting now without saving\n".encode())
            os._exit(exit_code(signum))
        self.signum = signum
        # os.write, not print: a handler may run while the main thread is inside a print to stderr
        os.write(2, f"selfsup: {name} received, saving a checkpoint after this step "
                    f"(send it again to exit at once)\n".encode())

    def interrupted(self, step: int, path) -> RunInterrupted:
        """The exception the trainer raises once the checkpoint at `step` is saved to `path`."""
        name = signal.Signals(self.signum).name
        return RunInterrupted(f"stopped by {name} after step {step}; the checkpoint is saved in '{path}'.",
                              "rerun the same command with --resume.", self.signum)
