"""The L-BFGS linear probe stops on its gradient tolerance, not on its iteration cap, and says which."""
from __future__ import annotations

import pytest
import torch

from selfsup.evaluation.linear import (PROBE_MAX_ITER, PROBE_TOLERANCE, fit_logistic, linear_probe, loss_and_grad,
                                      objective)


def ill_conditioned(n=1000, d=30, k=4, decades=2.0, seed=0):
    """(n, d) features whose scales span `decades` powers of ten in random directions (correlated
    columns that standardization does not undo), labels from a noisy linear rule on the latent."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    x = (z * torch.logspace(0, -decades, d)) @ rotation.T
    y = (z @ torch.randn(k, d, generator=g).T + torch.randn(n, k, generator=g)).argmax(1)
    return x, y


def sklearn_optimum(xs, y, lam):
    """The objective's minimum, from scikit-learn's float64 lbfgs run to a 1e-10 gradient (C = 1 / (2 lam N))."""
    from sklearn.linear_model import LogisticRegression

    sk = LogisticRegression(C=1 / (2 * lam * len(xs)), tol=1e-10, max_iter=100_000).fit(xs.double().numpy(), y.numpy())
    return objective(torch.tensor(sk.coef_), torch.tensor(sk.intercept_), xs.double(), y, lam).item()


def test_probe_converges_where_200_iterations_stopped_short():
    # With the former 200-iteration stop this probe ended 1.6e-3 above the optimum (relative);
    # stopping on the tolerance it converges after ~290 iterations, 1e-6 from it.
    x, y = ill_conditioned()
    lam = 1e-5
    result, model = linear_probe(x, y, x, y, lambdas=(lam,), return_model=True)
    best = sklearn_optimum((x - model.mean) / model.std, y, lam)
    assert result["train_loss"] == pytest.approx(best, rel=1e-5)
    assert result["converged"] == 1.0 and 200 < result["iterations"] < PROBE_MAX_ITER


@pytest.mark.parametrize("lam", [1e-1, 1e-2, 3e-3])
def test_fit_reaches_the_tolerance_where_a_float32_loss_stalled(digits, lam):
    # Summed in float32 the loss could not see the last decreases: the line search found no lower
    # point and L-BFGS stopped at a gradient of 1.2e-5 to 2.2e-5 here, after < 50 iterations.
    train_x, train_y, _, _ = digits
    xs = (train_x - train_x.mean(0)) / train_x.std(0).clamp_min(1e-6)
    _, _, info = fit_logistic(xs, train_y, 10, lam)
    assert info["grad_norm"] <= PROBE_TOLERANCE and info["iterations"] < 100
    assert info["stop"] == "tolerance" and info["converged"]


def test_probe_at_its_cap_says_so_in_one_line(digits, capsys):
    train_x, train_y, test_x, test_y = digits
    result = linear_probe(train_x, train_y, test_x, test_y, lambdas=(1e-4,), max_iter=5)
    assert result["converged"] == 0.0 and result["iterations"] == 5.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("warning: the linear probe stopped at its iteration cap (max_iter=5) before converging")
    assert "--option linear.max_iter=" in err

    _, _, info = fit_logistic(train_x, train_y, 10, 1e-4, max_iter=5)
    assert info["stop"] == "max_iter" and not info["converged"] and info["grad_norm"] > PROBE_TOLERANCE


def test_converged_probe_is_quiet(digits, capsys):
    result = linear_probe(*digits)  # the lambda path and the final fit, default cap and tolerance
    assert result["converged"] == 1.0 and result["iterations"] < PROBE_MAX_ITER
    assert capsys.readouterr().err == ""


def test_loss_bits_do_not_depend_on_threads_with_a_large_weight():
    # ||W||^2 over 2M entries as one .sum() came out 1 ulp apart with one thread and two.
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(1000, 2000, generator=g), torch.zeros(1000)
    x, y = torch.randn(64, 2000, generator=g), torch.randint(0, 1000, (64,), generator=g)
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(loss_and_grad(w, b, x, y, 1e-3))
    finally:
        torch.set_num_threads(before)
    for one, two in zip(*results):
        assert torch.equal(one, two)
