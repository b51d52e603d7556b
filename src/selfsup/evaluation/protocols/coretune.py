"""Core-tuning (Zhang et al., NeurIPS 2021): fine-tuning with a focal contrastive regularizer."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("coretune", needs_labels=True, seeded=True, slow=True, requires=("pixels",))
def coretune_protocol(ctx: EvalContext, fractions: tuple[float, ...] = (0.1,), epochs: int = 15, lr: float = 0.1,
                      batch_size: int = 128, layer_decay: float = 1.0, mode: str = "full", blocks: int = 2,
                      crop_scale: tuple[float, float] = (0.25, 1.0),
                      eta: float = 0.1, alpha: float = 1.0) -> dict[str, float]:
    """Core-tuning (Zhang et al., NeurIPS 2021): fine-tuning with a focal supervised contrastive
    regularizer on mined hard pairs and mixup-smoothed decision boundaries; same recipe as finetune."""
    from .finetune import _finetune

    return _finetune(ctx, True, fractions, epochs, lr, batch_size, layer_decay, mode, blocks, eta, alpha, "coretune",
                     crop_scale)
