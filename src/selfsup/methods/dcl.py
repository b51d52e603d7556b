"""DCL and DCLW: SimCLR's recipe with the decoupled contrastive loss (no positive in the denominator)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import dcl, dclw
from ..registry import register
from ..samples import cat
from .base import Batch, Method


@register("method", "dcl")
class DCL(Method):
    """SimCLR's recipe (backbone -> projector ``mlp([D, hidden_dim, out_dim])``, two views, in-batch
    negatives) with the ``dcl`` loss: the positive pair leaves the InfoNCE denominator, which removes
    the negative-positive coupling that makes NT-Xent need large batches. Temperature 0.1 as in
    the paper; the projector widths match this library's SimCLR (the paper uses SimCLR's [D, 2048,
    128]) so the two compare on equal heads.
    """

    paper = ("Yeh, Hong, Hsu, Liu, Chen, LeCun. Decoupled Contrastive Learning. ECCV 2022, arXiv:2110.06848")
    family = "contrastive"
    batch_terms = "gather"  # every rank's embeddings are negatives (DCLW: its weights' mean too)
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128, temperature: float = 0.1):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"{self.registered_name} temperature must be positive, got {temperature}.", "use e.g. 0.1.")
        self.temperature = temperature
        self.projector = mlp([backbone.dim, hidden_dim, out_dim])
        self.embedding_dim = out_dim

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return dcl(z1, z2, self.temperature)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        z1, z2 = z.chunk(2)  # (B, out_dim) each
        return {"loss": self.loss(z1, z2), "features": h, "embeddings": z}


@register("method", "dclw")
class DCLW(DCL):
    """DCL with the positive term of each pair weighted by w = 2 - exp(cos/sigma) / mean(exp(cos/sigma))
    (``dclw``, sigma 0.5 as in the paper): easy positives (already close) weigh less, hard ones more.
    Same recipe and defaults as ``dcl`` otherwise: projector ``mlp([D, hidden_dim, out_dim])``,
    temperature 0.1, two views, in-batch negatives.
    """

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128, temperature: float = 0.1,
                 sigma: float = 0.5):
        super().__init__(backbone, hidden_dim, out_dim, temperature)
        if sigma <= 0:
            raise ConfigError(f"dclw sigma must be positive, got {sigma}.", "use e.g. 0.5.")
        self.sigma = sigma

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return dclw(z1, z2, self.temperature, self.sigma)
