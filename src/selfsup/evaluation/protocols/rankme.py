"""RankMe: the effective rank of the features, no labels (Garrido et al. 2023)."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("rankme", needs_labels=False)
def rankme_protocol(ctx: EvalContext, eps: float = 1e-7) -> dict[str, float]:
    """Effective rank of the train features (1 = collapsed, D = every dimension used evenly)."""
    from ..labelfree import rankme as effective_rank

    feats = ctx.features("train")
    return {"rank": effective_rank(feats, eps), "dim": float(feats.shape[1])}
