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


SCHEDULES = ("cosine", "constant", "wsd", "infinite")


def phases(schedule: str, total: int, warmup: int, cooldown: int, decay_steps: int | None) -> tuple[int, int]:
    """(steps before the final decay's phases, the final decay's steps) of a wsd or infinite run of
    `total` steps: warmup (+ cooldown for infinite), and the last `decay_steps` steps, by default the
    last 20% (both papers below anneal over the last 20%), at least 1."""
    before = warmup + (cooldown if schedule == "infinite" else 0)
    return before, (max(1, round(0.2 * total)) if decay_steps is None else decay_steps)


def decay_start(total: int, schedule: str, decay_steps: int | None) -> int | None:
    """The first step of a wsd or infinite run's final decay (None for the others)."""
    if schedule not in ("wsd", "infinite"):
        return None
    return max(0, total - phases(schedule, total, 0, 0, decay_steps)[1])


def learning_rate(step: int, total: int, peak: float, warmup: int = 0, schedule: str = "cosine",
                  final_ratio: float = 0.0, cooldown: int = 0, const_ratio: float = 0.25,
                  decay_steps: int | None = None) -> float:
    """The learning rate of `step` (0-based) in a run of `total` steps that peaks at `peak`.

    Every schedule starts with a linear warmup over `warmup` steps (``peak * (step + 1) / warmup``).
    Then:

    - ``cosine``: half-cosine to ``peak * final_ratio`` at `total`.
    - ``constant``: `peak`.
    - ``wsd`` (warmup-stable-decay; Hu et al., "MiniCPM", arXiv:2404.06395; Hägele et al., "Scaling
      Laws and Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS 2024): `peak`
      until the final decay, then linear to ``peak * final_ratio`` over its `decay_steps` steps.
    - ``infinite`` (the infinite cosine schedule of Ibrahim et al., "Simple and Scalable Strategies
      to Continually Pre-train Large Language Models", arXiv:2403.08763, as Singh et al. use it for
      self-supervised continual pretraining in "Beyond Cosine Decay", CoLLAs 2025,
      arXiv:2503.02844): after warmup a cosine cooldown over `cooldown` steps from `peak` to
      ``eta_const = peak * const_ratio``, then constant ``eta_const``, then the final decay, an
      exponential anneal from ``eta_const`` to ``eta_min = peak * final_ratio``:
      ``eta_const * (eta_min / eta_const) ** ((step + 1 - start) / decay_steps)``, which reaches
      ``eta_min`` at the last step. A later stage of continual pretraining starts from the weights
      saved before the anneal (the run's ``encoder-stable/``) with ``warmup=0, cooldown=0``: it
      stays at ``eta_const`` (no re-warming) and anneals again at its end.

    The final decay is the last `decay_steps` steps (None: the last 20%).
    """
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        span = max(1, total - warmup)
        return cosine((step - warmup) / span, peak, peak * final_ratio)
    start = decay_start(total, schedule, decay_steps)
    if schedule == "wsd":
        if step < start:
            return peak
        return peak + (peak * final_ratio - peak) * (step + 1 - start) / max(1, total - start)
    if schedule == "infinite":
        const = peak * const_ratio
        if step < start:
            if cooldown and step < warmup + cooldown:
                return cosine((step - warmup) / cooldown, peak, const)
            return const
        end = peak * final_ratio
        if end <= 0.0 or const <= 0.0:
            return 0.0 if step + 1 >= total else const  # no exponential to 0: the config refuses it
        return const * (end / const) ** ((step + 1 - start) / max(1, total - start))
    raise ValueError(f"unknown schedule {schedule!r}")
