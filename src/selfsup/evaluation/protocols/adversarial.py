"""A label-free universal perturbation against the encoder, scored by the frozen probe."""
from __future__ import annotations

import torch

from ..context import EvalContext, protocol


@protocol("adversarial", needs_labels=True, requires=("pixels",))
def adversarial_protocol(ctx: EvalContext, eps: float = 8 / 255, steps: int = 20, surrogate: int = 2048) -> dict[str, float]:
    """A universal L-inf perturbation that maximizes the encoder's feature displacement, found
    without labels on `surrogate` train images, applied to the test images: the frozen linear
    probe's accuracy drop (and a random-sign perturbation of the same size for comparison)."""
    from ..adversarial import adversarial_drop

    train_images = ctx.samples("train")
    pick = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(ctx.seed))[:surrogate]
    return adversarial_drop(ctx.encoder, ctx.linear_model().predict, train_images[pick.sort().values],
                            ctx.samples("test"), ctx.labels("test"), eps=eps, steps=steps, seed=ctx.seed,
                            device=ctx.device)
