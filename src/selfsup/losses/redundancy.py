"""Redundancy-reduction losses: make two views agree while decorrelating the embedding dimensions.

Barlow Twins works on the cross-correlation of the two views' batch-standardized embeddings;
VICReg on three named terms (invariance, variance, covariance) of the raw embeddings.

Data parallel: the batch statistics (cross-correlation, variance, covariance) are taken over the
embeddings of every rank (``distributed.gather``), so each rank computes the single-process value
at the global batch; the invariance term is a mean over samples and stays per rank (DDP's gradient
average makes it the global mean).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import gather
from .precision import full_precision


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """(D, D) -> (D * (D - 1),): the off-diagonal entries of a square matrix, row by row."""
    D = m.shape[0]
    # Dropping the last entry and viewing as (D - 1, D + 1) puts the diagonal in column 0.
    return m.flatten()[:-1].view(D - 1, D + 1)[:, 1:].flatten()


def standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(B, D) -> (B, D) with each dimension at batch mean 0 and (biased) variance 1, as BatchNorm
    without affine parameters does in training mode."""
    mean = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False)
    return (z - mean) / (var + eps).sqrt()


@full_precision
def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """(B, D), (B, D) -> (D, D): C_ij = mean over the batch of standardized z1_i times standardized z2_j."""
    z1, z2 = gather(z1), gather(z2)  # the whole batch of every rank
    return standardize(z1).T @ standardize(z2) / z1.shape[0]  # (D, B) @ (B, D)


def on_diagonal_loss(c: torch.Tensor) -> torch.Tensor:
    """Barlow Twins' invariance term: sum_i (1 - C_ii)^2 for a (D, D) cross-correlation."""
    return (1 - c.diagonal()).pow(2).sum()


def off_diagonal_loss(c: torch.Tensor) -> torch.Tensor:
    """Barlow Twins' redundancy-reduction term: sum_{i != j} C_ij^2 for a (D, D) cross-correlation."""
    return off_diagonal(c).pow(2).sum()


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambda_offdiag: float = 5e-3) -> torch.Tensor:
    """Barlow Twins: push the cross-correlation of the two views' embeddings to the identity.

    Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021, arXiv:2103.03230.

    z1, z2: (B, D) projections of two views. Each is standardized over the batch, C (D, D) is their
    cross-correlation, and the loss is sum_i (1 - C_ii)^2 + lambda_offdiag * sum_{i != j} C_ij^2 (a scalar).
    """
    c = cross_correlation(z1, z2)
    return on_diagonal_loss(c) + lambda_offdiag * off_diagonal_loss(c)


@full_precision
def invariance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """VICReg's invariance term: mean squared error between (B, D) embeddings of two views."""
    return F.mse_loss(z1, z2)


@full_precision
def variance(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance term: mean over the D dimensions of max(0, gamma - sqrt(Var(z_d) + eps)).

    z: (B, D). A hinge on the standard deviation (not the variance), so a collapsing dimension keeps
    a gradient; `eps` keeps the square root differentiable at zero variance.
    """
    std = (gather(z).var(dim=0) + eps).sqrt()  # (D,), unbiased variance as in the paper's code
    return F.relu(gamma - std).mean()


@full_precision
def covariance(z: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term: sum of the squared off-diagonal covariances of z (B, D), divided by D."""
    z = gather(z)
    B, D = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (B - 1)  # (D, B) @ (B, D) -> (D, D)
    return off_diagonal(cov).pow(2).sum() / D


def vicreg(z1: torch.Tensor, z2: torch.Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
           cov_coeff: float = 1.0) -> torch.Tensor:
    """VICReg: invariance between the views, variance and covariance regularization of each.

    Bardes et al. 2022, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
    Learning", ICLR 2022, arXiv:2105.04906.

    z1, z2: (B, D) expander outputs of two views. Returns sim_coeff * invariance(z1, z2)
    + std_coeff * (variance(z1) + variance(z2)) / 2 + cov_coeff * (covariance(z1) + covariance(z2)),
    the weighting of the paper's reference code.
    """
    return (sim_coeff * invariance(z1, z2)
            + std_coeff * (variance(z1) + variance(z2)) / 2
            + cov_coeff * (covariance(z1) + covariance(z2)))
