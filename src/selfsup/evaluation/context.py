"""What a protocol sees and how protocols run: the evaluation context, the registration decorator,
the fit check (requirements, labels, class counts) and the runner.

A protocol is a function ``protocol(ctx: EvalContext, **options) -> dict[str, float]`` registered
with ``@protocol(name, ...)`` in its own module (``evaluation/protocols/``); its keyword defaults are
its options (``knn``: k=20, temperature=0.07, ...). ``ctx`` hands it the encoder, the datasets and
their features, which are extracted on first use and cached on disk, so five protocols cost one
forward pass. What a protocol needs (labels, capabilities of the data or the backbone, class
counts) it declares; :func:`unfit_reason` checks it before any protocol runs. Nothing here names
a kind of data: the dataset's modality plug-in answers what differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..capabilities import backbone_name, describe
from ..capabilities import reason as capability_reason
from ..errors import ConfigError, DataError
from ..modalities import modality_of
from ..registry import check_kwargs, get, register
from .features import cached_features

DEFAULT_PROTOCOLS = ("knn", "linear", "rankme", "alignment_uniformity")


@dataclass
class EvalContext:
    """What a protocol may use. `test` may be None (label-free protocols run on `train` alone)."""

    encoder: nn.Module
    train: object  # a dataset of any modality (selfsup.modalities)
    test: object = None
    device: str | torch.device = "cpu"
    seed: int = 0
    amp: bool = False
    cache_dir: str | Path | None = None
    batch_size: int = 1024
    read_caches: tuple = ()  # further feature caches to read (a run's own features/), copied into cache_dir on a hit
    _features: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)

    def dataset(self, split: str):
        data = self.train if split == "train" else self.test
        if data is None:
            raise DataError(f"no {split!r} split to evaluate on.", "pass a test dataset to evaluate().")
        return data

    def features(self, split: str) -> torch.Tensor:
        """(N, D) float32 features of the 'train' or 'test' samples, extracted once (and cached on disk)."""
        if split not in self._features:
            if self.cache_dir is not None and self.read_caches:
                self._copy_from_read_caches(self.dataset(split))
            # No split key: the pixel hash in the cache key tells splits apart, and other callers
            # (the report's embedding map) then hit the same cache files.
            data = self.dataset(split)
            self._features[split] = cached_features(self.encoder, data, cache_dir=self.cache_dir,
                                                    batch_size=self.batch_size, device=self.device, amp=self.amp,
                                                    progress=f"evaluate: features of {data.name} ({split})")
        return self._features[split]

    def _copy_from_read_caches(self, data) -> None:
        """Features this encoder already has for `data` in a read cache (a study written to a new
        folder finds the run's own features/) are copied into cache_dir instead of extracted again."""
        from .features import FeatureCache

        cache = FeatureCache(self.cache_dir)
        key = cache.key(self.encoder, data, None, self.amp)
        if cache.get(key) is not None:
            return
        for folder in self.read_caches:
            found = FeatureCache(folder).get(key)
            if found is not None and len(found) == len(data):
                try:
                    cache.put(key, found)
                except OSError:
                    pass  # the study's cache is only a cache; cached_features writes it or reports the disk
                return

    def labels(self, split: str) -> torch.Tensor:
        return self.dataset(split).labels

    def samples(self, split: str):
        """The raw samples of a split as its dataset stores them (uint8 images for protocols that
        require pixels: ``unfit_reason`` has checked the data provides what they need)."""
        return self.dataset(split).samples

    def linear_fit(self, lambdas: tuple[float, ...] | None = None, max_iter: int | None = None):
        """(result, LinearModel) of the L-BFGS linear probe on all clean train features, fitted once per
        (seed, options) and shared: the linear protocol, the 100% label fraction and the probes that
        robustness and adversarial attack are the same fit (it is the costliest step of a study)."""
        from .linear import DEFAULT_LAMBDAS, PROBE_MAX_ITER, linear_probe

        lambdas = DEFAULT_LAMBDAS if lambdas is None else lambdas
        max_iter = PROBE_MAX_ITER if max_iter is None else max_iter
        key = ("linear", self.seed, tuple(lambdas), int(max_iter))
        if key not in self._memo:
            self._memo[key] = linear_probe(self.features("train"), self.labels("train"), self.features("test"),
                                           self.labels("test"), lambdas=tuple(lambdas), seed=self.seed,
                                           max_iter=max_iter, return_model=True)
        return self._memo[key]

    def linear_model(self):
        """The L-BFGS linear probe fitted on the clean train features (once per seed), as a LinearModel."""
        return self.linear_fit()[1]

    def missing_labels(self) -> str | None:
        """Why supervised protocols cannot run, or None when both splits have labels."""
        for split in ("train", "test"):
            data = self.train if split == "train" else self.test
            if data is None:
                return "no test split was given"
            if data.labels is None:
                return f"the {split} split of '{data.name}' has no labels"
        return None


def protocol(name: str, needs_labels: bool, seeded: bool = False, slow: bool = False,
             requires: tuple[str, ...] = (), fits: Callable | None = None, needs: str = "") -> Callable:
    """Register a protocol function under `name`. `needs_labels`: it needs labelled train and test
    splits; `seeded`: its result depends on ctx.seed (sampled episodes, subsets, starts), so a study
    runs it once per seed; `slow`: it trains through the backbone (fine-tuning), so "all" leaves it out;
    `requires`: capabilities of the data or the backbone (``selfsup.capabilities``: pixels for those
    that transform images, feature_maps for probes on every stage), as for methods;
    `fits(ctx, **options) -> str | None`: why it cannot run on this encoder and data (None: it can),
    checked before any protocol runs; `needs`: those further requirements in words, for
    `selfsup protocols`."""
    def wrap(fn):
        fn.needs_labels, fn.seeded, fn.slow, fn.requires = needs_labels, seeded, slow, tuple(requires)
        fn.fits, fn.needs = fits, needs
        return register("protocol", name)(fn)
    return wrap


def requirements(name: str) -> str:
    """What protocol `name` needs, in words (`selfsup protocols`)."""
    fn = get("protocol", name)
    parts = ["labelled train and test splits" if fn.needs_labels else "no labels"]
    parts += [describe(c) for c in fn.requires]
    if fn.needs:
        parts.append(fn.needs)
    return "; ".join(parts)


def unfit_reason(name: str, ctx: "EvalContext", options: dict | None = None) -> str | None:
    """Why protocol `name` (with `options`) cannot run on `ctx`'s encoder and data, or None.

    Checked before any work: the capabilities it requires of the data and the backbone
    (``requires``), labels (`needs_labels`), then the protocol's own `fits` (class counts, ...)."""
    fn = get("protocol", name)
    backbone = getattr(ctx.encoder, "backbone", ctx.encoder)
    why = capability_reason(fn.requires, modality_of(ctx.train), backbone, ctx.train.name, backbone_name(backbone),
                            ctx.train)
    if why:
        return why
    if fn.needs_labels:
        missing = ctx.missing_labels()
        if missing:
            return f"needs labels, and {missing}"
    if fn.fits is not None:
        return fn.fits(ctx, **(options or {}))
    return None


def classes_in(ctx: "EvalContext") -> int:
    return int(torch.unique(ctx.labels("train")).numel())


def default_views(encoder: nn.Module, data):
    """The pretraining views of `data` for an encoder (the modality's auto preset, two global views),
    for protocols that measure invariance to them."""
    return modality_of(data).eval_views(encoder, data)


def evaluate(encoder: nn.Module, train, test=None,
             protocols: tuple[str, ...] | None = None, cache_dir: str | Path | None = None,
             device: str | torch.device = "cpu", seed: int = 0, amp: bool = False,
             options: dict[str, dict[str, Any]] | None = None, knn_k: int | None = None,
             knn_temperature: float | None = None, batch_size: int = 1024, strict: bool | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run `protocols` (default: knn, linear, rankme, alignment_uniformity) -> {protocol: {name: number}}.

    `options` maps a protocol to its keyword options (``{"knn": {"k": 200}}``); `knn_k` and
    `knn_temperature` are shortcuts for the kNN ones. Every protocol is checked against the encoder
    and data first (:func:`unfit_reason`: labels, the kind of data, class counts, backbone stages).
    With `strict` (the default when `protocols` is given) a protocol that does not fit is a
    DataError before any work; otherwise it is skipped with ``{"skipped": "<why>"}``.
    `progress(text)` is called before each protocol (the CLI prints it).
    """
    explicit = protocols is not None
    strict = explicit if strict is None else strict
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
    reasons = {name: unfit_reason(name, ctx, options.get(name)) for name in functions}
    unfit = {name: why for name, why in reasons.items() if why}
    if unfit and strict:
        name, why = next(iter(unfit.items()))
        runnable = [p for p in protocols if p not in unfit]
        others = [n for n in unfit if n != name]
        raise DataError(f"protocol {name!r} {why}" + (f" (nor do {', '.join(others)} fit)" if others else "") + ".",
                        f"evaluate on data it fits, or leave it out (these fit: {', '.join(runnable) or 'none'}; "
                        "`selfsup protocols` lists what each needs).")
    results: dict[str, dict[str, Any]] = {}
    for i, (name, fn) in enumerate(functions.items()):
        if name in unfit:
            results[name] = {"skipped": unfit[name]}
            continue
        if progress is not None:
            progress(f"{name} ({i + 1}/{len(functions)})")
        results[name] = fn(ctx, **options.get(name, {}))
    return results
