"""Linear probes on label fractions (1%, 10%, 100%)."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("fractions", needs_labels=True, seeded=True)
def fractions_protocol(ctx: EvalContext, fractions: tuple[float, ...] = (0.01, 0.1, 1.0)) -> dict[str, float]:
    """Linear probe on nested, stratified 1% / 10% / 100% subsets of the train labels."""
    from ..fewshot import label_fractions

    return label_fractions(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                           fractions=fractions, seed=ctx.seed, full=lambda: ctx.linear_fit()[0])
