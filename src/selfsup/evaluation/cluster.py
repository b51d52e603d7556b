"""Clustering quality of frozen features: k-means, then NMI, ARI and Hungarian-matched accuracy.

The protocol of the deep-clustering literature (e.g. Caron et al. 2018, "Deep Clustering for
Unsupervised Learning of Visual Features"; Van Gansbeke et al. 2020, "SCAN: Learning to Classify
Images without Labels"): cluster the features without labels, then compare clusters to classes.
Features may be torch tensors or numpy arrays.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError


def as_matrix(x, name: str) -> np.ndarray:
    """(N, D) finite float64 array from a tensor or array-like `x`; DataError names `name` otherwise."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"{name} must be a 2-D (N, D) matrix; got shape {x.shape}.",
                        "pass one feature row per sample.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {x.shape}).", "pass at least one sample with at least one feature.")
    if not np.isfinite(x).all():
        raise DataError(f"{name} has {int((~np.isfinite(x)).sum())} NaN or Inf entries.",
                        "check the encoder for a non-finite output before evaluating.")
    return x


def as_vector(x, name: str, n: int | None = None) -> np.ndarray:
    """(N,) array from a tensor or array-like `x`, of length `n` when given; DataError otherwise."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 1 or len(x) == 0:
        raise DataError(f"{name} must be a non-empty 1-D vector; got shape {x.shape}.", "pass one value per sample.")
    if n is not None and len(x) != n:
        raise DataError(f"{name} has {len(x)} entries but there are {n} samples.", "pass one value per sample.")
    return x


def hungarian_accuracy(labels, clusters) -> float:
    """Accuracy (in [0, 1]) of clusters (N,) against labels (N,) under the best one-to-one map.

    Each cluster is mapped to at most one class and each class to at most one cluster, chosen by
    the Hungarian algorithm on the (clusters x classes) contingency matrix to maximize the matched
    count. The numbers of clusters and classes may differ: samples in unmatched clusters count as
    wrong, so over-clustering is not rewarded. Labels and cluster ids can be any integers.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics.cluster import contingency_matrix

    labels = as_vector(labels, "labels")
    clusters = as_vector(clusters, "clusters", len(labels))
    counts = contingency_matrix(clusters, labels)  # (clusters, classes)
    rows, cols = linear_sum_assignment(counts, maximize=True)  # rectangular: min(clusters, classes) pairs
    return float(counts[rows, cols].sum() / len(labels))


def cluster_metrics(features, labels, n_clusters: int | None = None, seed: int = 0, n_init: int = 4,
                    max_iter: int = 100, normalize: bool = True) -> dict[str, float]:
    """k-means on features (N, D), scored against labels (N,) -> {"nmi", "ari", "accuracy", "n_clusters"}.

    `n_clusters` defaults to the number of distinct labels. With `normalize`, rows are L2-normalized
    first: SSL encoders are trained and compared by cosine similarity, so the norm of a feature
    carries no meaning the loss asked for, and on the unit sphere squared Euclidean distance is
    2 - 2 cos, so k-means then groups by cosine (spherical k-means up to the centroid norm).

    Deterministic for a `seed`. n_init=4 (scikit-learn's "auto" runs k-means++ once): on digits
    one init gave accuracy 0.74 on average and 0.68 at worst over 5 seeds, four gave 0.79 on every
    seed. max_iter=100 (300 in
    scikit-learn) caps the worst case, pure noise, which needs ~135 iterations, at +0.01% inertia.
    Measured on one (shared, busy) thread, 10,000 x 128 with 10 clusters: 0.5 s on Gaussian blobs,
    2 s on noise. `accuracy` is :func:`hungarian_accuracy`; `n_clusters` is a float like every value.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = as_matrix(features, "features")
    labels = as_vector(labels, "labels", len(x))
    n_clusters = len(np.unique(labels)) if n_clusters is None else n_clusters
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not 1 <= n_clusters <= len(x):
        raise ConfigError(f"n_clusters must be an integer in [1, {len(x)}] (at most one per sample); "
                          f"got {n_clusters!r}.",
                          "pass a smaller n_clusters, or None for the number of classes.")
    for option, value in (("n_init", n_init), ("max_iter", max_iter)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{option} must be a positive integer; got {value!r}.", f"pass {option}=1 or more.")
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # a zero row stays zero
    # float32: half the time of float64, and cluster assignments do not need more digits.
    km = KMeans(n_clusters=int(n_clusters), n_init=int(n_init), max_iter=int(max_iter), random_state=seed)
    clusters = km.fit_predict(x.astype(np.float32))
    return {"nmi": float(normalized_mutual_info_score(labels, clusters)),
            "ari": float(adjusted_rand_score(labels, clusters)),
            "accuracy": hungarian_accuracy(labels, clusters),
            "n_clusters": float(n_clusters)}
