"""Out-of-distribution detection on frozen features: kNN and Mahalanobis scores, AUROC and FPR@95.

Every score is "higher = more OOD". The intended use holds some classes out: train and
in-distribution test features come from the kept classes, OOD test features from the held-out
ones. Features may be torch tensors or numpy arrays; scores come back as float64 numpy arrays.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .cluster import as_matrix, as_vector

# Sun et al. 2022's k for CIFAR-10 (5,000 train samples a class); 1000 for ImageNet. It suits
# thousands of samples a class: on digits (90 a class) k=1 reached AUROC 0.99 where k=50 gave 0.85.
DEFAULT_K = 50


def _check_dims(train: np.ndarray, test: np.ndarray, what: str) -> None:
    if train.shape[1] != test.shape[1]:
        raise DataError(f"{what} features have dimension {test.shape[1]} but train features {train.shape[1]}.",
                        "extract both with the same encoder.")


def knn_ood_scores(train_features, test_features, k: int = DEFAULT_K, chunk_size: int = 512) -> np.ndarray:
    """Distance (M,) of each test feature (M, D) to its k-th nearest train feature (N, D).

    Sun, Ming, Zhu, Li 2022, "Out-of-Distribution Detection with Deep Nearest Neighbors": rows are
    L2-normalized, the score is the Euclidean distance to the k-th neighbour (in [0, 2]). `k` larger
    than N uses the N-th (farthest) neighbour. Test rows go `chunk_size` at a time, so memory stays
    at chunk_size x N similarities (60k train: 120 MB) instead of M x N. The time is the matmul:
    60k train x 10k test x 128 took 16-18 s on one (shared, busy) thread, topk a fifth of it.
    """
    train, test = as_matrix(train_features, "train_features"), as_matrix(test_features, "test_features")
    _check_dims(train, test, "test")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer; got {k!r}.", f"pass k={DEFAULT_K} (Sun et al. 2022).")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer; got {chunk_size!r}.", "pass chunk_size=512.")
    k = min(int(k), len(train))
    train = torch.nn.functional.normalize(torch.from_numpy(train), dim=1)  # (N, D) float64
    test = torch.nn.functional.normalize(torch.from_numpy(test), dim=1)  # (M, D) float64
    train_t = train.float().T.contiguous()  # (D, N) float32: the neighbour search is the cost
    scores = []
    for start in range(0, len(test), chunk_size):
        block = test[start:start + chunk_size]  # (B, D)
        kth = (block.float() @ train_t).topk(k, dim=1).indices[:, -1]  # (B,) the k-th most similar
        # The distance from the float64 difference, not sqrt(2 - 2 cos) in float32 (3 digits at best near 0).
        scores.append((block - train[kth]).norm(dim=1))
    return torch.cat(scores).numpy()


def mahalanobis_ood_scores(train_features, train_labels, test_features, ridge: float = 1e-6) -> np.ndarray:
    """Smallest Mahalanobis distance (M,) of test features (M, D) to the class means of train (N, D).

    Lee, Lee, Lee, Shin 2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples
    and Adversarial Attacks": one Gaussian per class with a shared (tied) covariance, the mean of the
    within-class scatter; the feature-space score without input preprocessing or layer ensembles.
    (They score with the squared distance; its ranking, so AUROC and FPR@95, is the same.)

    In float64. `ridge` x the mean variance is added to the covariance's diagonal: collapsed
    features give a singular covariance that has no inverse; with the ridge, a typical-sized step
    along a direction the train features never vary in counts 1 / sqrt(ridge) = 1000 standard
    deviations (very OOD, which it is) instead of crashing.
    Relative to the mean variance so it does not depend on the feature scale. Small, because it
    changes the score: on digits pixels (0-4 vs 5-9; 4 pixels constant in train) ridge 1e-12 and
    1e-6 gave the same AUROC to 4 digits, 1e-3 moved FPR@95 from 0.75 to 0.63.
    """
    train, test = as_matrix(train_features, "train_features"), as_matrix(test_features, "test_features")
    labels = as_vector(train_labels, "train_labels", len(train))
    _check_dims(train, test, "test")
    if not ridge > 0:
        raise ConfigError(f"ridge must be positive; got {ridge!r}.", "pass ridge=1e-6.")
    classes, y = np.unique(labels, return_inverse=True)  # (K,), (N,) in 0..K-1
    means = np.zeros((len(classes), train.shape[1]))  # (K, D)
    np.add.at(means, y, train)
    means /= np.bincount(y)[:, None]
    centred = train - means[y]  # (N, D)
    cov = centred.T @ centred / len(train)  # (D, D) shared within-class covariance
    scale = np.trace(cov) / len(cov) if np.trace(cov) > 0 else 1.0  # all-equal features: any scale
    # eigh rather than Cholesky: round-off can leave a collapsed covariance slightly indefinite.
    values, vectors = np.linalg.eigh(cov)
    whiten = vectors / np.sqrt(np.clip(values, 0.0, None) + ridge * scale)  # (D, D): cov^-1 = W W^T
    test_w, means_w = test @ whiten, means @ whiten  # (M, D), (K, D)
    best = np.full(len(test), np.inf)
    for mean in means_w:  # one class at a time: M x D memory, and no cancellation of |a|^2 + |b|^2 - 2ab
        best = np.minimum(best, ((test_w - mean) ** 2).sum(axis=1))
    return np.sqrt(best)


def _scores(in_scores, out_scores) -> tuple[np.ndarray, np.ndarray]:
    pair = []
    for name, s in (("in_scores", in_scores), ("out_scores", out_scores)):
        s = as_vector(s, name).astype(np.float64)
        if not np.isfinite(s).all():
            raise DataError(f"{name} has {int((~np.isfinite(s)).sum())} NaN or Inf scores.", "pass finite scores.")
        pair.append(s)
    return pair[0], pair[1]


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve with OOD (out_scores (M_out,)) positive and higher score = more OOD.

    Equals P(out > in) + 0.5 P(out == in) over all (in, out) pairs: 1 is perfect, 0.5 is chance.
    """
    from sklearn.metrics import roc_auc_score

    s_in, s_out = _scores(in_scores, out_scores)
    is_out = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    return float(roc_auc_score(is_out, np.r_[s_in, s_out]))


