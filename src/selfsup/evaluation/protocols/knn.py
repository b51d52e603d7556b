"""Weighted kNN on frozen features (Wu et al. 2018; k=20, T=0.07 as in DINO)."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("knn", needs_labels=True)
def knn_protocol(ctx: EvalContext, k: int = 20, temperature: float = 0.07) -> dict[str, float]:
    """Weighted kNN accuracy (k neighbours, votes exp(cos / temperature)) of test on train features."""
    from ..knn import knn_accuracy

    acc = knn_accuracy(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                       k=k, temperature=temperature)
    return {"accuracy": acc, "k": float(min(k, len(ctx.train)))}
