"""SimCLR: two augmented views, a projection MLP, and the NT-Xent contrastive loss."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import nt_xent
from ..registry import register
from ..samples import cat
from .base import Batch, Method


@register("method", "simclr")
class SimCLR(Method):
    """Each image's two views are positives; the other 2B - 2 views in the batch are negatives.

    Recipe: backbone -> projector ``mlp([D, hidden_dim, out_dim])`` (Linear-BN-ReLU-Linear) -> NT-Xent
    on the projections; the backbone features (before the projector) are the representation.
    The paper's projector is [D, 2048, 128] with temperature 0.1 at batch 4096 and 0.5 for CIFAR-10;
    the defaults here (512 hidden, 0.5) suit small images and batches of a few hundred, and the
    fmnist-cpu benchmark uses temperature 0.2. Lower temperatures weigh hard negatives more.
    """

    paper = ("Chen, Kornblith, Norouzi, Hinton. A Simple Framework for Contrastive Learning of "
             "Visual Representations. ICML 2020, arXiv:2002.05709")
    family = "contrastive"
    batch_terms = "gather"  # every rank's embeddings are negatives
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128, temperature: float = 0.5,
                 last_norm: bool = False):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"simclr temperature must be positive, got {temperature}.", "use e.g. 0.1-0.5.")
        self.temperature = temperature
        # last_norm: BatchNorm on the projection too, as in SimCLR v2 (arXiv:2006.10029) and
        # LightlySSL's SimCLRProjectionHead; the fmnist-cpu benchmark sets it to match the peer.
        self.projector = mlp([backbone.dim, hidden_dim, out_dim], last_norm="bn" if last_norm else False)
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        # One pass over both views (2B images): half the kernel launches of two passes.
        h = self.backbone(cat(batch.views[:2]))  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        z1, z2 = z.chunk(2)  # (B, out_dim) each
        return {"loss": nt_xent(z1, z2, temperature=self.temperature), "features": h, "embeddings": z}
