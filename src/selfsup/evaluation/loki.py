"""Loki: predict labels a probe never saw, from a metric on the label space.

Roberts et al. 2023, "Geometry-Aware Adaptation for Pretrained Models" (NeurIPS). A classifier
trained on K observed classes outputs probabilities p (K,). Instead of argmax over those K, Loki
predicts the label of the whole label space Y (L >= K classes) that is the weighted Frechet mean of
the observed classes: argmin_y sum_k p_k d(y, y_k)^2. A confident classifier still predicts its
own class (d(y_k, y_k) = 0); a hesitant one can land on an unobserved class lying between the
classes it hesitates over. No training is involved: the rule is a fixed linear map of p followed by
an argmin.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .linear import DEFAULT_LAMBDAS, linear_probe


def frechet_predict(probs: torch.Tensor, distances: torch.Tensor, observed: torch.Tensor,
                    chunk_size: int = 4096) -> torch.Tensor:
    """Indices (N,) into Y minimizing sum_k probs[:, k] * distances[y, observed[k]]^2.

    probs (N, K) rows of class probabilities; distances (L, L) a metric on Y; observed (K,) the
    positions in Y of the K classes the probs are over. Exact: every one of the L labels is a
    candidate. Ties go to the smallest index. Rows are done `chunk_size` at a time, so memory stays
    at chunk_size x L.
    """
    probs = torch.as_tensor(probs).double()
    dist = torch.as_tensor(distances).double()
    observed = torch.as_tensor(observed).long()
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ConfigError(f"distances must be a square (L, L) matrix; got shape {tuple(dist.shape)}.",
                          "pass the pairwise distances between all labels of the label space")
    if probs.ndim != 2 or observed.ndim != 1 or probs.shape[1] != len(observed):
        raise ConfigError(f"probs (N, K) and observed (K,) disagree: shapes {tuple(probs.shape)} and "
                          f"{tuple(observed.shape)}.", "give one observed label index per column of probs")
    if len(observed) and (observed.min() < 0 or observed.max() >= len(dist)):
        raise ConfigError(f"observed indices must lie in 0..{len(dist) - 1}; got {observed.tolist()}.",
                          "index the observed classes by their row in distances")
    cost_basis = dist[observed].pow(2)  # (K, L): squared distance from each observed class to every label
    preds = [(chunk @ cost_basis).argmin(dim=1) for chunk in probs.split(chunk_size)]  # (B, L) -> (B,)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def class_embedding_metric(class_means: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (L, L) between class embeddings (L, D), float64.

    The paper's self-derived metric when no external one (a hierarchy, a graph) exists. Euclidean
    rather than cosine: 1 - cos is not a metric (no triangle inequality), and with squared
    Euclidean distances the Frechet objective is ||m_y - sum_k p_k m_k||^2 plus a constant, so Loki
    picks the class whose embedding is nearest the probability-weighted mean of the observed ones.
    L2-normalize the features first if cosine geometry is wanted.
    """
    means = torch.as_tensor(class_means).double()
    return torch.cdist(means, means)


