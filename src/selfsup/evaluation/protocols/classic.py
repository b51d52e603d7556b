"""The classic linear protocol: SGD on a linear head over augmented images through the frozen backbone."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("classic", needs_labels=True, seeded=True, slow=True, requires=("pixels",))
def classic_protocol(ctx: EvalContext, epochs: int = 10, lr: float = 0.1, batch_size: int = 256,
            weight_decay: float = 0.0) -> dict[str, float]:
    """SGD linear head on augmented (crop + flip) images through the frozen backbone; slow."""
    from ..classic import classic_linear_eval, crop_flip_views

    views = crop_flip_views(ctx.encoder)
    return classic_linear_eval(ctx.encoder, ctx.samples("train"), ctx.labels("train"), ctx.features("test"),
                               ctx.labels("test"), views, epochs=epochs, lr=lr, batch_size=batch_size,
                               weight_decay=weight_decay, seed=ctx.seed, amp=ctx.amp)
