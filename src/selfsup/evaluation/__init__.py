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
from .linear import DEFAULT_LAMBDAS, PROBE_MAX_ITER

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
    read_caches: tuple = ()  # further feature caches to read (a run's own features/), copied into cache_dir on a hit
    _features: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)

    def dataset(self, split: str) -> ImageDataset | TableDataset:
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

    def images(self, split: str, protocol: str) -> torch.Tensor:
        """The uint8 images of a split, for protocols that transform inputs (a table is a ConfigError)."""
        data = self.dataset(split)
        if data.modality != "image":
            raise ConfigError(f"protocol {protocol!r} transforms images; '{data.name}' is a {data.modality} dataset.",
                              "run it on image data, or choose protocols that work on features.")
        return data.images

    def linear_fit(self, lambdas: tuple[float, ...] = DEFAULT_LAMBDAS, max_iter: int = PROBE_MAX_ITER):
        """(result, LinearModel) of the L-BFGS linear probe on all clean train features, fitted once per
        (seed, options) and shared: the linear protocol, the 100% label fraction and the probes that
        robustness and adversarial attack are the same fit (it is the costliest step of a study)."""
        from .linear import linear_probe

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
             modalities: tuple[str, ...] = ("image", "table"), fits: Callable | None = None,
             needs: str = "") -> Callable:
    """Register a protocol function under `name`. `needs_labels`: it needs labelled train and test
    splits; `seeded`: its result depends on ctx.seed (sampled episodes, subsets, starts), so a study
    runs it once per seed; `slow`: it trains through the backbone (fine-tuning), so "all" leaves it out;
    `modalities`: the data it works on (those that transform images say ("image",)), as for methods;
    `fits(ctx, **options) -> str | None`: why it cannot run on this encoder and data (None: it can),
    checked before any protocol runs; `needs`: those further requirements in words, for
    `selfsup protocols`."""
    def wrap(fn):
        fn.needs_labels, fn.seeded, fn.slow, fn.modalities = needs_labels, seeded, slow, tuple(modalities)
        fn.fits, fn.needs = fits, needs
        return register("protocol", name)(fn)
    return wrap


def requirements(name: str) -> str:
    """What protocol `name` needs, in words (`selfsup protocols`)."""
    fn = get("protocol", name)
    parts = ["labelled train and test splits" if fn.needs_labels else "no labels"]
    if tuple(fn.modalities) != ("image", "table"):
        parts.append(" or ".join(f"{m} data" for m in fn.modalities))
    if fn.needs:
        parts.append(fn.needs)
    return "; ".join(parts)


def unfit_reason(name: str, ctx: "EvalContext", options: dict | None = None) -> str | None:
    """Why protocol `name` (with `options`) cannot run on `ctx`'s encoder and data, or None.

    Checked before any work: the data's kind (`modalities`), labels (`needs_labels`), then the
    protocol's own `fits` (class counts, backbone stages, ...)."""
    fn = get("protocol", name)
    modality = ctx.train.modality
    if modality not in fn.modalities:
        kinds = " and ".join(f"{m} data" for m in fn.modalities)
        return f"works on {kinds} only, and '{ctx.train.name}' is {modality} data"
    if fn.needs_labels:
        missing = ctx.missing_labels()
        if missing:
            return f"needs labels, and {missing}"
    if fn.fits is not None:
        return fn.fits(ctx, **(options or {}))
    return None


def _classes(ctx: "EvalContext") -> int:
    return int(torch.unique(ctx.labels("train")).numel())


@protocol("knn", needs_labels=True)
def knn_protocol(ctx: EvalContext, k: int = 20, temperature: float = 0.07) -> dict[str, float]:
    """Weighted kNN accuracy (k neighbours, votes exp(cos / temperature)) of test on train features."""
    from .knn import knn_accuracy

    acc = knn_accuracy(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                       k=k, temperature=temperature)
    return {"accuracy": acc, "k": float(min(k, len(ctx.train)))}


@protocol("linear", needs_labels=True)
def linear_protocol(ctx: EvalContext, lambdas: tuple[float, ...] = DEFAULT_LAMBDAS,
           max_iter: int = PROBE_MAX_ITER) -> dict[str, float]:
    """L-BFGS logistic-regression probe; L2 strength chosen on a 10% stratified holdout of train."""
    return dict(ctx.linear_fit(tuple(lambdas), max_iter)[0])


