"""Clustering metrics and OOD detection: against hand-worked cases, slow direct computations and digits."""
import itertools

import numpy as np
import pytest
import torch

from selfsup.errors import ConfigError, DataError
from selfsup.evaluation.cluster import cluster_metrics, hungarian_accuracy
from selfsup.evaluation.ood import (auroc, fpr_at_95_tpr, knn_ood_scores, mahalanobis_ood_scores,
                                    ood_metrics)


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_digits()  # 1,797 x 64 pixels in 0..16, shipped with scikit-learn
    return data.data, data.target


def _from_contingency(counts):
    """labels, clusters whose (cluster x class) contingency matrix is `counts`."""
    labels, clusters = [], []
    for c, row in enumerate(counts):
        for k, n in enumerate(row):
            labels += [k] * n
            clusters += [c] * n
    return np.array(labels), np.array(clusters)


def _brute_force_accuracy(labels, clusters):
    classes, cluster_ids = np.unique(labels), np.unique(clusters)
    size = max(len(classes), len(cluster_ids))  # ids past the real ones stand for "unmatched"
    best = 0
    for perm in itertools.permutations(range(size), len(cluster_ids)):
        mapped = np.array([perm[np.searchsorted(cluster_ids, c)] for c in clusters])
        truth = np.searchsorted(classes, labels)
        best = max(best, int((mapped == truth).sum()))
    return best / len(labels)


# ---- hungarian_accuracy ------------------------------------------------------------------------

def test_hungarian_permuted_labelling_is_perfect():
    labels = np.repeat(np.arange(5), 7)
    clusters = np.array([40, 3, 17, 9, 0])[labels]  # a relabelling with arbitrary ids
    assert hungarian_accuracy(labels, clusters) == 1.0
    assert hungarian_accuracy(torch.from_numpy(labels), torch.from_numpy(clusters)) == 1.0


def test_hungarian_hand_worked_3x3_beats_greedy():
    # clusters x classes. Greedy takes the 5 first and ends at 5 + 0 + 1 = 6; the best one-to-one
    # map is c0 -> class 1 (4), c1 -> class 0 (4), c2 -> class 2 (1): 9 of 14.
    labels, clusters = _from_contingency([[5, 4, 0], [4, 0, 0], [0, 0, 1]])
    assert hungarian_accuracy(labels, clusters) == pytest.approx(9 / 14)


def test_hungarian_more_or_fewer_clusters_than_classes():
    labels = np.array([0, 0, 0, 1, 1, 1])
    # 4 clusters for 2 classes: only 2 can be matched (2 + 2), the other 2 samples count as wrong.
    assert hungarian_accuracy(labels, np.array([0, 0, 1, 2, 2, 3])) == pytest.approx(4 / 6)
    assert hungarian_accuracy(labels, np.zeros(6, dtype=int)) == pytest.approx(3 / 6)  # one cluster


def test_hungarian_matches_brute_force_on_random_cases():
    rng = np.random.default_rng(0)
    for n_classes, n_clusters in [(3, 5), (5, 3), (4, 4)]:
        labels, clusters = rng.integers(0, n_classes, 40), rng.integers(0, n_clusters, 40)
        assert hungarian_accuracy(labels, clusters) == pytest.approx(_brute_force_accuracy(labels, clusters))


# ---- cluster_metrics ---------------------------------------------------------------------------

def test_cluster_metrics_separated_blobs_are_perfect_and_deterministic():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 600)
    features = 10 * rng.normal(size=(4, 16))[labels] + rng.normal(size=(600, 16))  # apart in angle too
    result = cluster_metrics(features, labels)
    assert result["n_clusters"] == 4
    for key in ("nmi", "ari", "accuracy"):
        assert result[key] > 0.99, (key, result)
    assert cluster_metrics(torch.from_numpy(features).float(), torch.from_numpy(labels)) == result


def test_cluster_metrics_random_labels_give_zero_nmi_ari():
    rng = np.random.default_rng(1)
    result = cluster_metrics(rng.normal(size=(2000, 8)), rng.integers(0, 5, 2000), seed=3)
    assert result["nmi"] < 0.02 and abs(result["ari"]) < 0.02, result


