"""PNG figures for the report, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.figure import Figure  # Figure + savefig uses Agg without touching the global backend

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average over `window` points (shorter at the start)."""
    x = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(x) < 3:
        return x
    csum = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def curve(path: Path, steps: list[float], values: list[float], title: str, ylabel: str,
          smoothed: bool = True) -> Path:
    """A value-over-steps line plot; long noisy series get a moving average drawn on top."""
    fig, ax = _figure()
    window = max(1, len(values) // 50)
    if smoothed and window > 1:
        ax.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=0.8, label="raw")
        ax.plot(steps, smooth(values, window), color="tab:blue", linewidth=1.6, label=f"mean of {window}")
        ax.legend(loc="best")
    else:
        ax.plot(steps, values, color="tab:blue", marker="o" if len(values) <= 30 else None, linewidth=1.4)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def embedding_map(path: Path, coords: np.ndarray, labels: np.ndarray | None, class_names: list[str] | None,
                  title: str) -> Path:
    """Scatter of (N, 2) `coords`, one colour per label (legend with class names when given)."""
    fig, ax = _figure(6.4, 5.6)
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=4, color="tab:gray", alpha=0.7)
    else:
        values = np.unique(labels)
        cmap = _colormap(len(values))
        for i, value in enumerate(values):
            mask = labels == value
            name = class_names[int(value)] if class_names and 0 <= int(value) < len(class_names) else str(value)
            ax.scatter(coords[mask, 0], coords[mask, 1], s=4, color=cmap(i), alpha=0.8, label=name)
        if len(values) <= 20:
            ax.legend(loc="best", fontsize=7, markerscale=3, framealpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _colormap(n: int):
    from matplotlib import colormaps

    return colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "viridis"].resampled(max(n, 1))
