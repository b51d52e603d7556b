"""alpha-ReQ, the persistent-homology class separability, rank correlations, and Loki."""
import itertools

import numpy as np
import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.evaluation.loki import (class_embedding_metric, frechet_predict, loki_eval,
                                     split_classes)
from selfsup.evaluation.spectrum import (alpha_req, class_separability, eigenspectrum,
                                         h0_persistence, rank_correlations)


def features_with_spectrum(eigenvalues, n, seed=0):
    """(n, D) features whose sample covariance has exactly `eigenvalues`, in a random basis."""
    rng = np.random.default_rng(seed)
    d = len(eigenvalues)
    z = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(z - z.mean(axis=0))  # (n, d) orthonormal columns with zero mean
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sqrt((n - 1) * np.asarray(eigenvalues)) @ rotation


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_an_exact_power_law(alpha):
    ranks = np.arange(1, 201, dtype=np.float64)
    x = features_with_spectrum(ranks ** -alpha, n=1000)
    np.testing.assert_allclose(eigenspectrum(x), ranks ** -alpha, rtol=1e-8)
    assert alpha_req(x) == pytest.approx(alpha, abs=1e-8)
    assert alpha_req(x, k_min=1, k_max=200, rank_weighted=False) == pytest.approx(alpha, abs=1e-8)
    assert alpha_req(torch.tensor(x)) == pytest.approx(alpha, abs=1e-8)  # torch input too


def test_alpha_req_is_scale_invariant_and_zero_for_isotropic_features():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 200)) * np.arange(1, 201) ** -0.5  # sampled, alpha = 1
    assert alpha_req(x) == pytest.approx(1.0, abs=0.02)
    assert alpha_req(1e3 * x) == pytest.approx(alpha_req(x), abs=1e-9)
    assert alpha_req(1e-3 * x) == pytest.approx(alpha_req(x), abs=1e-9)
    assert abs(alpha_req(features_with_spectrum(np.ones(64), n=1000))) < 1e-8
    # Sampled isotropic: Marchenko-Pastur spread of the sample eigenvalues leaves a small slope.
    assert 0 <= alpha_req(rng.standard_normal((20000, 64))) < 0.1


def test_alpha_req_rejects_a_window_without_eigenvalues():
    x = np.random.default_rng(0).standard_normal((8, 64))  # rank 7 after centring
    with pytest.raises(ConfigError, match="nonzero eigenvalues"):
        alpha_req(x)
    assert np.isfinite(alpha_req(x, k_min=1, k_max=7))
    with pytest.raises(ConfigError, match="k_min"):
        alpha_req(x, k_min=5, k_max=5)


def slow_h0_deaths(x):
    """Vietoris-Rips H0 deaths by brute force: add every edge in order of length, union-find."""
    parent = list(range(len(x)))

    def root(i):
        while parent[i] != i:
            i = parent[i]
        return i

    edges = sorted((float(np.sqrt(((x[i] - x[j]) ** 2).sum())), i, j)
                   for i, j in itertools.combinations(range(len(x)), 2))
    deaths = []
    for length, i, j in edges:
        ri, rj = root(i), root(j)
        if ri != rj:  # two components merge: one of them dies at this scale
            parent[ri] = rj
            deaths.append(length)
    return np.array(deaths)


def test_h0_persistence_matches_a_brute_force_filtration():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal((25, 5)), rng.standard_normal((25, 5)) + 6])
    x[7] = x[3]  # a duplicate point: a zero-length bar that must not be lost
    slow = slow_h0_deaths(x)
    np.testing.assert_allclose(h0_persistence(x), slow, rtol=1e-9, atol=1e-12)
    assert slow[0] == 0 and len(slow) == 49
    expected = 1 - np.mean(slow / slow[-1])
    assert class_separability(x, normalize=False) == pytest.approx(expected, rel=1e-12)


