"""Evaluation protocols for a frozen encoder, run on features extracted once and cached.

A protocol is a function ``protocol(ctx: EvalContext, **options) -> dict[str, float]`` registered
with ``@register("protocol", name)``; its keyword defaults are its options (``knn``: k=20,
temperature=0.07, ...). ``ctx`` hands it the encoder, the datasets and their features, which are
extracted on first use and cached on disk, so five protocols cost one forward pass. A protocol
that needs labels says so with ``needs_labels = True``. (The functions are named ``<name>_protocol``
so they do not shadow the submodules ``knn``, ``linear``, ... of this package.)

    results = evaluate(encoder, train_set, test_set, protocols=("knn", "linear"), cache_dir="runs/x/features")
    results["knn"]["accuracy"]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data.dataset import ImageDataset
from ..data.table import TableDataset
from ..errors import ConfigError, DataError
from ..registry import check_kwargs, get, register
from .features import cached_features, extract_features
from .linear import DEFAULT_LAMBDAS

DEFAULT_PROTOCOLS = ("knn", "linear", "rankme", "alignment_uniformity")


@dataclass
class EvalContext:
    """What a protocol may use. `test` may be None (label-free protocols run on `train` alone)."""

    encoder: nn.Module
    train: ImageDataset | TableDataset
    test: ImageDataset | TableDataset | None = None
    device: str | torch.device = "cpu"
    seed: int = 0
    amp: bool = False
    cache_dir: str | Path | None = None
    batch_size: int = 1024
    _features: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def dataset(self, split: str) -> ImageDataset | TableDataset:
        data = self.train if split == "train" else self.test
        if data is None:
            raise DataError(f"no {split!r} split to evaluate on.", "pass a test dataset to evaluate().")
        return data

    def features(self, split: str) -> torch.Tensor:
        """(N, D) float32 features of the 'train' or 'test' samples, extracted once (and cached on disk)."""
        if split not in self._features:
            # No split key: the pixel hash in the cache key tells splits apart, and other callers
            # (the report's embedding map) then hit the same cache files.
            self._features[split] = cached_features(self.encoder, self.dataset(split), cache_dir=self.cache_dir,
                                                    batch_size=self.batch_size, device=self.device, amp=self.amp)
        return self._features[split]

    def labels(self, split: str) -> torch.Tensor:
        return self.dataset(split).labels

    def missing_labels(self) -> str | None:
        """Why supervised protocols cannot run, or None when both splits have labels."""
        for split in ("train", "test"):
            data = self.train if split == "train" else self.test
            if data is None:
                return "no test split was given"
            if data.labels is None:
                return f"the {split} split of '{data.name}' has no labels"
        return None


def protocol(name: str, needs_labels: bool) -> Callable:
    """Register a protocol function under `name`, marking whether it needs labels."""
    def wrap(fn):
        fn.needs_labels = needs_labels
        return register("protocol", name)(fn)
    return wrap


@protocol("knn", needs_labels=True)
def knn_protocol(ctx: EvalContext, k: int = 20, temperature: float = 0.07) -> dict[str, float]:
    """Weighted kNN accuracy (k neighbours, votes exp(cos / temperature)) of test on train features."""
    from .knn import knn_accuracy

    acc = knn_accuracy(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                       k=k, temperature=temperature)
    return {"accuracy": acc, "k": float(min(k, len(ctx.train)))}


@protocol("linear", needs_labels=True)
def linear_protocol(ctx: EvalContext, lambdas: tuple[float, ...] = DEFAULT_LAMBDAS,
           max_iter: int = 200) -> dict[str, float]:
    """L-BFGS logistic-regression probe; L2 strength chosen on a 10% stratified holdout of train."""
    from .linear import linear_probe

    return linear_probe(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                        lambdas=tuple(lambdas), seed=ctx.seed, max_iter=max_iter)


@protocol("classic", needs_labels=True)
def classic_protocol(ctx: EvalContext, epochs: int = 10, lr: float = 0.1, batch_size: int = 256,
            weight_decay: float = 0.0) -> dict[str, float]:
    """SGD linear head on augmented (crop + flip) images through the frozen backbone; slow."""
    from .classic import classic_linear_eval, crop_flip_views

    if ctx.train.modality != "image":
        raise ConfigError("protocol 'classic' trains on augmented images; this dataset is a table.",
                          "use the linear protocol (L-BFGS on frozen features) for tables.")
    views = crop_flip_views(ctx.encoder)
    return classic_linear_eval(ctx.encoder, ctx.train.images, ctx.labels("train"), ctx.features("test"),
                               ctx.labels("test"), views, epochs=epochs, lr=lr, batch_size=batch_size,
                               weight_decay=weight_decay, seed=ctx.seed, amp=ctx.amp)


@protocol("rankme", needs_labels=False)
def rankme_protocol(ctx: EvalContext, eps: float = 1e-7) -> dict[str, float]:
    """Effective rank of the train features (1 = collapsed, D = every dimension used evenly)."""
    from .labelfree import rankme as effective_rank

    feats = ctx.features("train")
    return {"rank": effective_rank(feats, eps), "dim": float(feats.shape[1])}


@protocol("alignment_uniformity", needs_labels=False)
def alignment_uniformity_protocol(ctx: EvalContext, n: int = 2048, alpha: float = 2.0, t: float = 2.0) -> dict[str, float]:
    """Alignment of two augmented views and uniformity, on `n` train images (Wang & Isola 2020)."""
    from .labelfree import alignment_uniformity as measure

    generator = torch.Generator().manual_seed(ctx.seed)
    return measure(ctx.encoder, ctx.train.samples, default_views(ctx.encoder, ctx.train), n=n,
                   generator=generator, alpha=alpha, t=t)


def default_views(encoder: nn.Module, data):
    """The pretraining augmentation preset for `data`: Fashion-MNIST's for 1-channel 28x28, else
    SimCLR's; for a table SCARF's corruption of every view (marginals from `data` itself)."""
    from ..views import ImageViews, TableViews, fmnist_views, scarf_views, simclr_views

    if data.modality == "table":
        numeric = [c.kind == "numeric" for c in data.schema.columns]
        return TableViews(scarf_views(corrupt_first=True), encoder.mean.flatten().tolist(), encoder.std.flatten().tolist(),
                          data.values, numeric)

    fmnist = data.channels == 1 and tuple(data.image_size) == (28, 28)
    config = fmnist_views() if fmnist else simclr_views(data.image_size[0])
    return ImageViews(config, encoder.mean.flatten().tolist(), encoder.std.flatten().tolist())


def evaluate(encoder: nn.Module, train: ImageDataset | TableDataset, test: ImageDataset | TableDataset | None = None,
             protocols: tuple[str, ...] | None = None, cache_dir: str | Path | None = None,
             device: str | torch.device = "cpu", seed: int = 0, amp: bool = False,
             options: dict[str, dict[str, Any]] | None = None, knn_k: int | None = None,
             knn_temperature: float | None = None, batch_size: int = 1024) -> dict[str, dict[str, Any]]:
    """Run `protocols` (default: knn, linear, rankme, alignment_uniformity) -> {protocol: {name: number}}.

    `options` maps a protocol to its keyword options (``{"knn": {"k": 200}}``); `knn_k` and
    `knn_temperature` are shortcuts for the kNN ones. Protocols that need labels are skipped with
    ``{"skipped": "<why>"}`` when labels are missing and `protocols` was left to its default; asked
    for by name, they raise DataError instead.
    """
    explicit = protocols is not None
    protocols = tuple(protocols) if explicit else DEFAULT_PROTOCOLS
    options = {name: dict(kw) for name, kw in (options or {}).items()}
    if knn_k is not None:
        options.setdefault("knn", {})["k"] = knn_k
    if knn_temperature is not None:
        options.setdefault("knn", {})["temperature"] = knn_temperature
    for name in options:
        if name not in protocols:
            raise ConfigError(f"options given for protocol {name!r}, which is not run.",
                              f"add it to protocols ({', '.join(protocols)}) or drop its options.")
    functions = {name: get("protocol", name) for name in protocols}  # unknown names fail before any work
    for name, kw in options.items():
        check_kwargs("protocol", name, kw)

    ctx = EvalContext(encoder, train, test, device=device, seed=seed, amp=amp, cache_dir=cache_dir,
                      batch_size=batch_size)
    missing = ctx.missing_labels()
    results: dict[str, dict[str, Any]] = {}
    for name, fn in functions.items():
        if getattr(fn, "needs_labels", False) and missing:
            if explicit:
                raise DataError(f"protocol {name!r} needs labels, but {missing}.",
                                "evaluate on a labelled dataset, or run only label-free protocols "
                                "(rankme, alignment_uniformity).")
            results[name] = {"skipped": f"needs labels; {missing}"}
            continue
        results[name] = fn(ctx, **options.get(name, {}))
    return results


__all__ = ["DEFAULT_PROTOCOLS", "EvalContext", "evaluate", "extract_features", "cached_features", "protocol"]
