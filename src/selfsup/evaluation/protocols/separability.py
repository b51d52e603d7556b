"""Unsupervised class separability from H0 persistence, no labels."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("separability", needs_labels=False, seeded=True)
def separability_protocol(ctx: EvalContext, n: int = 2000) -> dict[str, float]:
    """Unsupervised class-separability estimate from the H0 persistence of a train subsample (no labels)."""
    from ..spectrum import class_separability

    return {"score": class_separability(ctx.features("train"), n=n, seed=ctx.seed)}
