"""Losses against hand-computed values, slow plain-Python references, invariances and gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.losses import (barlow_twins, byol_loss, covariance, cross_correlation, invariance, masked_patch_mse,
                            nt_xent, off_diagonal, off_diagonal_loss, on_diagonal_loss, variance, vicreg)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------- NT-Xent

def test_nt_xent_hand_computed():
    # 2B = 4 unit vectors a=(1,0), b=(0,1) | c=(1,0), d=(-1,0); positives a-c, b-d; logits = cos / 0.5.
    # a: others (b, c+, d) = (0, 2, -2)   -> -2 + log(1 + e^2 + e^-2)
    # b: others (a, c, d+) = (0, 0, 0)    -> log 3
    # c: others (a+, b, d) = (2, 0, -2)   -> same as a
    # d: others (a, b+, c) = (-2, 0, -2)  -> 0 + log(2 e^-2 + 1)
    la = -2 + math.log(1 + math.exp(2) + math.exp(-2))
    ld = math.log(2 * math.exp(-2) + 1)
    expected = (2 * la + math.log(3) + ld) / 4
    assert expected == pytest.approx(0.406005, abs=1e-6)
    got = nt_xent(t([[1, 0], [0, 1]]), t([[1, 0], [-1, 0]]), temperature=0.5)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def nt_xent_reference(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """Slow loop version of the SimCLR paper's formula (Algorithm 1)."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n, B = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + B) % n
        num = math.exp(float(z[i] @ z[j]) / temperature)
        den = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


def test_nt_xent_matches_loop_reference_and_invariances():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    got = nt_xent(z1, z2, temperature=0.2)
    assert got.item() == pytest.approx(nt_xent_reference(z1.numpy(), z2.numpy(), 0.2), rel=1e-5)
    assert nt_xent(z2, z1, 0.2).item() == pytest.approx(got.item(), rel=1e-6)  # symmetric in the views
    assert nt_xent(3 * z1, 0.5 * z2, 0.2).item() == pytest.approx(got.item(), rel=1e-5)  # cosine: scale-free
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert nt_xent(z1[perm], z2[perm], 0.2).item() == pytest.approx(got.item(), rel=1e-5)  # batch order irrelevant


def test_nt_xent_default_temperature_is_the_papers():
    z1, z2 = t([[1, 0], [0, 1]]), t([[1, 0], [-1, 0]])
    assert nt_xent(z1, z2).item() == nt_xent(z1, z2, temperature=0.5).item()


# ---------------------------------------------------------------- Barlow Twins

def test_off_diagonal():
    m = torch.arange(9.0).view(3, 3)
    assert off_diagonal(m).tolist() == [1.0, 2.0, 3.0, 5.0, 6.0, 7.0]
    assert off_diagonal(torch.ones(1, 1)).numel() == 0


def test_barlow_twins_hand_computed():
    # z = [[1, 1], [2, -1], [3, 0]]: column 0 standardizes to (-s, 0, s), column 1 to (s, -s, 0),
    # s = 1 / sqrt(2/3) = 1.2247; C = z^T z / 3 = [[1, -0.5], [-0.5, 1]] (times var / (var + eps)).
    # Loss = 0 on the diagonal + 5e-3 * (0.25 + 0.25) = 2.5e-3.
    z = t([[1, 1], [2, -1], [3, 0]])
    c = cross_correlation(z, z)
    shrink = (2 / 3) / (2 / 3 + 1e-5)  # BatchNorm's eps, the only departure from the exact values
    np.testing.assert_allclose(c.numpy(), np.array([[1, -0.5], [-0.5, 1]]) * shrink, rtol=1e-6, atol=1e-7)
    assert barlow_twins(z, z).item() == pytest.approx(2.5e-3, rel=1e-4)
    # z2 with column 1 negated: C = [[1, 0.5], [-0.5, -1]]; diagonal (1 - 1)^2 + (1 + 1)^2 = 4.
    z2 = t([[1, -1], [2, 1], [3, 0]])
    assert on_diagonal_loss(cross_correlation(z, z2)).item() == pytest.approx(4.0, rel=1e-4)
    assert off_diagonal_loss(cross_correlation(z, z2)).item() == pytest.approx(0.5, rel=1e-4)
    assert barlow_twins(z, z2, lambda_offdiag=0.1).item() == pytest.approx(4.05, rel=1e-4)


def barlow_reference(z1: np.ndarray, z2: np.ndarray, lam: float) -> float:
    z1, z2 = z1.astype(np.float64), z2.astype(np.float64)
    B, D = z1.shape
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + 1e-5)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + 1e-5)
    loss = 0.0
    for i in range(D):
        for j in range(D):
            c = sum(a[k, i] * b[k, j] for k in range(B)) / B
            loss += (1 - c) ** 2 if i == j else lam * c**2
    return loss


