"""Long-tailed (class-imbalanced) versions of a training split, and probes scored per frequency group.

Yang & Xu, "Rethinking the Value of Labels for Improving Class-Imbalanced Learning", NeurIPS 2020
(arXiv:2006.07529), study self-supervised pretraining on long-tailed data (CIFAR-10-LT and
others, imbalance ratios 10 to 100). Their long-tailed splits follow Cui et al. 2019 / Cao et al.
2019: class i of K (in label order) keeps n_i = n_max * ratio ** (-i / (K - 1)) training samples,
so the first class keeps all of its n_max and the last n_max / ratio. Here the kept samples of a
class are a seeded random subset, the same for every pretraining seed (the data, not the run, is
long-tailed).

Accuracy is reported over the balanced test split, overall and per group of classes by training
frequency: many, medium and few are the thirds of the classes ranked by their training counts
(``numpy.array_split`` of the ranking: 4 / 3 / 3 classes for K = 10). The usual ImageNet-LT
thresholds (> 100, 20..100, < 20 samples) would put every Fashion-MNIST class in "many" at ratio 10,
so thirds are used; the group sizes are reported with the accuracies.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError


def long_tail_counts(class_counts: list[int], ratio: float) -> list[int]:
    """Kept samples per class (label order): n_max * ratio ** (-i / (K - 1)), at most what exists, at least 1."""
    if not ratio >= 1:
        raise ConfigError(f"imbalance ratio {ratio} is below 1.", "use a ratio >= 1, e.g. 10 or 100 (1 = balanced).")
    k = len(class_counts)
    n_max = max(class_counts)
    return [max(1, min(c, int(n_max * ratio ** (-i / max(1, k - 1))))) for i, c in enumerate(class_counts)]


def long_tail_subset(labels: torch.Tensor, ratio: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a long-tailed subset of `labels` (N,) (see the module docstring)."""
    classes = torch.unique(labels)
    counts = [int((labels == c).sum()) for c in classes]
    keep = long_tail_counts(counts, ratio)
    g = torch.Generator().manual_seed(seed)
    parts = []
    for c, n in zip(classes, keep):
        index = (labels == c).nonzero().flatten()
        parts.append(index[torch.randperm(len(index), generator=g)[:n]])
    return torch.cat(parts).sort().values


def frequency_groups(train_labels: torch.Tensor) -> dict[str, list[int]]:
    """{"many", "medium", "few"}: the thirds of the classes ranked by training count, most first."""
    classes, counts = torch.unique(train_labels, return_counts=True)
    ranked = classes[torch.argsort(counts, descending=True, stable=True)].tolist()
    many, medium, few = (list(map(int, g)) for g in np.array_split(ranked, 3))
    return {"many": many, "medium": medium, "few": few}


def grouped_accuracy(predictions: torch.Tensor, labels: torch.Tensor, groups: dict[str, list[int]]) -> dict[str, float]:
    """Overall accuracy and the mean per-class accuracy within each group."""
    out = {"accuracy": (predictions == labels).float().mean().item()}
    for name, members in groups.items():
        per_class = [(predictions[labels == c] == c).float().mean().item() for c in members if (labels == c).any()]
        out[name] = float(np.mean(per_class)) if per_class else float("nan")
    return out


def long_tail_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                    test_labels: torch.Tensor, ratios=(10, 100), seed: int = 0, **probe_options) -> dict[str, float]:
    """Linear probe on long-tailed subsets of the train features, scored on the balanced test set:
    for each ratio r, ``linear@lt{r}`` (overall), ``many@lt{r}``, ``medium@lt{r}``, ``few@lt{r}``
    (mean per-class accuracy of each frequency group) and ``n@lt{r}`` (train samples kept)."""
    from .linear import linear_probe

    results = {}
    for ratio in ratios:
        index = long_tail_subset(train_labels, ratio, seed)
        sub_labels = train_labels[index]
        _, model = linear_probe(train_features[index], sub_labels, test_features, test_labels, seed=seed,
                                return_model=True, **probe_options)
        scores = grouped_accuracy(model.predict(test_features), test_labels, frequency_groups(sub_labels))
        tag = f"lt{ratio:g}"
        results[f"linear@{tag}"] = scores["accuracy"]
        for group in ("many", "medium", "few"):
            results[f"{group}@{tag}"] = scores[group]
        results[f"n@{tag}"] = float(len(index))
    return results
