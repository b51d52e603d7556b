"""GroCo: contrastive learning by sorting, positives must be ranked above the hardest negatives."""
from __future__ import annotations

import torch
from torch import nn

from ..distributed import world
from ..errors import ConfigError
from ..heads import mlp
from ..losses.sorting import NETWORKS, RELAXATIONS, groco_groups, group_order_loss
from ..registry import register
from .base import Batch, Method, encode_views


@register("method", "groco")
class GroCo(Method):
    """Group Ordering Constraints: sort each anchor's similarities to its positives and its hardest
    negatives with a differentiable sorting network, and penalize positives that land among negatives.

    Recipe (SimCLR's views, backbone and projector, a different loss): every view is an anchor. Its
    positives are the other global views of its image; its negatives are the ``n_negatives`` (k = 10)
    most similar other images of its own view. Each group is pre-sorted ascending, so the ground
    truth of the row [negatives, positives] is the identity. An odd-even network relaxed with the
    Cauchy CDF at steepness 1 sorts the row and returns a doubly stochastic matrix P; summing P over
    the positive ranks gives each element's probability of being ranked a positive, and the loss is
    its binary cross-entropy against 1 for positives and 0 for negatives (``group_order_loss``). Only
    positives ranked below negatives cost anything; with k hardest negatives the loss focuses on the
    local neighbourhood. Positives and negatives are detached (stop-gradient), the anchor is not.

    More views: set ``views.n_global`` (all global views are positives of each other) and/or
    ``views.n_local`` (local crops are anchors only; their positives are all global views), as the
    paper's 4 x 224 and 2 x 224 + 6 x 96 settings. Global views are the leading views of the batch
    with the first view's size.

    Defaults follow the paper and its code (ResNet-50, batch 1024): k = 10, steepness 1, Cauchy,
    odd-even, a 3-layer projector [D, D, D, 2048] (BN + ReLU between, BatchNorm without affine at the
    end). ``hidden_dim=None`` keeps the paper's hidden width = backbone width D, which is also what
    keeps the head cheap next to small CPU backbones. The paper also ran batch 256 with k = 10,
    so the defaults carry over to the batches of a few hundred used here; the batch must exceed k.
    """

    paper = ("Shvetsova, Petersen, Kukleva, Schiele, Kuehne. Learning by Sorting: Self-supervised Learning "
             "with Group Ordering Constraints. ICCV 2023, arXiv:2301.02009")
    family = "contrastive"
    batch_terms = "gather"  # the hardest negatives among every rank's images
    views = {"n_global": 2, "n_local": 0}
    view_limits = {"n_global": (2, None), "n_local": (0, None)}

    def __init__(self, backbone: nn.Module, hidden_dim: int | None = None, out_dim: int = 2048, n_negatives: int = 10,
                 steepness: float = 1.0, relaxation: str = "cauchy", network: str = "odd_even",
                 art_lambda: float = 0.25, stop_grad: bool = True):
        super().__init__(backbone)
        if n_negatives < 1:
            raise ConfigError(f"groco n_negatives must be at least 1, got {n_negatives}.", "use e.g. 10 (the paper).")
        if steepness <= 0:
            raise ConfigError(f"groco steepness must be positive, got {steepness}.", "use e.g. 1 (the paper, with Cauchy).")
        if relaxation not in RELAXATIONS:
            raise ConfigError(f"unknown groco relaxation {relaxation!r}.", f"choose one of: {', '.join(RELAXATIONS)}.")
        if network not in NETWORKS:
            raise ConfigError(f"unknown groco network {network!r}.", f"choose one of: {', '.join(NETWORKS)}.")
        self.n_negatives, self.steepness, self.relaxation = n_negatives, steepness, relaxation
        self.network, self.art_lambda, self.stop_grad = network, art_lambda, stop_grad
        width = hidden_dim or backbone.dim
        self.projector = mlp([backbone.dim, width, width, out_dim], last_norm="bn_noaffine", bias_last=False)
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        B, n_global = batch.size, batch.n_global
        if B * world()[1] <= self.n_negatives:  # data parallel: the negatives come from every rank's images
            raise ConfigError(f"groco takes the {self.n_negatives} hardest negatives per anchor, but a batch of "
                              f"{B * world()[1]} has only {B * world()[1] - 1}.",
                              f"use train.batch_size > {self.n_negatives} or a smaller n_negatives.")
        h, feats = encode_views(self.backbone, batch)  # (n_global B, D), (V B, D): local crops in a second pass
        z = self.projector(feats)  # (V B, out_dim)
        groups = groco_groups(z.view(len(batch.views), B, -1), n_global, self.n_negatives, self.stop_grad)
        loss = sum(group_order_loss(scores, p, self.network, self.relaxation, self.steepness, self.art_lambda).sum()
                   for scores, p in groups) / z.shape[0]
        with torch.no_grad():  # share of anchors whose least similar positive beats their hardest negative
            ordered = sum((s[:, self.n_negatives] > s[:, self.n_negatives - 1]).sum() for s, _ in groups) / z.shape[0]
        return {"loss": loss, "ordered": ordered.float(), "features": h, "embeddings": z[:n_global * B]}