def test_cluster_metrics_on_digits(digits):
    # Measured (normalized pixels, n_init=4, seed 0): NMI 0.737, ARI 0.665, accuracy 0.792.
    x, y = digits
    result = cluster_metrics(x, y)
    assert result["nmi"] > 0.70 and result["ari"] > 0.60 and result["accuracy"] > 0.75, result
    assert cluster_metrics(x, y, n_clusters=20)["n_clusters"] == 20


# ---- auroc and fpr_at_95_tpr -------------------------------------------------------------------

def _slow_auroc(s_in, s_out):
    wins = sum((o > i) + 0.5 * (o == i) for o in s_out for i in s_in)
    return wins / (len(s_in) * len(s_out))


def _slow_fpr95(s_in, s_out):
    # Walk thresholds upwards; accept (call in-distribution) scores <= t; stop at the first t that
    # accepts 95% of in-distribution samples, and report the accepted share of OOD samples.
    for t in sorted(set(s_in) | set(s_out)):
        if np.mean(np.asarray(s_in) <= t) >= 0.95:
            return float(np.mean(np.asarray(s_out) <= t))
    raise AssertionError("unreachable: the largest score accepts everything")


@pytest.mark.parametrize("case", range(6))
def test_auroc_and_fpr95_match_slow_definitions(case):
    rng = np.random.default_rng(case)
    n_in, n_out = [(37, 53), (20, 20), (100, 7), (61, 140), (1, 5), (200, 3)][case]
    if case % 2:  # integer scores: many ties
        s_in, s_out = rng.integers(0, 10, n_in), rng.integers(2, 12, n_out)
    else:
        s_in, s_out = rng.normal(size=n_in), rng.normal(0.7, 1.0, size=n_out)
    assert auroc(s_in, s_out) == pytest.approx(_slow_auroc(s_in, s_out))
    assert fpr_at_95_tpr(s_in, s_out) == pytest.approx(_slow_fpr95(s_in, s_out))


def test_fpr95_threshold_and_ties_are_exact():
    s_in = np.arange(1, 21)  # 95% of 20 is exactly 19 samples, so the threshold is 19, not 20
    assert fpr_at_95_tpr(s_in, [19.5, 30]) == 0.0
    assert fpr_at_95_tpr(s_in, [19.0, 30]) == 0.5  # an OOD score tied with the threshold is accepted
    assert fpr_at_95_tpr(s_in, [20.0, 30]) == 0.0


def test_perfect_and_identical_distributions():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(size=500), rng.normal(size=500) + 100
    assert auroc(s_in, s_out) == 1.0 and fpr_at_95_tpr(s_in, s_out) == 0.0
    assert auroc(s_out, s_in) == 0.0 and fpr_at_95_tpr(s_out, s_in) == 1.0
    s_in, s_out = rng.normal(size=20000), rng.normal(size=20000)
    assert auroc(s_in, s_out) == pytest.approx(0.5, abs=0.01)
    assert fpr_at_95_tpr(s_in, s_out) == pytest.approx(0.95, abs=0.01)


# ---- scores --------------------------------------------------------------------------------------

def test_knn_scores_match_brute_force():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(40, 5)), rng.normal(size=(7, 5))
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    for k in (1, 3, 40, 100):  # 100 > N: the farthest neighbour
        slow = [sorted(np.linalg.norm(unit(t) - unit(r)) for r in train)[min(k, 40) - 1] for t in test]
        np.testing.assert_allclose(knn_ood_scores(train, test, k=k), slow, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(knn_ood_scores(train, test, k=k, chunk_size=2), slow, rtol=1e-12, atol=1e-15)


def test_mahalanobis_scores_match_per_sample_numpy():
    rng = np.random.default_rng(0)
    labels = np.repeat([3, 7, 9], [50, 60, 70])
    train = rng.normal(size=(180, 4)) @ rng.normal(size=(4, 4)) + 5 * rng.normal(size=(10, 4))[labels]
    test = rng.normal(size=(12, 4)) * 3
    classes = np.unique(labels)
    means = {c: train[labels == c].mean(axis=0) for c in classes}
    cov = sum(np.outer(x - means[c], x - means[c]) for x, c in zip(train, labels)) / len(train)
    precision = np.linalg.inv(cov + 1e-6 * np.trace(cov) / 4 * np.eye(4))
    slow = [min(np.sqrt((x - means[c]) @ precision @ (x - means[c])) for c in classes) for x in test]
    np.testing.assert_allclose(mahalanobis_ood_scores(train, labels, test), slow, rtol=1e-9)


def test_collapsed_features_do_not_crash():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=16)
    rank1 = lambda n: (1 + rng.random((n, 1))) * direction  # noqa: E731  (n, 16), all on one ray
    labels = rng.integers(0, 3, 300)
    result = ood_metrics(rank1(300), labels, rank1(400), rank1(400))
    assert all(np.isfinite(v) for v in result.values()), result
    # Normalized, every row is the same: kNN scores are rounding noise; 0.1 is 5 standard errors.
    assert result["knn_auroc"] == pytest.approx(0.5, abs=0.1)
    assert result["mahalanobis_auroc"] == pytest.approx(0.5, abs=0.1)
    constant = np.ones((50, 8))  # zero covariance: the ridge alone
    assert np.isfinite(mahalanobis_ood_scores(constant, np.zeros(50), constant[:5])).all()