@protocol("classic", needs_labels=True, seeded=True, slow=True, modalities=("image",))
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


@protocol("alignment_uniformity", needs_labels=False, seeded=True)
def alignment_uniformity_protocol(ctx: EvalContext, n: int = 2048, alpha: float = 2.0, t: float = 2.0) -> dict[str, float]:
    """Alignment of two augmented views and uniformity, on `n` train images (Wang & Isola 2020)."""
    from .labelfree import alignment_uniformity as measure

    generator = torch.Generator().manual_seed(ctx.seed)
    return measure(ctx.encoder, ctx.train.samples, default_views(ctx.encoder, ctx.train), n=n,
                   generator=generator, alpha=alpha, t=t)


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
    from .fewshot import few_shot

    return few_shot(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                    shots=tuple(shots), episodes=episodes, queries_per_class=queries_per_class, seed=ctx.seed)


@protocol("fractions", needs_labels=True, seeded=True)
def fractions_protocol(ctx: EvalContext, fractions: tuple[float, ...] = (0.01, 0.1, 1.0)) -> dict[str, float]:
    """Linear probe on nested, stratified 1% / 10% / 100% subsets of the train labels."""
    from .fewshot import label_fractions

    return label_fractions(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                           fractions=fractions, seed=ctx.seed, full=lambda: ctx.linear_fit()[0])


def _finetune(ctx: EvalContext, core: bool, fractions, epochs, lr, batch_size, layer_decay, mode, blocks,
              eta, alpha, name, crop_scale=(0.25, 1.0)) -> dict[str, float]:
    from .classic import crop_flip_views
    from .fewshot import fraction_subset
    from .finetune import finetune

    train_images, test_images = ctx.images("train", name), ctx.images("test", name)
    results = {}
    for fraction in fractions:
        index = fraction_subset(ctx.labels("train"), fraction, ctx.seed)
        out = finetune(ctx.encoder, train_images[index], ctx.labels("train")[index], test_images, ctx.labels("test"),
                       crop_flip_views(ctx.encoder, scale=tuple(crop_scale)), epochs=epochs, lr=lr, batch_size=min(batch_size, len(index)),
                       layer_decay=layer_decay, mode=mode, blocks=blocks, core=core, eta=eta, alpha=alpha,
                       seed=ctx.seed, amp=ctx.amp)
        results[f"finetune@{fraction * 100:g}%"] = out["accuracy"]
    return results


@protocol("finetune", needs_labels=True, seeded=True, slow=True, modalities=("image",))
def finetune_protocol(ctx: EvalContext, fractions: tuple[float, ...] = (0.1,), epochs: int = 15, lr: float = 0.1,
                      batch_size: int = 128, layer_decay: float = 1.0, mode: str = "full", blocks: int = 2,
                      crop_scale: tuple[float, float] = (0.25, 1.0)) -> dict[str, float]:
    """Fine-tune a copy of the backbone + a linear classifier (SGD, cosine) on a label fraction; full
    or partial (the last `blocks` blocks), with layer-wise learning-rate decay.

    Defaults measured on the fmnist-cpu SimCLR encoder (BENCHMARKS.md, 10% of the labels, seed 0):
    lr 0.01 for 5 epochs reached 0.749 test accuracy (below the frozen linear probe: the random
    head and the backbone underfit), lr 0.1 for 5 epochs 0.818, lr 0.1 for 15 epochs 0.864; crops
    of 25-100% (the make-run recipe's) over 8-100%: 0.752 against 0.749 at lr 0.01."""
    return _finetune(ctx, False, fractions, epochs, lr, batch_size, layer_decay, mode, blocks, 0.0, 1.0, "finetune",
                     crop_scale)


@protocol("coretune", needs_labels=True, seeded=True, slow=True, modalities=("image",))
def coretune_protocol(ctx: EvalContext, fractions: tuple[float, ...] = (0.1,), epochs: int = 15, lr: float = 0.1,
                      batch_size: int = 128, layer_decay: float = 1.0, mode: str = "full", blocks: int = 2,
                      crop_scale: tuple[float, float] = (0.25, 1.0),
                      eta: float = 0.1, alpha: float = 1.0) -> dict[str, float]:
    """Core-tuning (Zhang et al., NeurIPS 2021): fine-tuning with a focal supervised contrastive
    regularizer on mined hard pairs and mixup-smoothed decision boundaries; same recipe as finetune."""
    return _finetune(ctx, True, fractions, epochs, lr, batch_size, layer_decay, mode, blocks, eta, alpha, "coretune",
                     crop_scale)


