"""Linear probes on long-tailed subsets of the train split."""
from __future__ import annotations

from ..context import EvalContext, classes_in, protocol


def _two_classes(ctx, **_):
    k = classes_in(ctx)
    return None if k >= 2 else f"needs at least 2 classes, and the train split has {k}"


@protocol("longtail", needs_labels=True, fits=_two_classes, needs="at least 2 classes")
def longtail_protocol(ctx: EvalContext, ratios: tuple[float, ...] = (10, 100)) -> dict[str, float]:
    """Linear probe on long-tailed subsets of the train split (imbalance ratios 10 and 100), scored on
    the balanced test split overall and for the many / medium / few-shot classes."""
    from ..imbalance import long_tail_probe

    return long_tail_probe(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                           ratios=tuple(ratios), seed=ctx.seed)
