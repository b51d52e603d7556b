"""Linear probe on frozen features: multinomial logistic regression fitted with full-batch L-BFGS.

Features are standardized with train statistics; the L2 strength is chosen on a stratified 10%
holdout of the train set (a path from strong to weak regularization, each fit warm-started from
the previous one), then the model is refitted on the whole train set and scored on the test set.
The final fit runs until its gradient is below PROBE_TOLERANCE (PROBE_MAX_ITER is a safeguard
only), the fits that choose the strength until PATH_TOLERANCE: on cached features of 60k x 128 that
is 10 s to 1 min of one CPU thread, where the classic SGD protocol takes many minutes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Objective: mean cross-entropy + lam * ||W||^2 (bias not penalized). lam = 1 / (2 C N) in
# scikit-learn's C. Ordered strong -> weak so each fit warm-starts from a smoother solution.
DEFAULT_LAMBDAS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# A probe fit stops when the largest entry of the objective's gradient is at most PROBE_TOLERANCE:
# scikit-learn's lbfgs `tol` (same measure, same mean objective), 10x tighter than its default 1e-4:
# on digits at lam 1e-6 a probe stopped at 1e-4 scores 0.943, at 1e-5 0.963, as at 1e-6.
# PROBE_MAX_ITER only guards against a fit that never gets there; `fit_logistic` says which it was.
# Measured (CPU fp32, 1 thread, revision 4fe9a4a; features of a 300-step SimCLR Fashion-MNIST
# encoder, 60k x 128; lam 1e-6 chosen every time): the former stop at 200 iterations per fit scored
# 0.8526 in 28 s, its objective 0.93% above the optimum; converged now (3,910 iterations over the
# 6 fits, at most 1,396 in one; a cold fit at lam 1e-6 takes 1,622) 0.8531 in 90 s (65 s on 2
# threads), 2e-5 above it (relative), as scikit-learn at a 1e-6 gradient (0.8531; at its default
# 1e-4: 0.8535, 1.1e-3 above, 1,153 iterations, 40 s). A cap of 1000 cut that lam 1e-6 fit; 5000
# leaves 3x.
PROBE_TOLERANCE = 1e-5
# The fits on the 10% holdout only rank the strengths, so they stop at scikit-learn's default 1e-4;
# the final fit on the whole train set still goes to PROBE_TOLERANCE. Measured on the same features
# (2 threads, revision 63d695d): every fit at 1e-5: 65 s, lam 1e-6, accuracy 0.8531; holdout fits at
# 1e-4: 32 s, the same lam 1e-6 (holdout accuracy 0.8602 instead of 0.8613), accuracy 0.8529 (the
# final fit converged to 1e-5 from another start: 2 of 10,000 test images differ).
PATH_TOLERANCE = 1e-4
PROBE_MAX_ITER = 5000  # L-BFGS iterations per fit, a safeguard cap
# L-BFGS memory: on those features 40 pairs took 3,910 iterations where 10 took 5,733 (136 s). The
# few-shot episodes' 10 iterations hold 9 pairs either way, so they are unchanged by it.
HISTORY = 40
# "No progress" in torch's LBFGS (the loss change of an iteration, the step, the line search's
# bracket): its default 1e-9 stopped that lam 1e-6 fit short, at a 1.2e-5 gradient (10 pairs: 2.9e-5).
TOLERANCE_CHANGE = 1e-12


@dataclass
class LinearModel:
    """weight (K, D), bias (K,) acting on standardized features; `classes` (K,) maps rows to labels."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    classes: torch.Tensor

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """(M, D) raw features -> (M, K) logits."""
        return ((features.float() - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.classes[self.logits(features).argmax(dim=1)]


def stratified_split(labels: torch.Tensor, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit_index, val_index): `fraction` of every class (at least one sample of classes with 2+) held out."""
    generator = torch.Generator().manual_seed(seed)
    fit, val = [], []
    for label in torch.unique(labels):
        index = (labels == label).nonzero().flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        n_val = int(round(fraction * len(index)))
        n_val = max(n_val, 1) if len(index) >= 2 else 0
        val.append(index[:n_val])
        fit.append(index[n_val:])
    return torch.cat(fit).sort().values, torch.cat(val).sort().values


# Rows per block of the fixed-order reductions in `loss_and_grad` (see there).
REDUCE_CHUNK = 256


def objective(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Mean cross-entropy of logits x @ W.T + b plus lam * ||W||^2. x: (N, D), y: (N,) in 0..K-1."""
    return F.cross_entropy(x @ weight.T + bias, y) + lam * weight.pow(2).sum()


def _blocks(t: torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (ceil(N / REDUCE_CHUNK), REDUCE_CHUNK, ...), zero rows appended."""
    pad = (-len(t)) % REDUCE_CHUNK
    if pad:
        t = torch.cat([t, t.new_zeros(pad, *t.shape[1:])])
    return t.view(-1, REDUCE_CHUNK, *t.shape[1:])


def loss_and_grad(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`objective` and its gradient (d/dW, d/db), with the same bits whatever torch's thread count.

    Autograd's d/dW = G.T @ X is one matrix product that reduces over all N rows, and the BLAS
    splits that reduction differently with one thread or two (seen: different bits, then a
    different L-BFGS path and probe accuracy). Here every sum over rows runs in blocks of
    REDUCE_CHUNK rows, one block per batched-matmul entry, and the blocks are added in a fixed
    order. With G = (softmax(Z) - onehot(y)) / N: d/dW = G.T X + 2 lam W, d/db = sum_rows G.

    The loss is summed in float64 (the rows' terms are x's dtype): it is the line search's
    acceptance test, and summed in float32 its rounding (~3e-8 of the loss) outgrew the decrease of
    a step near the optimum, so L-BFGS stalled, the line search finding no lower point (digits at
    lam 1e-2: a gradient of 1.2e-5, at 1e-1: 2.2e-5; Fashion-MNIST features: 2e-5 to 6e-5). Summed
    in float64 it gets below 1e-6 on digits. The gradient is unchanged, in x's dtype.
    """
    return _loss_and_grad(weight, bias, x, _blocks(x), y, lam)


def _loss_and_grad(weight, bias, x, x_blocks, y, lam):
    """`loss_and_grad` with ``x_blocks = _blocks(x)`` given, so a fit pads and copies x once, not per call."""
    n = len(y)
    logp = torch.log_softmax(x @ weight.T + bias, dim=1)  # rows are independent: no cross-row sum
    picked = logp.gather(1, y[:, None]).squeeze(1).double()
    # ||W||^2 in blocks too: one .sum() over K * D > ~32k entries is split by thread count (seen: 2M).
    loss = -_blocks(picked).sum(1).sum(0) / n + lam * _blocks(weight.double().flatten().pow(2)).sum(1).sum(0)
    g = logp.exp()
    g[torch.arange(n), y] -= 1
    g /= n
    gb = _blocks(g)
    grad_w = torch.bmm(gb.transpose(1, 2), x_blocks).sum(0) + 2 * lam * weight
    return loss, grad_w, gb.sum(1).sum(0)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, lam: float,
                 init: tuple[torch.Tensor, torch.Tensor] | None = None, max_iter: int = PROBE_MAX_ITER,
                 tolerance_grad: float = PROBE_TOLERANCE, max_eval: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Minimize `objective` with L-BFGS (strong Wolfe). x (N, D) float32 standardized, y (N,) in 0..K-1.

    Stops when the largest gradient entry is at most `tolerance_grad`, or at a cap: `max_iter`
    iterations or `max_eval` objective evaluations (None: torch's max_iter * 5 // 4, which the
    few-shot episodes' 10 iterations were tuned with), or when no step lowers the objective any
    more (a stall: the line search finds no lower point, or an iteration changes it by < 1e-12).
    Returns weight (K, D), bias (K,) and info {"loss", "iterations", "evaluations", "grad_norm",
    "converged" (grad_norm <= tolerance_grad), "stop": "tolerance" | "max_iter" | "stalled"}.
    The result does not depend on the thread count (`loss_and_grad`).
    """
    d = x.shape[1]
    if init is None:
        weight = torch.zeros(num_classes, d)
        bias = torch.zeros(num_classes)
    else:
        weight, bias = (t.detach().clone() for t in init)
    if max_eval is None:
        max_eval = max_iter * 5 // 4  # torch's default, explicit: it is a cap too (see "stop")
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, max_eval=max_eval, history_size=HISTORY,
                                  tolerance_grad=tolerance_grad, tolerance_change=TOLERANCE_CHANGE,
                                  line_search_fn="strong_wolfe")

    x_blocks = _blocks(x)

    def closure():
        loss, weight.grad, bias.grad = _loss_and_grad(weight, bias, x, x_blocks, y, lam)
        return loss

    with torch.no_grad():
        optimizer.step(closure)
        loss = closure()  # final loss and gradient, the same bits torch's stopping test saw at this point
    grad_max = torch.cat([weight.grad.flatten(), bias.grad]).abs().max()
    converged = bool(grad_max <= tolerance_grad)  # torch's own test (a float32 comparison)
    grad_norm = grad_max.item()
    state = optimizer.state[optimizer._params[0]]
    iterations, evaluations = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
    if converged:
        stop = "tolerance"
    elif iterations >= max_iter or evaluations >= max_eval:
        stop = "max_iter"
    else:
        stop = "stalled"
    info = {"loss": loss.item(), "iterations": iterations, "evaluations": evaluations, "grad_norm": grad_norm,
            "converged": converged, "stop": stop}
    return weight, bias, info


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, lambdas: tuple[float, ...] = DEFAULT_LAMBDAS,
                 val_fraction: float = 0.1, seed: int = 0, max_iter: int = PROBE_MAX_ITER,
                 return_model: bool = False, tolerance: float = PROBE_TOLERANCE):
    """Linear-probe test accuracy. Features (N, D) / (M, D) float, labels any integers.

    Returns {"accuracy", "lambda", "val_accuracy", "train_loss", "iterations", "converged"}; with
    `return_model`, (that dict, LinearModel). A single value in `lambdas` skips the validation.
    "iterations" and "converged" (1.0 when the largest gradient entry reached `tolerance`, else 0.0)
    are the final whole-train fit's; when it ran into `max_iter` a one-line warning goes to stderr.
    """
    x_raw = train_features.detach().float().cpu()
    classes, y = torch.unique(train_labels.cpu(), return_inverse=True)  # labels -> 0..K-1
    mean = x_raw.mean(dim=0)
    std = x_raw.std(dim=0).clamp_min(1e-6)  # constant (dead) dimensions stay 0, not NaN
    x = (x_raw - mean) / std
    k = len(classes)

    lambdas = tuple(sorted(lambdas, reverse=True))
    best_lam, best_val, init = lambdas[0], float("nan"), None
    max_eval = 2 * max_iter  # the iteration cap binds, not the evaluations (~1.05 per iteration seen)
    if len(lambdas) > 1:
        fit_idx, val_idx = stratified_split(y, val_fraction, seed)
    if len(lambdas) > 1 and len(val_idx) == 0:
        # one example per class: nothing to validate on; the middle of the grid, said by val_accuracy NaN
        best_lam = lambdas[len(lambdas) // 2]
    elif len(lambdas) > 1:
        best_val, best_state = -1.0, None
        for lam in lambdas:
            weight, bias, _ = fit_logistic(x[fit_idx], y[fit_idx], k, lam, init, max_iter,
                                           max(tolerance, PATH_TOLERANCE), max_eval)
            init = (weight, bias)
            val_acc = ((x[val_idx] @ weight.T + bias).argmax(1) == y[val_idx]).float().mean().item()
            if val_acc > best_val:  # ties keep the stronger regularization, seen first
                best_lam, best_val, best_state = lam, val_acc, (weight, bias)
        init = best_state
    weight, bias, info = fit_logistic(x, y, k, best_lam, init, max_iter, tolerance, max_eval)
    if info["stop"] == "max_iter":
        print(f"warning: the linear probe stopped at its iteration cap (max_iter={max_iter}) before converging "
              f"(largest gradient entry {info['grad_norm']:.2g} > tolerance {tolerance:.2g}, lambda {best_lam:g}); "
              f"raise it with --option linear.max_iter={4 * max_iter}", file=sys.stderr)
    model = LinearModel(weight, bias, mean, std, classes)
    accuracy = (model.predict(test_features.detach().cpu()) == test_labels.cpu()).float().mean().item()
    result = {"accuracy": accuracy, "lambda": best_lam, "val_accuracy": best_val, "train_loss": info["loss"],
              "iterations": float(info["iterations"]), "converged": float(info["converged"])}
    return (result, model) if return_model else result
