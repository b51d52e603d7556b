"""k-means clustering of the test features against the labels."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("cluster", needs_labels=True, seeded=True)
def cluster_protocol(ctx: EvalContext, n_clusters: int | None = None) -> dict[str, float]:
    """k-means on the L2-normalized test features: NMI, ARI and Hungarian accuracy against the labels."""
    from ..cluster import cluster_metrics

    return cluster_metrics(ctx.features("test"), ctx.labels("test"), n_clusters=n_clusters, seed=ctx.seed)
