"""Label-free quality metrics from the spectrum and the topology of frozen features.

`alpha_req`: power-law decay of the feature covariance eigenspectrum (alpha-ReQ).
`class_separability`: how clustered the features are, from the H0 persistent homology of their
Vietoris-Rips filtration (Gourgoulias, Ghalyan et al.). `rank_correlations`: how well such a metric
tracks kNN accuracy over a run's checkpoints. Everything here is float64 numpy and needs no labels.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from ..errors import ConfigError


def _float64(features, name: str = "features") -> np.ndarray:
    if hasattr(features, "detach"):  # a torch tensor, on any device
        features = features.detach().cpu().double().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ConfigError(f"{name} must be a 2-D array (N, D) with N >= 2; got shape {x.shape}.",
                          "pass one row per sample")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name} contain {int((~np.isfinite(x)).sum())} NaN or Inf values.",
                          "drop the non-finite rows, or check the encoder for a numerical fault")
    return x


def eigenspectrum(features) -> np.ndarray:
    """Eigenvalues (min(N, D),) of the covariance of features (N, D), largest first, float64.

    Features are centred (it is a covariance), not standardized: rescaling single dimensions would
    change the spectrum being measured. Round-off negatives are clipped to 0.
    """
    x = _float64(features)
    x = x - x.mean(axis=0)
    cov = x.T @ x / (len(x) - 1)  # (D, D)
    eig = np.linalg.eigvalsh(cov)[::-1][:min(x.shape)]
    return np.clip(eig, 0.0, None)


def alpha_req(features, k_min: int = 11, k_max: int = 100, rank_weighted: bool = True) -> float:
    """Power-law decay coefficient alpha of the covariance eigenspectrum: lambda_k ~ k^-alpha.

    Agrawal, Mondal, Ghosh & Richards 2022, "alpha-ReQ: Assessing Representation Quality in
    Self-Supervised Learning by measuring eigenspectrum decay". alpha is minus the slope of a
    least-squares line through (log k, log lambda_k) for ranks k_min..k_max (1-based, inclusive),
    cut at the last eigenvalue above 1e-12 lambda_1 (N < D or collapsed features leave zeros).
    The paper reads alpha near 1 as healthy; much smaller means a flat, noise-like spectrum, much
    larger a nearly collapsed one. Invariant to the scale of the features.

    Choices, from the authors' public code (fastssl, utils/powerlaw.py), since the paper's text was
    not readable here: features are centred; the fit skips the top ranks (they carry the few
    dominant, class-level directions and bend away from the power law) and the far tail (sampling
    noise); each rank has weight 1/k (`rank_weighted`), which gives every octave of ranks the same
    total weight instead of letting the many high ranks dominate the line.
    """
    if not 1 <= k_min < k_max:
        raise ConfigError(f"alpha_req needs 1 <= k_min < k_max; got k_min={k_min}, k_max={k_max}.",
                          "use e.g. k_min=11, k_max=100")
    eig = eigenspectrum(features)
    positive = int((eig > 1e-12 * eig[0]).sum()) if eig[0] > 0 else 0
    last = min(k_max, positive)
    if last - k_min + 1 < 2:
        raise ConfigError(
            f"alpha_req needs >= 2 nonzero eigenvalues in ranks {k_min}..{k_max}; the features "
            f"(N={len(features)}, {positive} nonzero eigenvalues) have {max(0, last - k_min + 1)}.",
            "lower k_min, or use more samples / wider features")
    ranks = np.arange(k_min, last + 1, dtype=np.float64)
    log_k, log_l = np.log(ranks), np.log(eig[k_min - 1:last])
    w = 1.0 / ranks if rank_weighted else np.ones_like(ranks)
    design = np.stack([log_k, np.ones_like(log_k)], axis=1)  # (R, 2): slope, intercept
    sw = np.sqrt(w)[:, None]
    (slope, _), *_ = np.linalg.lstsq(design * sw, log_l * sw[:, 0], rcond=None)
    return float(-slope)


def h0_persistence(features) -> np.ndarray:
    """Death times (N-1,) of the H0 classes of the Vietoris-Rips filtration of the rows, ascending.

    Every point is born at scale 0 and a component dies when an edge of that length first joins it
    to another, so the deaths are exactly the edge lengths of a Euclidean minimum spanning tree.
    Prim's algorithm on the dense distance matrix: O(N^2) memory and time, fine up to a few
    thousand points (scipy's csgraph MST would drop zero-length edges between duplicate points).
    """
    x = _float64(features)
    sq = np.einsum("nd,nd->n", x, x)
    dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0.0, None))  # (N, N)
    n = len(x)
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    reach = dist[0].copy()  # shortest edge from the tree to each point
    deaths = np.empty(n - 1)
    for step in range(n - 1):
        reach[in_tree] = np.inf
        j = int(np.argmin(reach))
        deaths[step] = reach[j]
        in_tree[j] = True
        np.minimum(reach, dist[j], out=reach)
    return np.sort(deaths)


def class_separability(features, n: int = 2000, seed: int = 0, normalize: bool = True) -> float:
    """Label-free class separability in [0, 1) of features (N, D); larger = more separable.

    After Gourgoulias, Ghalyan et al. 2023, "Estimating class separability of text embeddings with
    persistent homology" (arXiv 2305.15016, first titled "An Unsupervised Method for Estimating
    Class Separability of Datasets with Application to LLMs Fine-Tuning"): the H0 persistence times
    p_i of the Vietoris-Rips filtration, divided by the largest one (removes the data's scale).
    Separated classes give a few long bars (the merges between classes) and many short ones, so the
    mean normalized persistence is small; this returns 1 - mean(p_i / max p). It depends on the
    sample size, so compare values computed with the same `n`, e.g. across checkpoints of a run,
    as the paper does to decide when fine-tuning stops improving the embeddings. One far outlier
    inflates max p and the score with it.

    A random subsample of `n` rows (seeded, so the value is deterministic per `seed`) keeps it to
    seconds. `normalize` L2-normalizes rows first (cosine geometry); the paper finds the score
    tracks separability better on normalized embeddings. Identical points give 0.
    """
    x = _float64(features)
    if n < 3:
        raise ConfigError(f"class_separability needs n >= 3 points; got n={n}.", "use n=2000")
    if len(x) > n:
        x = x[np.random.default_rng(seed).choice(len(x), size=n, replace=False)]
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    p = h0_persistence(x)
    if p[-1] <= 0:
        return 0.0
    return float(1.0 - np.mean(p / p[-1]))


def rank_correlations(metric_values, accuracies) -> dict[str, float]:
    """Spearman and Kendall rank correlations between a metric and accuracy over checkpoints.

    +1: the metric orders the checkpoints exactly as accuracy does; -1: exactly reversed (for a
    metric where lower is better, such as |alpha - 1|, that is the good case). NaN when either
    list is constant.
    """
    m = np.asarray(metric_values, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if m.ndim != 1 or m.shape != a.shape or len(m) < 2:
        raise ConfigError(f"rank_correlations needs two 1-D lists of the same length >= 2; got "
                          f"{len(np.atleast_1d(m))} metric values and {len(np.atleast_1d(a))} accuracies.",
                          "pass one metric value and one accuracy per checkpoint")
    if np.ptp(m) == 0 or np.ptp(a) == 0:  # scipy would warn and return NaN
        return {"spearman": float("nan"), "kendall": float("nan")}
    return {"spearman": float(stats.spearmanr(m, a).statistic),
            "kendall": float(stats.kendalltau(m, a).statistic)}
