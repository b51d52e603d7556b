"""Label-scarce evaluation on frozen features: n-shot episodes and linear probes on label fractions.

`few_shot` fits a logistic regression on n labelled examples per class, many times over, and
reports the mean test accuracy with a 95% confidence interval, as in few-shot benchmarks (Chen et
al. 2019, "A Closer Look at Few-shot Classification"). `label_fractions` runs the linear probe on
nested 1% / 10% / 100% subsets of the labels, as in "Evaluating Self-Supervised Learning in
Medical Imaging: A Benchmark for Robustness, Generalizability, and Multi-Domain Impact" (the
MedMNIST self-supervised benchmark).
"""
from __future__ import annotations

import math

import torch

from ..errors import ConfigError, DataError, closest
from .linear import fit_logistic, linear_probe

# One L2 strength for every episode: with 1 shot nothing is left to validate on. On scikit-learn's
# digits (64-d pixels) and on Fashion-MNIST (784-d pixels, 256-d random ReLU features) the mean
# accuracy at 1, 5 and 10 shots moves by at most 0.8 points from 1e-3 to 1e-1 (1e-1 a shade better
# on Fashion-MNIST, 1e-3 on digits at 10 shots), and falls at 1.0 (digits 10-shot 0.88 -> 0.84):
# 1e-2 sits in the middle of that plateau.
FEW_SHOT_LAMBDA = 1e-2
# L-BFGS iterations per episode. On those sets the mean accuracy after 10 is within 0.35 points of
# converged fits (~18 iterations to a 1e-5 gradient), less than the 95% CI of 100 episodes, and it
# halves the time; 5 iterations lose up to 2.5 points at 10 shots.
FEW_SHOT_MAX_ITER = 10
PROBE_OPTIONS = ("lambdas", "val_fraction", "max_iter")


def _per_class(labels: torch.Tensor, classes: torch.Tensor) -> list[torch.Tensor]:
    return [(labels == c).nonzero().flatten() for c in classes]


def _draw(index: list[torch.Tensor], n: int, generator: torch.Generator) -> torch.Tensor:
    """(K * n,) indices: n distinct ones from each class, class by class."""
    return torch.cat([idx[torch.randperm(len(idx), generator=generator)[:n]] for idx in index])


def _need(index: list[torch.Tensor], classes: torch.Tensor, n: int, what: str, option: str) -> None:
    counts = torch.tensor([len(idx) for idx in index])
    if n > counts.min():
        k = int(counts.argmin())
        raise ConfigError(f"{option}={n} but class {classes[k].item()} has only {counts[k].item()} {what} "
                          f"examples.", f"use {option} <= {counts[k].item()}, or drop that class.")


def _episode(x: torch.Tensor, y: torch.Tensor, k: int, lam: float, max_iter: int,
             query_x: torch.Tensor, query_y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """Accuracy on (Q, D) queries of a logistic regression fitted on the (S, D) support, standardized
    with `mean` and `std` (D,)."""
    weight, bias, _ = fit_logistic((x - mean) / std, y, k, lam, max_iter=max_iter)
    # ((q - mean) / std) @ W.T + b with the standardization folded into W: one pass over the queries.
    weight = weight / std
    logits = query_x @ weight.T + (bias - mean @ weight.T)  # (Q, K)
    return (logits.argmax(1) == query_y).float().mean().item()


def few_shot(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
             test_labels: torch.Tensor, shots=(1, 5, 10), episodes: int = 100,
             queries_per_class: int | None = None, lam: float = FEW_SHOT_LAMBDA,
             max_iter: int = FEW_SHOT_MAX_ITER, seed: int = 0, return_episodes: bool = False):
    """n-shot accuracy of logistic regression, mean and 95% CI over episodes. Features (N, D) / (M, D).

    Each episode draws n distinct train examples of every class (the support), fits multinomial
    logistic regression with L2 `lam` on it (features standardized with the statistics of the
    whole, unlabelled, train set), and scores
    the whole test set, or `queries_per_class` test examples of each class drawn anew. The episodes
    of n shots come from a generator seeded with (seed, n): asking for fewer shots leaves the
    others unchanged. Returns {"{n}shot": mean accuracy, "{n}shot_ci95": 1.96 * std / sqrt(episodes)
    (sample std; NaN for one episode), "episodes"}; with `return_episodes`, also
    {n: {"accuracy": (E,), "support": (E, K * n) train indices, "query": (E, K * q) test indices or None}}.
    100 episodes at 1, 5 and 10 shots of 10 classes, 128-d, 10k test examples: 3.5 s of CPU on one
    thread (a busy 2-core machine), 85% of it in `fit_logistic`; the first optimizer of a process
    adds ~2 s of torch imports.
    """
    shots = (shots,) if isinstance(shots, int) else tuple(shots)
    if not shots or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shots):
        raise ConfigError(f"shots must be positive integers, got {shots!r}.", "pass e.g. shots=(1, 5, 10).")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes must be a positive integer, got {episodes!r}.", "pass e.g. episodes=100.")
    if queries_per_class is not None and (isinstance(queries_per_class, bool) or not isinstance(queries_per_class, int)
                                          or queries_per_class < 1):
        raise ConfigError(f"queries_per_class must be a positive integer or None, got {queries_per_class!r}.",
                          "pass e.g. queries_per_class=15, or None to score the whole test set.")
    for split, x, y in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        if len(x) == 0 or len(x) != len(y):
            raise DataError(f"{split} features ({len(x)} rows) and labels ({len(y)}) must be equal and non-empty.",
                            f"pass one label per {split} feature row.")
    x_train, x_test = train_features.detach().float().cpu(), test_features.detach().float().cpu()
    classes, y_train = torch.unique(train_labels.cpu(), return_inverse=True)  # labels -> 0..K-1
    k = len(classes)
    if k < 2:
        raise DataError(f"few-shot evaluation needs at least 2 classes; the train labels have {k}.",
                        "evaluate on a labelled dataset with several classes.")
    test_labels = test_labels.cpu().to(classes.dtype)
    y_test = torch.searchsorted(classes, test_labels).clamp(max=k - 1)
    unseen = classes[y_test] != test_labels
    if unseen.any():
        raise DataError(f"test label {test_labels[unseen][0].item()} does not occur in the train labels.",
                        "evaluate on splits with the same classes.")
    train_index = _per_class(y_train, torch.arange(k))
    _need(train_index, classes, max(shots), "train", "shots")
    if queries_per_class is not None:
        test_index = _per_class(y_test, torch.arange(k))
        _need(test_index, classes, queries_per_class, "test", "queries_per_class")

    # Standardized with the statistics of ALL train features, which needs no labels: the unlabelled
    # pool is there in every few-shot use of a pretrained encoder, and the support's own statistics
    # (n rows) cost 3-5 points at 1 shot (digits 0.566 vs 0.594, Fashion-MNIST pixels 0.395 vs 0.442).
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    results, record = {}, {}
    for n in dict.fromkeys(shots):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + n)  # per n: see the docstring
        accuracy, supports, queries = torch.empty(episodes, dtype=torch.float64), [], []
        for e in range(episodes):
            support = _draw(train_index, n, generator)
            query = _draw(test_index, queries_per_class, generator) if queries_per_class else None
            qx, qy = (x_test, y_test) if query is None else (x_test[query], y_test[query])
            accuracy[e] = _episode(x_train[support], y_train[support], k, lam, max_iter, qx, qy, mean, std)
            supports.append(support)
            queries.append(query)
        results[f"{n}shot"] = accuracy.mean().item()
        results[f"{n}shot_ci95"] = 1.96 * accuracy.std().item() / math.sqrt(episodes) if episodes > 1 else math.nan
        record[n] = {"accuracy": accuracy, "support": torch.stack(supports),
                     "query": torch.stack(queries) if queries_per_class else None}
    results["episodes"] = float(episodes)
    return (results, record) if return_episodes else results