def fpr_at_95_tpr(in_scores, out_scores) -> float:
    """FPR@95 (in [0, 1], lower is better) of scores where higher = more OOD.

    The convention of Liang et al. 2018 (ODIN) and Sun et al. 2022: the fraction of OOD samples
    wrongly accepted as in-distribution when 95% of in-distribution samples are correctly accepted.
    A sample is accepted when its score is <= t, with t the smallest in-distribution score such
    that at least 95% of in_scores (M_in,) are <= t, i.e. the ceil(0.95 M_in)-th smallest; the
    result is the fraction of out_scores (M_out,) that are <= t. Ties are deterministic: a threshold
    cannot split equal scores, so an OOD score equal to t counts as accepted (a false positive),
    and tied in-distribution scores at t may push the true positive rate above 95%.
    """
    s_in, s_out = _scores(in_scores, out_scores)
    rank = -(-95 * len(s_in) // 100)  # ceil(0.95 M_in), exact in integers (no float 0.95 to round)
    threshold = np.sort(s_in)[rank - 1]
    return float((s_out <= threshold).mean())


def ood_metrics(train_features, train_labels, in_features, out_features, k: int = DEFAULT_K) -> dict[str, float]:
    """kNN and Mahalanobis OOD detection of out_features (M_out, D) against in_features (M_in, D).

    Both scores are fitted on train_features (N, D) with train_labels (N,) of the in-distribution
    classes -> {"knn_auroc", "knn_fpr95", "mahalanobis_auroc", "mahalanobis_fpr95"}.
    """
    in_x, out_x = as_matrix(in_features, "in_features"), as_matrix(out_features, "out_features")
    _check_dims(in_x, out_x, "out")
    test = np.concatenate([in_x, out_x])  # (M_in + M_out, D)
    results = {}
    for name, scores in (("knn", knn_ood_scores(train_features, test, k=k)),
                         ("mahalanobis", mahalanobis_ood_scores(train_features, train_labels, test))):
        s_in, s_out = scores[:len(in_x)], scores[len(in_x):]
        results[f"{name}_auroc"], results[f"{name}_fpr95"] = auroc(s_in, s_out), fpr_at_95_tpr(s_in, s_out)
    return results