def _multilayer_fits(ctx, **_):
    from .multilayer import has_layers

    if has_layers(ctx.encoder):
        return None
    backbone = getattr(ctx.encoder, "backbone", ctx.encoder)
    return f"needs a backbone with stages (convnet, resnet, scatnet), and this encoder's is {type(backbone).__name__}"


@protocol("multilayer", needs_labels=True, modalities=("image",), fits=_multilayer_fits,
          needs="a backbone with stages (convnet, resnet, scatnet)")
def multilayer_protocol(ctx: EvalContext) -> dict[str, float]:
    """Linear probes on the pooled feature map of every backbone stage, and on all stages together."""
    from .multilayer import extract_layer_features, has_layers, multilayer_probe

    if not has_layers(ctx.encoder):
        raise ConfigError("protocol 'multilayer' needs a backbone with stages (convnet, resnet, scatnet).",
                          "run it on such an encoder, or leave it out.")
    key = "layers"
    if key not in ctx._memo:
        ctx._memo[key] = {split: extract_layer_features(ctx.encoder, ctx.images(split, "multilayer"), ctx.device, ctx.amp,
                                                        ctx.batch_size) for split in ("train", "test")}
    layers = ctx._memo[key]
    return multilayer_probe(layers["train"], ctx.labels("train"), layers["test"], ctx.labels("test"), seed=ctx.seed)


@protocol("cluster", needs_labels=True, seeded=True)
def cluster_protocol(ctx: EvalContext, n_clusters: int | None = None) -> dict[str, float]:
    """k-means on the L2-normalized test features: NMI, ARI and Hungarian accuracy against the labels."""
    from .cluster import cluster_metrics

    return cluster_metrics(ctx.features("test"), ctx.labels("test"), n_clusters=n_clusters, seed=ctx.seed)


def _held_out(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    classes = torch.unique(labels)
    n_out = max(1, round(fraction * len(classes)))
    if n_out >= len(classes):
        raise ConfigError(f"held_out={fraction} leaves no in-distribution class of {len(classes)}.",
                          "hold out a smaller fraction, e.g. 0.3.")
    return classes[torch.randperm(len(classes), generator=torch.Generator().manual_seed(seed))[:n_out]]


def _ood_fits(ctx, held_out=0.3, **_):
    k = _classes(ctx)
    if k < 2 or max(1, round(held_out * k)) >= k:
        return f"holds out a fraction {held_out} of the classes and needs one left in; the train split has {k} class(es)"
    return None


@protocol("ood", needs_labels=True, seeded=True, fits=_ood_fits, needs="at least 2 classes (some are held out)")
def ood_protocol(ctx: EvalContext, held_out: float = 0.3, k: int = 50, other: str | None = None) -> dict[str, float]:
    """Out-of-distribution detection with held-out classes: the train features of the other classes
    are the in-distribution reference; kNN-distance and Mahalanobis scores, AUROC and FPR@95.
    `other`: also score another dataset (a name or path, same input kind) as OOD against all classes."""
    from .ood import ood_metrics

    train_f, train_y, test_f, test_y = ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test")
    out_classes = _held_out(train_y, held_out, ctx.seed)
    inside_train, inside_test = ~torch.isin(train_y, out_classes), ~torch.isin(test_y, out_classes)
    results = ood_metrics(train_f[inside_train], train_y[inside_train], test_f[inside_test], test_f[~inside_test], k=k)
    results["held_out_classes"] = float(len(out_classes))
    if other is not None:
        from ..data import load_dataset
        from .features import cached_features

        extra = load_dataset(other, split="test", image_size=getattr(ctx.test, "image_size", None),
                             schema=getattr(ctx.train, "schema", None))
        extra_f = cached_features(ctx.encoder, extra, cache_dir=ctx.cache_dir, batch_size=ctx.batch_size,
                                  device=ctx.device, amp=ctx.amp)
        for key, value in ood_metrics(train_f, train_y, test_f, extra_f, k=k).items():
            results[f"other_{key}"] = value
    return results


@protocol("robustness", needs_labels=True, modalities=("image",))
def robustness_protocol(ctx: EvalContext, kinds: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "contrast",
                                                                     "pixelate", "occlusion"),
                        severities: tuple[int, ...] = (1, 2, 3, 4, 5)) -> dict[str, float]:
    """Accuracy of the frozen linear probe (fitted on clean train features) on corrupted test images,
    per corruption and severity, and the relative drop from clean."""
    from .robustness import robustness

    model = ctx.linear_model()
    return robustness(ctx.encoder, model.predict, ctx.images("test", "robustness"), ctx.labels("test"),
                      kinds=tuple(kinds), severities=tuple(severities), seed=ctx.seed, batch_size=ctx.batch_size,
                      device=ctx.device, amp=ctx.amp, clean_features=ctx.features("test"))


