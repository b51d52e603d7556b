"""Embedding-dynamics losses: forces on embeddings seen as particles on the unit hypersphere.

Moon, Buracas, Park, Kim, Canny. "An Embedding-Dynamic Approach to Self-supervised Learning",
WACV 2024, arXiv:2207.03552 (MSBReg). Three forces, each a loss whose gradient is the force:

- ``multiview_centroid_loss``: attraction of an image's views toward the momentum (target) network's
  centroid of its views;
- ``singular_value_loss``: a global dispersive force that flattens the spectrum of the batch of
  embeddings, i.e. spreads them homogeneously over the sphere (decorrelated, equal-variance dimensions);
- ``brownian_loss``: a local dispersive force with no knowledge of the other particles, a random kick
  per image per step (Brownian motion of the image's embedding on the sphere).

Shapes: V views, B images, D embedding dims. All three run in float32 (``full_precision``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .precision import full_precision


@full_precision
def multiview_centroid_loss(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean over views and images of ``||p_vb/|p_vb| - c_b||^2 = 2 - 2 cos(p_vb, c_b)``.

    p: (V, B, D) online outputs (predictions) of V views of B images; t: (V_t, B, D) the target
    network's embeddings of the same images (the caller passes them without gradient).
    c_b = normalize(mean_v normalize(t_vb)): the centroid of image b's target particles, projected
    back onto the sphere. Since the p are unit vectors, the loss equals ``2 - 2 <pbar_b, c_b>`` with
    pbar_b the online centroid (not re-normalized): it is 0 only when every view of an image sits on
    the target centroid, so it pulls the views together as well as the online centroid to the target's.
    Returns a scalar in [0, 4].
    """
    centroid = F.normalize(F.normalize(t, dim=-1).mean(0), dim=-1)  # (B, D)
    return (2 - 2 * (F.normalize(p, dim=-1) * centroid).sum(-1)).mean()


@full_precision
def singular_value_loss(z: torch.Tensor) -> torch.Tensor:
    """``1 - sum_k s_k / sqrt(r N)`` for the singular values s_k of the row-normalized (N, D) matrix,
    r = min(N, D); the mean of that over leading dims (e.g. over views for a (V, N, D) input).

    With unit rows the squared singular values sum to N, so ``sum_k s_k <= sqrt(r N)`` with equality
    only for a flat spectrum: ``Z^T Z = (N / D) I`` when N >= D, the second moment of the uniform
    distribution on the sphere (no mean direction, decorrelated dimensions of equal variance);
    ``Z Z^T = I`` when N < D (mutually orthogonal embeddings, the most spread N points can be).
    Maximizing the nuclear norm at fixed Frobenius norm is a global dispersive force; the loss is 0
    for a flat spectrum and ``1 - 1 / sqrt(r)`` for a fully collapsed batch (rank 1).
    The matrix is not centered: on the sphere a common mean direction is itself a lack of spread.
    """
    from ..distributed import gather, world

    z = F.normalize(z, dim=-1)
    if world()[1] > 1:  # data parallel: the spectrum of every rank's embeddings, (..., N N_rank, D)
        z = gather(z.transpose(0, -2).contiguous()).transpose(0, -2)
    n, d = z.shape[-2:]
    s = torch.linalg.svdvals(z)  # (..., min(N, D))
    return (1 - s.sum(-1) / math.sqrt(min(n, d) * n)).mean()


def brownian_directions(batch: int, dim: int, device: torch.device | str = "cpu",
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, D) random unit vectors, one per image, uniform on the sphere (normalized Gaussians).

    Drawn from `generator`, or from torch's global RNG (which the trainer reseeds per step, so a
    resumed run draws the same kicks).
    """
    g = torch.randn(batch, dim, generator=generator, device=device if generator is None else generator.device)
    return F.normalize(g.to(device), dim=-1)


@full_precision
def brownian_loss(z: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Mean over views and images of ``cos(z_vb, r_b)``: z (V, B, D) embeddings, directions (B, D) unit vectors.

    The loss value means nothing; its gradient does: descending it moves every view of image b along
    -r_b (projected onto the sphere's tangent plane), a fresh random direction each step, so each
    image's particle performs a random walk. Neighbours get independent kicks, which separates them
    on average (a purely dynamic local dispersion that needs no other particle's coordinates). All
    views of an image share its kick: it moves the particle, not the views apart. The step size is
    set by the loss weight. Expected value 0 for any z.
    """
    return (F.normalize(z, dim=-1) * directions).sum(-1).mean()
