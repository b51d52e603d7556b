"""The ridge regression probe for a continuous target (evaluation/ridge.py)."""
from __future__ import annotations

from ..context import EvalContext, protocol


def _has_targets(ctx, **_):
    if ctx.train is None or ctx.test is None:
        return "needs a test split"
    for split, data in (("train", ctx.train), ("test", ctx.test)):
        if getattr(data, "targets", None) is None:
            return f"needs a continuous target, and the {split} split of '{data.name}' has none"
    return None


@protocol("ridge", needs_labels=False, fits=_has_targets, needs="a continuous target (a regression dataset)")
def ridge_protocol(ctx: EvalContext) -> dict[str, float]:
    """Ridge regression on the frozen features, strength by leave-one-out: R^2, MAE, RMSE on the test split."""
    from ..ridge import ridge_probe

    return ridge_probe(ctx.features("train"), ctx.train.targets, ctx.features("test"), ctx.test.targets)
