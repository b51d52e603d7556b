"""Alignment and uniformity of the features (Wang & Isola 2020), no labels."""
from __future__ import annotations

import torch

from ..context import EvalContext, default_views, protocol


@protocol("alignment_uniformity", needs_labels=False, seeded=True)
def alignment_uniformity_protocol(ctx: EvalContext, n: int = 2048, alpha: float = 2.0, t: float = 2.0) -> dict[str, float]:
    """Alignment of two augmented views and uniformity, on `n` train images (Wang & Isola 2020)."""
    from ..labelfree import alignment_uniformity as measure

    generator = torch.Generator().manual_seed(ctx.seed)
    return measure(ctx.encoder, ctx.train.samples, default_views(ctx.encoder, ctx.train), n=n,
                   generator=generator, alpha=alpha, t=t)
