"""What the benchmark scripts share: the revision a figure was measured at, their JSON-lines
result logs, writing a table into BENCHMARKS.md between a section's markers, and the median time
of a CPU call."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def revision() -> str:
    """The short commit hash, with "+dirty" when tracked files other than BENCHMARKS.md and the
    benchmark records (benchmarks/results, which a run appends to) are changed. A copy of the tree
    without its git history (a GPU machine's) names its revision in $SELFSUP_REVISION."""
    if os.environ.get("SELFSUP_REVISION"):
        return os.environ["SELFSUP_REVISION"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md", ":!benchmarks/results"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), which every speed or timing record names."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def write_section(name: str, text: str, heading: str) -> None:
    """Replace what stands between ``<!-- name:start -->`` and ``<!-- name:end -->`` in BENCHMARKS.md
    with `text`; a file without the markers gets a new section with `heading` at its end."""
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in doc and end in doc:
        doc = doc[:doc.index(start) + len(start)] + "\n" + text + "\n" + doc[doc.index(end):]
    else:
        doc += f"\n## {heading}\n\n{start}\n{text}\n{end}\n"
    path.write_text(doc)


def median_seconds(fn, repeats: int = 20, warmup: int = 3) -> float:
    """The median wall time of `repeats` calls of `fn` after `warmup` untimed ones (CPU work: nothing
    to synchronize)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
