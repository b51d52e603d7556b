"""The RBF SVM probe (TS2Vec's classification protocol) and the ridge probe (regression targets)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.evaluation.ridge import ridge_probe
from selfsup.evaluation.svm import C_GRID, svm_probe


def blobs(n_per_class: int, classes: int = 3, dim: int = 4, seed: int = 0, spread: float = 1.0):
    centers = np.random.default_rng(0).normal(0, 4, (classes, dim))  # the same classes in every split
    g = np.random.default_rng(seed)
    x = np.concatenate([c + spread * g.normal(size=(n_per_class, dim)) for c in centers])
    y = np.repeat(np.arange(classes), n_per_class)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_svm_small_train_set_uses_the_hard_margin_as_ts2vec():
    # 3 classes x 4 = 12 rows: fewer than 5 per class, so no search and C = inf
    x, y = blobs(4)
    xt, yt = blobs(20, seed=1)
    out = svm_probe(x, y, xt, yt)
    assert out["C"] == float("inf") and np.isnan(out["cv_accuracy"]) and out["train_rows"] == 12


def test_svm_searches_c_and_predicts_as_sklearn_with_that_c():
    from sklearn.svm import SVC

    x, y = blobs(40, spread=3.0)  # overlapping classes: C matters
    xt, yt = blobs(40, spread=3.0, seed=1)
    out = svm_probe(x, y, xt, yt)
    assert out["C"] in C_GRID and 0 < out["cv_accuracy"] <= 1 and out["train_rows"] == 120
    reference = SVC(C=out["C"], kernel="rbf", gamma="scale").fit(x.double().numpy(), y.numpy())
    assert out["accuracy"] == pytest.approx((reference.predict(xt.double().numpy()) == yt.numpy()).mean())


def test_svm_caps_the_train_rows_with_a_stratified_sample():
    x, y = blobs(200)  # 600 rows
    xt, yt = blobs(30, seed=1)
    out = svm_probe(x, y, xt, yt, max_train=150, seed=3)
    assert out["train_rows"] == 150 and out["accuracy"] > 0.9
    assert svm_probe(x, y, xt, yt, max_train=150, seed=3) == out  # the sample is seeded
    assert svm_probe(x, y, xt, yt, max_train=None)["train_rows"] == 600


def test_ridge_matches_the_closed_form_on_standardized_features():
    g = np.random.default_rng(0)
    x = g.normal(size=(60, 5)) * np.array([1, 10, 0.1, 3, 1]) + 2
    w = np.array([1.0, -0.2, 5.0, 0.0, 0.5])
    y = x @ w + 0.3 * g.normal(size=60) + 7
    xt = g.normal(size=(30, 5)) * np.array([1, 10, 0.1, 3, 1]) + 2
    yt = xt @ w + 7
    out = ridge_probe(torch.tensor(x), torch.tensor(y), torch.tensor(xt), torch.tensor(yt), alphas=(2.0,))
    # by hand: standardize with the train statistics, centre y, solve (Z'Z + 2 I) b = Z'(y - mean y)
    mean, std = x.mean(0), x.std(0)
    z, zt = (x - mean) / std, (xt - mean) / std
    b = np.linalg.solve(z.T @ z + 2.0 * np.eye(5), z.T @ (y - y.mean()))
    pred = zt @ b + y.mean()
    r2 = 1 - ((yt - pred) ** 2).sum() / ((yt - yt.mean()) ** 2).sum()
    assert out["alpha"] == 2.0
    assert out["r2"] == pytest.approx(r2, rel=1e-9)
    assert out["mae"] == pytest.approx(np.abs(yt - pred).mean(), rel=1e-9)
    assert out["rmse"] == pytest.approx(np.sqrt(((yt - pred) ** 2).mean()), rel=1e-9)
    assert out["r2"] > 0.95


def test_ridge_picks_a_larger_strength_for_noise():
    g = np.random.default_rng(1)
    x, y = torch.tensor(g.normal(size=(80, 20))), torch.tensor(g.normal(size=80))  # no signal at all
    out = ridge_probe(x, y, torch.tensor(g.normal(size=(40, 20))), torch.tensor(g.normal(size=40)))
    assert out["alpha"] >= 1e3 and out["r2"] < 0.05


def test_ridge_protocol_skips_data_without_a_target():
    from types import SimpleNamespace

    from selfsup.evaluation.protocols.ridge import _has_targets

    labelled = SimpleNamespace(name="fashion-mnist", targets=None)
    assert "has no" in _has_targets(SimpleNamespace(train=labelled, test=labelled))
    assert _has_targets(SimpleNamespace(train=labelled, test=None)) == "needs a test split"
    regression = SimpleNamespace(name="nci_tpsa", targets=torch.zeros(3))
    assert _has_targets(SimpleNamespace(train=regression, test=regression)) is None
