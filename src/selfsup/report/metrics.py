"""Reading a run's metrics.jsonl (one JSON object per logged step) into per-key series."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MetricLog:
    """series[key] = [(step, value), ...] in file order; `bad_lines` counts lines that were not JSON objects."""

    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    bad_lines: int = 0

    def has(self, key: str) -> bool:
        return any(math.isfinite(v) for _, v in self.series.get(key, []))

    def finite(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of `key`, without NaN/Inf entries."""
        points = [(s, v) for s, v in self.series.get(key, []) if math.isfinite(v)]
        return [s for s, _ in points], [v for _, v in points]


def read_metrics(path: str | Path) -> MetricLog:
    """Parse `path`; numeric fields of lines with a "step" become series. A missing file gives an empty log.

    A run killed mid-write leaves a truncated last line; such lines are counted, not fatal.
    """
    log = MetricLog()
    path = Path(path)
    if not path.is_file():
        return log
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)  # Python's json reads NaN/Infinity, which a diverging run may log
        except json.JSONDecodeError:
            log.bad_lines += 1
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            log.bad_lines += 1
            continue
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                log.series.setdefault(key, []).append((float(record["step"]), float(value)))
    return log
