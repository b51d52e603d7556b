"""A ridge regression probe on frozen features, for datasets with a continuous target (TPSA, pIC50,
house prices): the L2 strength chosen by leave-one-out (efficient generalized cross-validation,
scikit-learn's RidgeCV) on the standardized train features, then R^2, MAE and RMSE on the test split.
"""
from __future__ import annotations

import numpy as np
import torch

ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 15))


def ridge_probe(train_features: torch.Tensor, train_targets: torch.Tensor, test_features: torch.Tensor,
                test_targets: torch.Tensor, alphas: tuple[float, ...] = ALPHAS) -> dict[str, float]:
    """{"r2", "mae", "rmse", "alpha"} of ridge regression on standardized features (see the module docstring)."""
    from sklearn.linear_model import RidgeCV

    x = train_features.detach().double().cpu().numpy()
    xt = test_features.detach().double().cpu().numpy()
    y, yt = train_targets.detach().double().cpu().numpy(), test_targets.detach().double().cpu().numpy()
    mean, std = x.mean(0), x.std(0)
    std[std < 1e-12] = 1.0  # dead dimensions stay 0
    model = RidgeCV(alphas=np.asarray(alphas, dtype=float)).fit((x - mean) / std, y)
    pred = model.predict((xt - mean) / std)
    residual = yt - pred
    total = ((yt - yt.mean()) ** 2).sum()
    r2 = float(1 - (residual ** 2).sum() / total) if total > 0 else float("nan")
    return {"r2": r2, "mae": float(np.abs(residual).mean()), "rmse": float(np.sqrt((residual ** 2).mean())),
            "alpha": float(model.alpha_)}
