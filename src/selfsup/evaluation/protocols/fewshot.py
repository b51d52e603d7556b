"""n-shot episodes on frozen features (Chen et al. 2019)."""
from __future__ import annotations

import torch

from ..context import EvalContext, protocol


def _fewshot_fits(ctx, shots=(1, 5, 10), **_):
    counts = torch.unique(ctx.labels("train"), return_counts=True)[1]
    if len(counts) < 2:
        return f"needs at least 2 classes, and the train split has {len(counts)}"
    shots = (shots,) if isinstance(shots, int) else tuple(shots)
    if shots and max(shots) > int(counts.min()):
        return (f"needs {max(shots)} train examples of every class (shots {', '.join(map(str, shots))}), and the "
                f"rarest class has {int(counts.min())}; lower fewshot.shots")
    return None


@protocol("fewshot", needs_labels=True, seeded=True, fits=_fewshot_fits,
          needs="as many train examples of every class as the largest shot")
def fewshot_protocol(ctx: EvalContext, shots: tuple[int, ...] = (1, 5, 10), episodes: int = 100,
                     queries_per_class: int | None = None) -> dict[str, float]:
    """n-shot logistic regression on frozen features, mean accuracy and 95% CI over sampled episodes."""
    from ..fewshot import few_shot

    return few_shot(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                    shots=tuple(shots), episodes=episodes, queries_per_class=queries_per_class, seed=ctx.seed)
