"""SupCon: supervised contrastive learning, the labelled reference for the contrastive family."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..heads import mlp
from ..losses.contrastive import supcon
from ..registry import register
from ..samples import cat
from .base import Batch, Method


@register("method", "supcon")
class SupCon(Method):
    """SimCLR's recipe (backbone -> projector ``mlp([D, hidden_dim, out_dim])``, two views) with the
    ``supcon`` loss: every view of every image of the same class is a positive, the rest of the
    batch are negatives (the paper's L_out). It needs labels (``needs_labels``): the trainer stops
    before training when the dataset has none. Temperature 0.1 as in the paper; the projector
    widths match this library's SimCLR (the paper's head is [D, 2048, 128]).

    Not self-supervised: it is the reference a self-supervised method on the same backbone and
    views is measured against.
    """

    paper = ("Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan. Supervised Contrastive "
             "Learning. NeurIPS 2020, arXiv:2004.11362")
    family = "contrastive"
    batch_terms = "gather"  # every rank's embeddings are positives or negatives
    views = {"n_global": 2, "n_local": 0}
    needs_labels = True

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128, temperature: float = 0.1):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"supcon temperature must be positive, got {temperature}.", "use e.g. 0.1.")
        self.temperature = temperature
        self.projector = mlp([backbone.dim, hidden_dim, out_dim])
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.labels is None:
            raise DataError("supcon needs a class label for every image, and this batch has none.",
                            "train it on a labelled dataset (class subfolders, or an .npz with 'y'), or use a self-supervised method.")
        h = self.backbone(cat(batch.views[:2]))  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        z1, z2 = z.chunk(2)  # (B, out_dim) each
        return {"loss": supcon(z1, z2, batch.labels, self.temperature), "features": h, "embeddings": z}