def test_digits_held_out_classes_are_detected(digits):
    # Classes 0-4: half train, half in-distribution test (451); classes 5-9 OOD (896). Measured:
    # kNN (k=50) AUROC 0.847, FPR@95 0.71; Mahalanobis AUROC 0.913, FPR@95 0.75; kNN k=1 AUROC 0.99.
    x, y = digits
    kept = np.random.default_rng(0).permutation(np.flatnonzero(y < 5))
    train, held_in, out = kept[:len(kept) // 2], kept[len(kept) // 2:], np.flatnonzero(y >= 5)
    result = ood_metrics(x[train], y[train], x[held_in], x[out])
    assert result["knn_auroc"] > 0.75 and result["mahalanobis_auroc"] > 0.85, result
    assert result["knn_fpr95"] < 0.9 and result["mahalanobis_fpr95"] < 0.9, result
    # k=50 is Sun et al.'s k for 5,000 samples a class; with 90 a class the 1st neighbour is far better.
    assert ood_metrics(x[train], y[train], x[held_in], x[out], k=1)["knn_auroc"] > 0.97


# ---- bad input -----------------------------------------------------------------------------------

def test_bad_input_raises_user_errors():
    rng = np.random.default_rng(0)
    a, b, labels = rng.normal(size=(20, 4)), rng.normal(size=(5, 3)), np.zeros(20, dtype=int)
    with pytest.raises(DataError, match="dimension"):
        knn_ood_scores(a, b)
    with pytest.raises(DataError, match="dimension"):
        mahalanobis_ood_scores(a, labels, b)
    with pytest.raises(DataError, match="dimension"):
        ood_metrics(a, labels, a[:5], b)
    with pytest.raises(DataError, match="empty"):
        knn_ood_scores(np.zeros((0, 4)), a)
    with pytest.raises(DataError, match="empty"):
        ood_metrics(a, labels, a[:0], a)
    with pytest.raises(DataError, match="non-empty"):
        auroc([], [1.0])
    with pytest.raises(DataError, match="non-empty"):
        fpr_at_95_tpr([1.0], [])
    with pytest.raises(DataError, match="NaN"):
        auroc([np.nan], [1.0])
    with pytest.raises(DataError, match="NaN"):
        cluster_metrics(np.full((4, 2), np.nan), [0, 1, 0, 1])
    with pytest.raises(DataError, match="2-D"):
        cluster_metrics(np.zeros(5), np.zeros(5))
    with pytest.raises(DataError, match="entries"):
        cluster_metrics(a, labels[:10])
    with pytest.raises(DataError, match="entries"):
        hungarian_accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ConfigError, match="n_clusters"):
        cluster_metrics(a, labels, n_clusters=21)
    with pytest.raises(ConfigError, match="n_clusters"):
        cluster_metrics(a, labels, n_clusters=0)
    with pytest.raises(ConfigError, match="k must"):
        knn_ood_scores(a, a, k=0)
    with pytest.raises(ConfigError, match="ridge"):
        mahalanobis_ood_scores(a, labels, a, ridge=0.0)
