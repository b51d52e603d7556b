"""Progress on stderr: a live bar on a terminal, plain periodic lines anywhere else.

A log file or a pipe gets no carriage returns: a bar redrawn with ``\\r`` ten times a second turns
into kilobytes of one unreadable line (150 steps once wrote 169 redraws, 15 KB). There, a line is
written when the work passes each further 10% of its total or when 30 s have passed since the last
line, whichever comes first, and once at the end; the first line comes early, at the first 10% or
after 5 s (enough for a rate and a time left). So a short run writes a handful of lines, and a long
one says early that it is running and never goes quiet for more than half a minute:

    pretrain: step 1250/2500 (50%), loss 4.101, 801 images/s, 2m36s left

    progress = Progress(total=2500, label="pretrain", unit="step", initial=0)
    progress.update(1, loss="4.101", **{"images/s": "801"})
    progress.write("warning: ...")   # a line of its own, in both modes
    progress.close()
"""
from __future__ import annotations

import sys
import time

LINE_FRACTION = 0.1  # plain mode: a line at every further 10% of the work ...
LINE_SECONDS = 30.0  # ... or after this long without one
FIRST_LINE_SECONDS = 5.0  # ... and the first one after at most this long


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


def duration(seconds: float) -> str:
    """3s, 4m10s, 2h05m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress of `total` units (steps, rows) of the work called `label`.

    `unit`: the noun of a unit ("step" prints ``step 150/2500``; "rows" prints ``150/2500 rows``).
    `initial`: units already done (a resumed run); rates and the time left count only what this
    process does. `stream`: default stderr; `terminal`: force the mode (default: the stream's).
    """

    def __init__(self, total: int, label: str, unit: str = "step", initial: int = 0, stream=None,
                 terminal: bool | None = None):
        self.total, self.label, self.unit = int(total), label, unit
        self.done = self.start = int(initial)
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.fields: dict[str, str] = {}
        self.t0 = self.last_time = time.perf_counter()
        self.next_mark = self._mark_after(self.done)
        self.closed = False
        self.lines = 0  # plain lines written
        self.bar = None
        if self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, unit=unit, desc=label, file=self.stream,
                            dynamic_ncols=True, mininterval=1.0)

    def _mark_after(self, done: int) -> int:
        """The next unit count at which a plain line is due (the next multiple of 10% of the total)."""
        step = max(1, int(self.total * LINE_FRACTION))
        return (done // step + 1) * step

    def update(self, n: int = 1, **fields) -> None:
        """`n` more units are done; `fields` (name -> shown text) replace those shown so far."""
        self.done += n
        self.fields.update({k: str(v) for k, v in fields.items()})
        if self.bar is not None:
            if fields:
                self.bar.set_postfix(self.fields, refresh=False)
            self.bar.update(n)
            return
        now = time.perf_counter()
        quiet = LINE_SECONDS if self.lines else FIRST_LINE_SECONDS
        if self.done >= self.total or self.done >= self.next_mark or now - self.last_time >= quiet:
            self._line(now)

    def _line(self, now: float) -> None:
        if self.unit == "step":
            where = f"step {self.done}/{self.total}"
        else:
            where = f"{self.done:,}/{self.total:,} {self.unit}"
        parts = [f"{where} ({100 * self.done / max(self.total, 1):.0f}%)"]
        parts += [f"{name} {value}" if not name.endswith("/s") else f"{value} {name}" for name, value in self.fields.items()]
        elapsed, progressed = now - self.t0, self.done - self.start
        if self.unit != "step" and progressed > 0 and elapsed > 0:  # the trainer shows its own images/s
            parts.append(f"{progressed / elapsed:,.0f} {self.unit}/s")
        if 0 < progressed and self.done < self.total:
            parts.append(f"{duration(elapsed / progressed * (self.total - self.done))} left")
        elif self.done >= self.total:
            parts.append(f"took {duration(elapsed)}")
        print(f"{self.label}: {', '.join(parts)}", file=self.stream, flush=True)
        self.last_time = now
        self.lines += 1
        self.next_mark = self._mark_after(self.done)

    def write(self, message: str) -> None:
        """`message` on a line of its own (the bar, if any, is redrawn below it)."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:  # plain mode wrote its last line at the end of the work, or the caller says why it stopped
            self.bar.close()
