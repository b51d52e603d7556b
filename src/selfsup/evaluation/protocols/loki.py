"""Loki: Frechet-mean predictions over a class metric (Roberts et al., NeurIPS 2023)."""
from __future__ import annotations

from ..context import EvalContext, classes_in, protocol


def _loki_fits(ctx, unobserved_fraction=0.3, **_):
    k = classes_in(ctx)
    if k < 3:
        return f"holds classes out of the probe and needs 2 observed and 1 unobserved, so at least 3 classes; " \
               f"the train split has {k}"
    return None


@protocol("loki", needs_labels=True, seeded=True, fits=_loki_fits, needs="at least 3 classes")
def loki_protocol(ctx: EvalContext, unobserved_fraction: float = 0.3) -> dict[str, float]:
    """Loki (Roberts et al., NeurIPS 2023): a probe trained on some classes predicts every class by the
    Frechet mean under a metric of class-embedding distances; against argmax."""
    from ..loki import loki_eval

    return loki_eval(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                     seed=ctx.seed, unobserved_fraction=unobserved_fraction)