def _check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"label fraction {fraction!r} is not in (0, 1].",
                          "pass a share of the labels, e.g. 0.01 for 1% or 1.0 for all.")
    return float(fraction)


def fraction_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices (S,) of a stratified `fraction` of `labels` (N,), for probes and fine-tuning.

    Of each class it keeps max(1, round(fraction * count)) examples (halves round up): the first
    ones of a permutation drawn per class from a generator seeded with `seed`. The permutations do
    not depend on `fraction`, so with one seed the 1% subset lies inside the 10% subset.
    """
    fraction = _check_fraction(fraction)
    if labels.ndim != 1 or len(labels) == 0:
        raise DataError(f"labels must be a non-empty 1-d tensor, got shape {tuple(labels.shape)}.",
                        "pass one label per example.")
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for index in _per_class(labels, torch.unique(labels)):
        index = index[torch.randperm(len(index), generator=generator)]
        parts.append(index[:max(1, math.floor(fraction * len(index) + 0.5))])
    return torch.cat(parts).sort().values


def label_fractions(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                    test_labels: torch.Tensor, fractions=(0.01, 0.1, 1.0), seed: int = 0, full=None,
                    **probe_options) -> dict[str, float]:
    """Linear-probe accuracy with a share of the train labels. Features (N, D) / (M, D).

    For each fraction, `linear_probe` (with `probe_options`: lambdas, val_fraction, max_iter) on
    `fraction_subset(train_labels, fraction, seed)`. Returns {"linear@{pct}%": test accuracy,
    "n@{pct}%": subset size}, e.g. "linear@1%", "linear@10%", "linear@100%".
    `full`: a callable returning that same probe's result on all train features (the subset at
    fraction 1 is every index in order), for a caller that has already fitted it.
    """
    fractions = tuple(fractions) if isinstance(fractions, (tuple, list)) else (fractions,)
    if not fractions:
        raise ConfigError("no label fractions given.", "pass e.g. fractions=(0.01, 0.1, 1.0).")
    fractions = tuple(_check_fraction(f) for f in fractions)
    for name in probe_options:
        if name not in PROBE_OPTIONS:
            raise ConfigError(f"unknown linear probe option {name!r}.{closest(name, PROBE_OPTIONS)}",
                              f"use one of {', '.join(PROBE_OPTIONS)}.")
    results = {}
    for fraction in fractions:
        index = fraction_subset(train_labels, fraction, seed)
        if fraction == 1.0 and full is not None:
            probe = full()
        else:
            probe = linear_probe(train_features[index], train_labels[index], test_features, test_labels,
                                 seed=seed, **probe_options)
        pct = f"{100 * fraction:g}"
        results[f"linear@{pct}%"] = probe["accuracy"]
        results[f"n@{pct}%"] = float(len(index))
    return results
