"""NNCLR: the nearest neighbour from a support set of past projections is the positive."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import nnclr_loss
from ..registry import register
from ..samples import cat
from .base import Batch, Method
from .queue import FeatureQueue


@register("method", "nnclr")
class NNCLR(Method):
    """Backbone -> projector ``mlp([D, hidden_dim, hidden_dim, out_dim], last_norm=True)`` (3 layers, BN
    after each, output included) -> z; predictor ``mlp([out_dim, pred_hidden_dim, out_dim])`` -> p.
    Each view's z is replaced by its nearest neighbour (cosine) in the support set, a FIFO queue of
    the normalized view-1 projections of earlier steps; that neighbour is the positive of the other
    view's prediction and the other predictions in the batch are its negatives (``nnclr_loss``,
    temperature 0.1, symmetrized over the two views). The neighbour carries no gradient; the
    support set is part of the checkpoint.

    Paper: support set 98,304 (24 batches of 4096, under 8% of ImageNet), hidden 2048, out 256,
    predictor hidden 4096. Default support set here: 8192, 32 batches of 256 and about 14% of
    Fashion-MNIST: it must stay well below the dataset size, or most neighbours are the image's own
    projection from an earlier epoch. The support set starts empty (the neighbour search only sees
    rows written so far) so that no random vector is ever a positive; on the very first step the
    positive is the projection itself, as in SimCLR.
    """

    paper = ("Dwibedi, Aytar, Tompson, Sermanet, Zisserman. With a Little Help from My Friends: Nearest-Neighbor "
             "Contrastive Learning of Visual Representations. ICCV 2021, arXiv:2104.14548")
    family = "contrastive"
    batch_terms = "gather"  # every rank's predictions are negatives; the support set takes every rank's
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 256, pred_hidden_dim: int = 4096,
                 support_size: int = 8192, temperature: float = 0.1):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"nnclr temperature must be positive, got {temperature}.", "use e.g. 0.1.")
        self.temperature = temperature
        self.projector = mlp([backbone.dim, hidden_dim, hidden_dim, out_dim], last_norm=True)
        self.predictor = mlp([out_dim, pred_hidden_dim, out_dim])
        self.embedding_dim = out_dim
        self.support = FeatureQueue(support_size, out_dim, filled=False)
        self._new_entries: torch.Tensor | None = None  # this step's projections, enqueued after the optimizer step

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        p1, p2 = self.predictor(z).chunk(2)  # (B, out_dim) each
        z1, z2 = z.chunk(2)
        nn1, nn2 = self.support.nearest(z1), self.support.nearest(z2)  # (B, out_dim) each, no gradient
        loss = nnclr_loss(nn1, nn2, p1, p2, self.temperature)
        if self.training:
            self._new_entries = F.normalize(z1.detach().float(), dim=1)
        return {"loss": loss, "features": h, "embeddings": z}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        if self._new_entries is not None:
            self.support.push(self._new_entries)
            self._new_entries = None
