"""An RBF support-vector classifier on frozen features, the probe of TS2Vec's classification protocol.

Yue et al. (TS2Vec, AAAI 2022, section 4.1) score UCR/UEA representations with an SVM with an RBF
kernel whose penalty C is chosen by 5-fold cross-validation on the train features from
{1e-4, ..., 1e4, inf}; with fewer than 5 examples per class or 50 in all there is nothing to
cross-validate and C = inf (a hard margin) is used, as their code does. The kernel width is
scikit-learn's "scale" (1 / (D * feature variance)).

A kernel SVM costs between quadratic and cubic time in its train rows, and the hard margin (C = inf)
on data that is not separable runs longest. Their code fits at most 10,000 train rows (a stratified
sample); `max_train` does the same here, with the sample drawn from `seed`, so that the probe stays
seconds on a large table (the study default is 2,000; the UCR/UEA train splits are all smaller).
"""
from __future__ import annotations

import numpy as np
import torch

MAX_ITER = 10_000_000
C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, np.inf)


def svm_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
              test_labels: torch.Tensor, folds: int = 5, max_train: int | None = 10_000,
              seed: int = 0) -> dict[str, float]:
    """{"accuracy", "C", "cv_accuracy" (NaN without the search), "train_rows"} of the RBF SVM fitted
    on at most `max_train` train rows (None: all; see the module docstring)."""
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC

    x, y = train_features.detach().double().cpu().numpy(), train_labels.cpu().numpy()
    if max_train is not None and len(y) > max_train:
        counts = np.unique(y, return_counts=True)[1]
        stratify = y if counts.min() >= 2 and max_train >= len(counts) else None
        x, _, y, _ = train_test_split(x, y, train_size=max_train, random_state=seed, stratify=stratify)
    xt, yt = test_features.detach().double().cpu().numpy(), test_labels.cpu().numpy()
    classes = len(np.unique(y))
    # TS2Vec's code caps libsvm at 1e7 iterations: a hard margin (C = inf) on data that is not separable
    # would otherwise never stop; a capped fit scores NaN in the grid search
    svm = SVC(C=np.inf, kernel="rbf", gamma="scale", max_iter=MAX_ITER)
    if len(y) // max(classes, 1) < folds or len(y) < 50:
        try:
            model, c, cv = svm.fit(x, y), float("inf"), float("nan")
        except ValueError:  # the hard margin did not converge: the largest finite C of the grid instead
            c = max(v for v in C_GRID if np.isfinite(v))
            model, cv = SVC(C=c, kernel="rbf", gamma="scale", max_iter=MAX_ITER).fit(x, y), float("nan")
    else:
        search = GridSearchCV(svm, {"C": list(C_GRID)}, cv=folds, n_jobs=1).fit(x, y)
        model, c, cv = search.best_estimator_, float(search.best_params_["C"]), float(search.best_score_)
    return {"accuracy": float((model.predict(xt) == yt).mean()), "C": c, "cv_accuracy": cv, "train_rows": float(len(y))}
