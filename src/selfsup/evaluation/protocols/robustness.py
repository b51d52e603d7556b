"""The frozen linear probe under corruptions of the test images."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("robustness", needs_labels=True, requires=("pixels",))
def robustness_protocol(ctx: EvalContext, kinds: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "contrast",
                                                                     "pixelate", "occlusion"),
                        severities: tuple[int, ...] = (1, 2, 3, 4, 5)) -> dict[str, float]:
    """Accuracy of the frozen linear probe (fitted on clean train features) on corrupted test images,
    per corruption and severity, and the relative drop from clean."""
    from ..robustness import robustness

    model = ctx.linear_model()
    return robustness(ctx.encoder, model.predict, ctx.samples("test"), ctx.labels("test"),
                      kinds=tuple(kinds), severities=tuple(severities), seed=ctx.seed, batch_size=ctx.batch_size,
                      device=ctx.device, amp=ctx.amp, clean_features=ctx.features("test"))
