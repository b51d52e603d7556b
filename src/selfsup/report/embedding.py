"""A 2-D map of embeddings for the report: PCA to 50 dimensions, then t-SNE (or PCA alone)."""
from __future__ import annotations

import inspect

import numpy as np


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most `max_points` of `n` samples, drawn without replacement (seeded)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def project_2d(features: np.ndarray, method: str = "tsne", seed: int = 0, max_iter: int = 500) -> np.ndarray:
    """(N, D) features -> (N, 2) coordinates. `method`: "tsne" (PCA to 50 first) or "pca".

    t-SNE of 2,000 points takes ~5 s on one core; sklearn's OpenMP threads fight other
    processes on a busy 2-core machine (4x slower measured there), so it runs single-threaded.
    """
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float32)
    x = x - x.mean(axis=0)
    if method not in ("tsne", "pca"):
        raise ValueError(f"unknown projection {method!r}; use 'tsne' or 'pca'")
    n, d = x.shape
    if n < 3 or d < 2:
        return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - d))))
    if method == "pca" or n < 10:
        return PCA(2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    reduced = PCA(min(50, d, n), random_state=seed).fit_transform(x) if d > 50 else x
    # scikit-learn < 1.5 calls the iteration cap n_iter.
    iterations = {"max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter": max_iter}
    with threadpool_limits(limits=1):
        tsne = TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, (n - 1) / 3), **iterations)
        return tsne.fit_transform(reduced)