@protocol("adversarial", needs_labels=True, modalities=("image",))
def adversarial_protocol(ctx: EvalContext, eps: float = 8 / 255, steps: int = 20, surrogate: int = 2048) -> dict[str, float]:
    """A universal L-inf perturbation that maximizes the encoder's feature displacement, found
    without labels on `surrogate` train images, applied to the test images: the frozen linear
    probe's accuracy drop (and a random-sign perturbation of the same size for comparison)."""
    from .adversarial import adversarial_drop

    train_images = ctx.images("train", "adversarial")
    pick = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(ctx.seed))[:surrogate]
    return adversarial_drop(ctx.encoder, ctx.linear_model().predict, train_images[pick.sort().values],
                            ctx.images("test", "adversarial"), ctx.labels("test"), eps=eps, steps=steps, seed=ctx.seed,
                            device=ctx.device)


@protocol("alpha_req", needs_labels=False)
def alpha_req_protocol(ctx: EvalContext, k_min: int = 11, k_max: int = 100) -> dict[str, float]:
    """alpha-ReQ: the power-law decay of the train features' covariance spectrum (about 1 is healthy)."""
    from .spectrum import alpha_req

    return {"alpha": alpha_req(ctx.features("train"), k_min=k_min, k_max=k_max)}


@protocol("separability", needs_labels=False, seeded=True)
def separability_protocol(ctx: EvalContext, n: int = 2000) -> dict[str, float]:
    """Unsupervised class-separability estimate from the H0 persistence of a train subsample (no labels)."""
    from .spectrum import class_separability

    return {"score": class_separability(ctx.features("train"), n=n, seed=ctx.seed)}


def _loki_fits(ctx, unobserved_fraction=0.3, **_):
    k = _classes(ctx)
    if k < 3:
        return f"holds classes out of the probe and needs 2 observed and 1 unobserved, so at least 3 classes; " \
               f"the train split has {k}"
    return None


@protocol("loki", needs_labels=True, seeded=True, fits=_loki_fits, needs="at least 3 classes")
def loki_protocol(ctx: EvalContext, unobserved_fraction: float = 0.3) -> dict[str, float]:
    """Loki (Roberts et al., NeurIPS 2023): a probe trained on some classes predicts every class by the
    Frechet mean under a metric of class-embedding distances; against argmax."""
    from .loki import loki_eval

    return loki_eval(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                     seed=ctx.seed, unobserved_fraction=unobserved_fraction)


def _two_classes(ctx, **_):
    k = _classes(ctx)
    return None if k >= 2 else f"needs at least 2 classes, and the train split has {k}"


@protocol("longtail", needs_labels=True, fits=_two_classes, needs="at least 2 classes")
def longtail_protocol(ctx: EvalContext, ratios: tuple[float, ...] = (10, 100)) -> dict[str, float]:
    """Linear probe on long-tailed subsets of the train split (imbalance ratios 10 and 100), scored on
    the balanced test split overall and for the many / medium / few-shot classes."""
    from .imbalance import long_tail_probe

    return long_tail_probe(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"),
                           ratios=tuple(ratios), seed=ctx.seed)


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


__all__ = ["DEFAULT_PROTOCOLS", "EvalContext", "evaluate", "extract_features", "cached_features", "protocol",
           "requirements", "unfit_reason"]
