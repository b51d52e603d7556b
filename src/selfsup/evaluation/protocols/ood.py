"""Out-of-distribution detection with held-out classes (or another dataset)."""
from __future__ import annotations

import torch

from ...errors import ConfigError
from ..context import EvalContext, classes_in, protocol


def _held_out(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    classes = torch.unique(labels)
    n_out = max(1, round(fraction * len(classes)))
    if n_out >= len(classes):
        raise ConfigError(f"held_out={fraction} leaves no in-distribution class of {len(classes)}.",
                          "hold out a smaller fraction, e.g. 0.3.")
    return classes[torch.randperm(len(classes), generator=torch.Generator().manual_seed(seed))[:n_out]]


def _ood_fits(ctx, held_out=0.3, **_):
    k = classes_in(ctx)
    if k < 2 or max(1, round(held_out * k)) >= k:
        return f"holds out a fraction {held_out} of the classes and needs one left in; the train split has {k} class(es)"
    return None


@protocol("ood", needs_labels=True, seeded=True, fits=_ood_fits, needs="at least 2 classes (some are held out)")
def ood_protocol(ctx: EvalContext, held_out: float = 0.3, k: int = 50, other: str | None = None) -> dict[str, float]:
    """Out-of-distribution detection with held-out classes: the train features of the other classes
    are the in-distribution reference; kNN-distance and Mahalanobis scores, AUROC and FPR@95.
    `other`: also score another dataset (a name or path, same input kind) as OOD against all classes."""
    from ..ood import ood_metrics

    train_f, train_y, test_f, test_y = ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test")
    out_classes = _held_out(train_y, held_out, ctx.seed)
    inside_train, inside_test = ~torch.isin(train_y, out_classes), ~torch.isin(test_y, out_classes)
    results = ood_metrics(train_f[inside_train], train_y[inside_train], test_f[inside_test], test_f[~inside_test], k=k)
    results["held_out_classes"] = float(len(out_classes))
    if other is not None:
        from ...data import load_dataset
        from ..features import cached_features

        extra = load_dataset(other, split="test", image_size=getattr(ctx.test, "image_size", None),
                             schema=getattr(ctx.train, "schema", None))
        extra_f = cached_features(ctx.encoder, extra, cache_dir=ctx.cache_dir, batch_size=ctx.batch_size,
                                  device=ctx.device, amp=ctx.amp)
        for key, value in ood_metrics(train_f, train_y, test_f, extra_f, k=k).items():
            results[f"other_{key}"] = value
    return results