def test_barlow_twins_matches_loop_reference_and_invariances():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    got = barlow_twins(z1, z2).item()
    assert got == pytest.approx(barlow_reference(z1.numpy(), z2.numpy(), 5e-3), rel=1e-5)
    assert barlow_twins(z2, z1).item() == pytest.approx(got, rel=1e-5)  # C -> C^T: same loss
    # Per-dimension positive scale and shift are undone by the batch standardization.
    assert barlow_twins(z1 * torch.tensor([2.0, 0.5, 3.0, 1.0]) + 7, z2).item() == pytest.approx(got, rel=1e-4)
    # Already standardized, decorrelated and identical views: C = I, loss 0 (up to BatchNorm's eps).
    z = t([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    assert barlow_twins(z, z).item() == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- VICReg

def test_vicreg_terms_hand_computed():
    z1, z2 = t([[0, 0], [2, 2]]), t([[0, 1], [2, 1]])
    # invariance: squared differences 0, 1, 0, 1 -> mean 0.5
    assert invariance(z1, z2).item() == pytest.approx(0.5)
    # variance: z1's columns have unbiased variance 2 (std 1.414 > 1, no hinge); z2's column 1 is
    # constant: std sqrt(0 + 1e-4) = 0.01, hinge 0.99, mean over 2 dimensions 0.495.
    assert variance(z1).item() == 0.0
    assert variance(z2).item() == pytest.approx(0.495, abs=1e-6)
    # covariance: z1 centered [[-1, -1], [1, 1]] -> cov [[2, 2], [2, 2]] / (B - 1 = 1); off-diagonal
    # squares 4 + 4 = 8, / D = 4. z2 centered [[-1, 0], [1, 0]] -> cov off-diagonal 0.
    assert covariance(z1).item() == pytest.approx(4.0)
    assert covariance(z2).item() == 0.0
    # 25 * 0.5 + 25 * (0 + 0.495) / 2 + 1 * (4 + 0) = 12.5 + 6.1875 + 4
    assert vicreg(z1, z2).item() == pytest.approx(22.6875, abs=1e-5)
    assert vicreg(z1, z2, sim_coeff=1, std_coeff=0, cov_coeff=0).item() == pytest.approx(0.5)


def test_vicreg_invariances():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert vicreg(z1, z2).item() == pytest.approx(vicreg(z2, z1).item(), rel=1e-6)
    # A shift of both views changes none of the three terms.
    assert vicreg(z1 + 3, z2 + 3).item() == pytest.approx(vicreg(z1, z2).item(), rel=1e-5)
    # Identical, well-spread (std >= 1), decorrelated views: every term is 0.
    z = 2 * t([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    assert vicreg(z, z).item() == 0.0


# ---------------------------------------------------------------- BYOL

def test_byol_loss_hand_computed():
    # cos((1, 0), (0, 1)) = 0 and cos((1, 1), (2, 2)) = 1: 2 - 2 * mean(0, 1) = 1
    assert byol_loss(t([[1, 0], [1, 1]]), t([[0, 1], [2, 2]])).item() == pytest.approx(1.0)
    # cos((3, 4), (4, 3)) = 24 / 25: 2 - 48 / 25 = 0.08
    assert byol_loss(t([[3, 4]]), t([[4, 3]])).item() == pytest.approx(0.08, abs=1e-6)
    assert byol_loss(t([[1, 2]]), t([[-2, -4]])).item() == pytest.approx(4.0)  # opposite: the maximum


# ---------------------------------------------------------------- MAE

def test_masked_patch_mse_hand_computed():
    target = t([[[1, 3], [0, 2]]])  # (B=1, N=2, P=2)
    pred = t([[[1, -1], [5, 5]]])
    mask = t([[1, 0]])  # only patch 0 was hidden
    # raw pixels: ((1 - 1)^2 + (-1 - 3)^2) / 2 = 8
    assert masked_patch_mse(pred, target, mask, norm_pix=False).item() == pytest.approx(8.0)
    # normalized: patch 0 has mean 2, unbiased variance 2 -> target (-1, 1) / sqrt(2) (eps 1e-6 aside);
    # ((1 + 1/sqrt2)^2 + (-1 - 1/sqrt2)^2) / 2 = (1 + 1/sqrt2)^2 = 1.5 + sqrt2
    assert masked_patch_mse(pred, target, mask).item() == pytest.approx(1.5 + math.sqrt(2), rel=1e-5)


def test_masked_patch_mse_ignores_visible_patches():
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 4, 3, generator=g, requires_grad=True)
    target = torch.randn(2, 4, 3, generator=g)
    mask = t([[1, 0, 1, 0], [0, 0, 0, 1]])
    loss = masked_patch_mse(pred, target, mask)
    loss.backward()
    assert pred.grad[mask == 0].abs().max().item() == 0.0
    assert pred.grad[mask == 1].abs().min().item() > 0.0
    changed = pred.detach().clone()
    changed[mask == 0] += 100
    assert masked_patch_mse(changed, target, mask).item() == pytest.approx(loss.item(), rel=1e-6)


# ---------------------------------------------------------------- all losses

CASES = {
    "nt_xent": lambda a, b: nt_xent(a, b, 0.2),
    "barlow_twins": barlow_twins,
    "vicreg": vicreg,
    "byol_loss": byol_loss,
    "masked_patch_mse": lambda a, b: masked_patch_mse(a.view(4, 2, 3), b.view(4, 2, 3), t([[1, 0]] * 4)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("collapsed", [False, True], ids=["random", "collapsed"])
def test_gradients_finite(name, collapsed):
    g = torch.Generator().manual_seed(4)
    a = torch.randn(4, 6, generator=g)
    b = a.clone() if collapsed else torch.randn(4, 6, generator=g)
    if collapsed:  # every sample the same: zero variance, the case the eps terms are there for
        a, b = a[:1].expand(4, 6).clone(), a[:1].expand(4, 6).clone()
    a.requires_grad_(True)
    b.requires_grad_(True)
    loss = CASES[name](a, b)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("name", CASES)
def test_float32_inside_bf16_autocast(name):
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    plain = CASES[name](a, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = CASES[name](a, b)
    assert cast.dtype == torch.float32
    assert cast.item() == pytest.approx(plain.item(), rel=1e-6)
