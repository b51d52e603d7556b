"""Schedules as pure functions of progress or step, so every step's value can be recomputed on resume."""
from __future__ import annotations

import math


def cosine(progress: float, start: float, end: float) -> float:
    """Half-cosine from `start` (progress 0) to `end` (progress 1)."""
    progress = min(max(progress, 0.0), 1.0)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_warmup(progress: float, start: float, end: float, fraction: float) -> float:
    """Linear from `start` (progress 0) to `end` (progress `fraction`), then constant (DINO's teacher
    temperature over the first 30% of training); `fraction` 0 is `end` from the start."""
    frac = 1.0 if fraction == 0 else min(max(progress / fraction, 0.0), 1.0)
    return start + (end - start) * frac


def learning_rate(step: int, total: int, peak: float, warmup: int = 0, schedule: str = "cosine",
                  final_ratio: float = 0.0) -> float:
    """Linear warmup over `warmup` steps to `peak`, then constant or cosine to `peak * final_ratio` at `total`."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    span = max(1, total - warmup)
    return cosine((step - warmup) / span, peak, peak * final_ratio)
