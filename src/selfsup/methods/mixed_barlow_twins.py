"""Mixed Barlow Twins: Barlow Twins plus a mixup regularizer on the cross-correlations of mixed samples."""
from __future__ import annotations

import torch
from torch import nn

from ..distributed import gather, world
from ..errors import ConfigError
from ..losses.precision import full_precision
from ..losses.redundancy import cross_correlation, off_diagonal_loss, on_diagonal_loss, standardize
from ..registry import register
from ..samples import cat
from .barlow_twins import BarlowTwins
from .base import Batch


@full_precision
def mixup_regularizer(z1: torch.Tensor, z2: torch.Tensor, zm: torch.Tensor, perm: torch.Tensor, lam: float) -> torch.Tensor:
    """Mixed Barlow Twins' regularizer (unweighted): ||C^{M1} - C^{M1}_gt||_F^2 + ||C^{M2} - C^{M2}_gt||_F^2.

    z1, z2: (B, D) embeddings of the two views; zm: (B, D) embeddings of the mixed images
    lam * x1 + (1 - lam) * x2[perm]. Every embedding is standardized over the batch (as for Barlow
    Twins) and C^{Mk} = std(zm)^T std(zk) / B. The targets assume mixing the inputs mixes the
    embeddings: C^{M1}_gt = lam C(z1, z1) + (1 - lam) C(z2[perm], z1), C^{M2}_gt = lam C(z1, z2)
    + (1 - lam) C(z2[perm], z2). The targets keep their gradient, as in the authors' code.
    By linearity both differences are (std(zm) - mix)^T std(zk) / B with
    mix = lam std(z1) + (1 - lam) std(z2)[perm], which needs 2 (D, D) products instead of 6.
    """
    rank, size = world()
    if size > 1:  # data parallel: statistics over every rank's embeddings; each rank mixed its own images
        B = z1.shape[0]
        with torch.no_grad():
            perm = gather(perm + rank * B)  # (NB,): each rank's permutation, within its own rows
            lam = gather(torch.full((B, 1), float(lam), device=z1.device))  # (NB, 1): each rank drew its own lam
        z1, z2, zm = gather(z1), gather(z2), gather(zm)
    s1, s2, sm = standardize(z1), standardize(z2), standardize(zm)  # (B, D) each
    B = z1.shape[0]
    residual = sm - (lam * s1 + (1 - lam) * s2[perm])  # (B, D); std(z2[perm]) = std(z2)[perm]
    return ((residual.T @ s1) / B).pow(2).sum() + ((residual.T @ s2) / B).pow(2).sum()


@register("method", "mixed_barlow_twins")
class MixedBarlowTwins(BarlowTwins):
    """Barlow Twins (this library's ``barlow_twins``: same projector, standardization and loss) plus
    the mixup regularizer of Mixed Barlow Twins:

        lam ~ Beta(alpha, alpha), perm a random permutation of the batch (torch's global RNG),
        x_m = lam * x1 + (1 - lam) * x2[perm]  (view 1 mixed with shuffled view 2),
        L = L_BT + reg_scale * lambda_offdiag * (||C^{M1} - C^{M1}_gt||_F^2 + ||C^{M2} - C^{M2}_gt||_F^2)

    (``mixup_regularizer``): the cross-correlation of the mixed embeddings with each view's should
    be the same mix of the views' cross-correlations, which makes samples interact and counters
    the feature overfitting of Barlow Twins with long training and large embeddings.

    Weight: the paper's lambda_reg multiplies the off-diagonal lambda_BT, as in the authors'
    CIFAR/STL/TinyImageNet code (github.com/wgcban/mix-bt, main.py): ``reg_scale`` is lambda_reg,
    4.0 their value for CIFAR-10/100 and TinyImageNet (2.0 for STL-10). Their ImageNet script
    halves the term and warms lambda_reg up over 10 epochs; neither is done here. Their small-data
    code draws lam ~ Beta(1, 1) (uniform), the default ``alpha`` here.

    Cost: one extra forward (and backward) pass of the backbone and projector on the B mixed
    images, in its own pass so that BatchNorm normalizes the mixed batch with its own statistics
    (the authors' code runs each of the three batches separately), so a step costs about 1.5x a
    ``barlow_twins`` step. ``features`` / ``embeddings`` are those of the two views, (2B, ...).

    Differences from the authors' small-data code, kept so that ``reg_scale=0`` is exactly
    ``barlow_twins``: the projector is ``barlow_twins``' 3-layer MLP (theirs is [D, 512, 1024] and
    L2-normalizes its output before standardizing), embeddings are standardized with the biased
    batch variance plus eps (theirs divide by the unbiased std, which scales every C by (B-1)/B),
    and ``lambda_offdiag`` keeps ``barlow_twins``' 5e-3 (they use 1/128 with 1024 dimensions).
    """

    requires = ("mixable",)  # mixing table rows would average category codes
    paper = ("Bandara, De Melo, Patel. Guarding Barlow Twins Against Overfitting with Mixed Samples. "
             "arXiv:2312.02151, 2023")

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 2048, lambda_offdiag: float = 5e-3,
                 reg_scale: float = 4.0, alpha: float = 1.0):
        super().__init__(backbone, hidden_dim=hidden_dim, out_dim=out_dim, lambda_offdiag=lambda_offdiag)
        if reg_scale < 0:
            raise ConfigError(f"mixed_barlow_twins reg_scale must be >= 0, got {reg_scale}.", "use e.g. 4.0 (the paper's CIFAR value).")
        if alpha <= 0:
            raise ConfigError(f"mixed_barlow_twins alpha must be positive, got {alpha}.", "use e.g. 1.0 (lam uniform in [0, 1]).")
        self.reg_scale, self.alpha = reg_scale, alpha

    def draw_mix(self, B: int) -> tuple[float, torch.Tensor]:
        """lam ~ Beta(alpha, alpha) and a permutation of range(B), both from torch's global CPU RNG."""
        a = torch.tensor(float(self.alpha))
        lam = float(torch.distributions.Beta(a, a).sample())
        return lam, torch.randperm(B)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        x1, x2 = batch.views[0], batch.views[1]
        h = self.backbone(cat([x1, x2]))  # (2B, D): both views in one pass, as barlow_twins
        z = self.projector(h)  # (2B, out_dim)
        z1, z2 = z.chunk(2)  # (B, out_dim) each
        c = cross_correlation(z1, z2)  # (out_dim, out_dim)
        on_diag, off_diag = on_diagonal_loss(c), off_diagonal_loss(c)
        out = {"on_diag": on_diag.detach(), "off_diag": off_diag.detach(), "features": h, "embeddings": z}
        loss = on_diag + self.lambda_offdiag * off_diag
        if self.reg_scale > 0:  # reg_scale=0 is plain barlow_twins, without the extra pass
            lam, perm = self.draw_mix(batch.size)
            perm = perm.to(x1.device, non_blocking=True)  # drawn on the CPU: an async copy, no wait for the GPU
            zm = self.projector(self.backbone(lam * x1 + (1 - lam) * x2[perm]))  # (B, out_dim): the extra pass
            reg = mixup_regularizer(z1, z2, zm, perm, lam)
            loss = loss + self.reg_scale * self.lambda_offdiag * reg
            out.update(mix_reg=reg.detach(), mix_lambda=torch.tensor(lam))
        return {"loss": loss, **out}