def split_classes(classes: torch.Tensor, unobserved_fraction: float = 0.3,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(observed, unobserved) label values: a seeded `unobserved_fraction` of `classes` is held out.

    At least one class is held out and at least two stay observed (a probe needs two).
    """
    classes = torch.unique(torch.as_tensor(classes))
    if len(classes) < 3 or not 0 < unobserved_fraction < 1:
        raise ConfigError(f"holding out a fraction {unobserved_fraction} of {len(classes)} classes leaves "
                          "nothing to observe or nothing to predict.",
                          "use at least 3 classes and a fraction between 0 and 1")
    n_out = min(max(1, round(unobserved_fraction * len(classes))), len(classes) - 2)
    order = torch.randperm(len(classes), generator=torch.Generator().manual_seed(seed))
    return classes[order[n_out:]].sort().values, classes[order[:n_out]].sort().values


def loki_eval(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
              test_labels: torch.Tensor, distances: torch.Tensor | None = None,
              observed_classes=None, seed: int = 0, unobserved_fraction: float = 0.3,
              temperature: float = 1.0, lambdas: tuple[float, ...] = DEFAULT_LAMBDAS) -> dict[str, float]:
    """Argmax vs Loki for a linear probe fitted on the observed classes only, scored on all classes.

    The label space Y is the sorted unique train labels (L classes); `distances` (L, L) is a
    metric on Y in that order. `observed_classes` are label values; by default `split_classes`
    holds out a seeded `unobserved_fraction`. The probe (`linear_probe`) sees train samples of the
    observed classes only; test samples of every class are scored, so argmax is never right on an
    unobserved class and Loki can be. Probabilities are softmax(logits / temperature).

    Without `distances`, the metric is `class_embedding_metric` of the train feature means of all L
    classes: the labels of unobserved classes' train samples are used to place those classes in
    the metric space, never by the probe, as the paper's self-derived metric places classes by an
    embedding (there, CLIP's text embedding of the class name) without any of their training data.

    Returns {"argmax_accuracy", "loki_accuracy", "argmax_sq_distance", "loki_sq_distance"} (the
    sq distances are E[d(y_hat, y)^2] over the test set), plus "loki_unobserved_accuracy" (on test
    samples of unobserved classes; NaN if none), "loki_unobserved_rate" (fraction of Loki
    predictions that are unobserved classes), "n_classes" and "n_observed".
    """
    train_features, test_features = torch.as_tensor(train_features), torch.as_tensor(test_features)
    train_labels, test_labels = torch.as_tensor(train_labels).long(), torch.as_tensor(test_labels).long()
    classes = torch.unique(train_labels)  # (L,) the label space Y
    unknown = test_labels[~torch.isin(test_labels, classes)].unique()
    if len(unknown):
        raise ConfigError(f"test labels {unknown.tolist()} have no train samples, so they have no place in "
                          "the label space.", "drop those test samples, or add train samples of them")
    if observed_classes is None:
        observed, _ = split_classes(classes, unobserved_fraction, seed)
    else:
        observed = torch.unique(torch.as_tensor(observed_classes).long())
        stray = observed[~torch.isin(observed, classes)]
        if len(stray) or len(observed) < 2:
            raise ConfigError(f"observed_classes must be >= 2 of the train labels {classes.tolist()}; got "
                              f"{observed.tolist()}.", "pass label values, not indices")
    if distances is None:
        x = train_features.double()
        means = torch.stack([x[train_labels == c].mean(dim=0) for c in classes])  # (L, D)
        distances = class_embedding_metric(means)
    distances = torch.as_tensor(distances).double()
    if distances.shape != (len(classes), len(classes)) or not torch.isfinite(distances).all():
        raise ConfigError(f"distances must be a finite ({len(classes)}, {len(classes)}) matrix over the "
                          f"sorted train labels; got shape {tuple(distances.shape)}.",
                          "order rows and columns as torch.unique(train_labels)")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0; got {temperature}.", "use temperature=1.0")

    fit = torch.isin(train_labels, observed)
    _, model = linear_probe(train_features[fit], train_labels[fit], test_features, test_labels,
                            lambdas=lambdas, seed=seed, return_model=True)
    observed_idx = torch.searchsorted(classes, model.classes)  # (K,) probe column -> position in Y
    logits = model.logits(test_features.detach().cpu()).double()  # (M, K)
    argmax_idx = observed_idx[logits.argmax(dim=1)]
    loki_idx = frechet_predict(torch.softmax(logits / temperature, dim=1), distances, observed_idx)
    truth = torch.searchsorted(classes, test_labels)  # (M,) positions in Y
    unseen = ~torch.isin(test_labels, observed)
    loki_unseen = ~torch.isin(classes[loki_idx], observed)
    return {
        "argmax_accuracy": (argmax_idx == truth).double().mean().item(),
        "loki_accuracy": (loki_idx == truth).double().mean().item(),
        "argmax_sq_distance": distances[argmax_idx, truth].pow(2).mean().item(),
        "loki_sq_distance": distances[loki_idx, truth].pow(2).mean().item(),
        "loki_unobserved_accuracy": (loki_idx[unseen] == truth[unseen]).double().mean().item()
        if unseen.any() else float("nan"),
        "loki_unobserved_rate": loki_unseen.double().mean().item(),
        "n_classes": float(len(classes)),
        "n_observed": float(len(observed)),
    }