def two_clusters(gap, n=400, d=8, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d))
    x[: n // 2, 0] += gap / 2
    x[n // 2:, 0] -= gap / 2
    return x


def test_class_separability_grows_with_the_gap_between_clusters():
    scores = [class_separability(two_clusters(g)) for g in (0, 4, 8, 16, 32)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert scores[-1] > 0.9 and scores[0] < 0.3
    # Without normalization the score is flat while the clusters overlap (it is set by the most
    # isolated point) and rises once the gap beats that.
    raw = [class_separability(two_clusters(g), normalize=False) for g in (0, 8, 16, 32)]
    assert all(a < b for a, b in zip(raw[1:], raw[2:])) and raw[-1] > raw[0] + 0.3, raw


def test_class_separability_is_deterministic_per_seed():
    x = two_clusters(6, n=3000, seed=1)
    a, b = class_separability(x, n=500, seed=7), class_separability(x, n=500, seed=7)
    assert a == b
    assert class_separability(x, n=500, seed=8) != a  # another subsample
    assert class_separability(np.ones((10, 3))) == 0.0  # collapsed features


def test_rank_correlations_on_hand_examples():
    acc = [0.1, 0.2, 0.3, 0.5]
    assert rank_correlations([1, 2, 3, 9], acc) == pytest.approx({"spearman": 1.0, "kendall": 1.0})
    assert rank_correlations([4, 3, 2, 1], acc) == pytest.approx({"spearman": -1.0, "kendall": -1.0})
    # One swapped pair of 4: Spearman 1 - 6*2/(4*15) = 0.8, Kendall (5 - 1)/6.
    r = rank_correlations([1, 3, 2, 4], acc)
    assert r["spearman"] == pytest.approx(0.8) and r["kendall"] == pytest.approx(4 / 6)
    assert np.isnan(rank_correlations([1, 1, 1], [0.1, 0.2, 0.3])["spearman"])
    with pytest.raises(ConfigError):
        rank_correlations([1, 2], [0.1, 0.2, 0.3])


def test_frechet_predict_matches_a_brute_force_loop():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    dist = torch.cdist(points, points)
    observed = torch.tensor([0, 2, 5, 7])
    probs = torch.softmax(torch.randn(50, 4, generator=gen, dtype=torch.float64), dim=1)
    slow = [min(range(9), key=lambda y: sum(p[k] * dist[y, observed[k]] ** 2 for k in range(4)))
            for p in probs]
    assert frechet_predict(probs, dist, observed, chunk_size=7).tolist() == slow


def test_frechet_predict_with_the_01_metric_is_argmax():
    probs = torch.softmax(torch.randn(200, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    zero_one = 1 - torch.eye(6)
    assert torch.equal(frechet_predict(probs, zero_one, torch.arange(6)), probs.argmax(dim=1))


def test_frechet_predict_reaches_the_midpoint_of_a_line():
    line = torch.arange(5.0)
    dist = (line[:, None] - line[None, :]).abs()  # Y = 0..4 on a line
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    assert frechet_predict(probs, dist, torch.tensor([0, 4])).tolist() == [2, 0, 3]


def test_class_embedding_metric_is_euclidean():
    means = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    expected = torch.tensor([[0, 5, 1], [5, 0, 18 ** 0.5], [1, 18 ** 0.5, 0]], dtype=torch.float64)
    assert torch.allclose(class_embedding_metric(means), expected, atol=1e-12)


@pytest.fixture(scope="module")
def digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    x, y = sklearn_datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = torch.tensor(x[order], dtype=torch.float32), torch.tensor(y[order])
    return x[:1000], y[:1000], x[1000:], y[1000:]  # 1000 train, 797 test


def test_loki_predicts_unobserved_digits(digits):
    # Digits 6, 8 and 9 unobserved; metric from the train pixel means of all 10 classes.
    # Measured: argmax accuracy 0.690 -> Loki 0.696, E[d^2] 244.9 -> 238.9; Loki gets 2.1% of the
    # unobserved test digits right, argmax none.
    r = loki_eval(*digits, observed_classes=[0, 1, 2, 3, 4, 5, 7], lambdas=(1e-3,))
    assert r["loki_accuracy"] > r["argmax_accuracy"] > 0.6
    assert r["loki_sq_distance"] < r["argmax_sq_distance"]
    assert r["loki_unobserved_accuracy"] > 0 and r["n_observed"] == 7 and r["n_classes"] == 10


def test_loki_eval_defaults_and_errors(digits):
    xtr, ytr, xte, yte = digits
    observed, unobserved = split_classes(ytr, 0.3, seed=0)
    assert len(observed) == 7 and len(unobserved) == 3
    assert not set(observed.tolist()) & set(unobserved.tolist())
    r = loki_eval(xtr, ytr, xte, yte, lambdas=(1e-3,))  # default: seeded split, self-derived metric
    assert r["argmax_accuracy"] <= (torch.isin(yte, observed)).float().mean().item()
    assert r["loki_sq_distance"] <= r["argmax_sq_distance"]
    # With every class observed and the 0/1 metric, Loki is argmax.
    r = loki_eval(xtr, ytr, xte, yte, distances=1 - torch.eye(10), observed_classes=range(10),
                  lambdas=(1e-3,))
    assert r["loki_accuracy"] == r["argmax_accuracy"] > 0.9
    with pytest.raises(ConfigError, match="observed_classes"):
        loki_eval(xtr, ytr, xte, yte, observed_classes=[0, 42])
    with pytest.raises(ConfigError, match="distances"):
        loki_eval(xtr, ytr, xte, yte, distances=torch.zeros(3, 3))
