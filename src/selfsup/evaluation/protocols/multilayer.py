"""Linear probes on every backbone stage and on all stages together."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("multilayer", needs_labels=True, requires=("feature_maps",))
def multilayer_protocol(ctx: EvalContext) -> dict[str, float]:
    """Linear probes on the pooled feature map of every backbone stage, and on all stages together."""
    from ..multilayer import extract_layer_features, multilayer_probe

    key = "layers"
    if key not in ctx._memo:
        ctx._memo[key] = {split: extract_layer_features(ctx.encoder, ctx.samples(split), ctx.device, ctx.amp,
                                                        ctx.batch_size) for split in ("train", "test")}
    layers = ctx._memo[key]
    return multilayer_probe(layers["train"], ctx.labels("train"), layers["test"], ctx.labels("test"), seed=ctx.seed)
