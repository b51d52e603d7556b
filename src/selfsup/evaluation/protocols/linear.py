"""The L-BFGS linear probe on frozen features (evaluation/linear.py)."""
from __future__ import annotations

from ..context import EvalContext, protocol
from ..linear import DEFAULT_LAMBDAS, PROBE_MAX_ITER


@protocol("linear", needs_labels=True)
def linear_protocol(ctx: EvalContext, lambdas: tuple[float, ...] = DEFAULT_LAMBDAS,
           max_iter: int = PROBE_MAX_ITER) -> dict[str, float]:
    """L-BFGS logistic-regression probe; L2 strength chosen on a 10% stratified holdout of train."""
    return dict(ctx.linear_fit(tuple(lambdas), max_iter)[0])
