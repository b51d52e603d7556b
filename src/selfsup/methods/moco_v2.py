"""MoCo v2: a query encoder, a momentum key encoder and a FIFO queue of negative keys."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import info_nce
from ..registry import register
from ..samples import cat
from .base import Batch, Method
from .ema import ema_update, frozen_copy
from .queue import FeatureQueue


@register("method", "moco_v2")
class MoCoV2(Method):
    """Query: backbone -> projector ``mlp([D, hidden_dim, out_dim], norm=None)`` (v2's 2-layer MLP
    head, no BatchNorm). Key: an EMA copy of backbone + projector, no gradient. Loss: InfoNCE of
    each query against its key (the other view of the image) and the `queue_size` keys of earlier
    steps as negatives, temperature 0.2; the step's keys then replace the oldest in the queue.

    Paper: K = 65536 keys, momentum 0.999, batch 256 over ~500k steps. Defaults here: K = 4096 (16
    batches of 256, under a tenth of Fashion-MNIST, so an image's own key from its last epoch is
    rarely in the queue), and momentum 0.99: a key encoder averaging ~100 steps keeps up with a
    run of a few thousand steps, and the queue (16 steps of keys) stays consistent with it; 0.999
    averages ~1000 steps, longer than such a run warms up. The queue is part of the checkpoint.

    ``symmetric=True`` also contrasts view 2's query with view 1's key (loss averaged over both,
    both keys enqueued), the variant of the authors' CIFAR demo; the paper's v2 is asymmetric.
    Shuffling BN, which the paper uses across GPUs to keep a query and its key from sharing
    BatchNorm statistics, is not done: on one process there is nothing to shuffle across.
    """

    paper = ("Chen, Fan, Girshick, He. Improved Baselines with Momentum Contrastive Learning. "
             "arXiv:2003.04297, 2020 (MoCo: He et al., CVPR 2020, arXiv:1911.05722)")
    family = "contrastive"
    batch_terms = "gather"  # the key queue takes every rank's keys
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 128, queue_size: int = 4096,
                 temperature: float = 0.2, momentum: float = 0.99, symmetric: bool = False):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"moco_v2 temperature must be positive, got {temperature}.", "use e.g. 0.2.")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"moco_v2 momentum must be in [0, 1], got {momentum}.", "use e.g. 0.99 or 0.999.")
        self.temperature, self.momentum, self.symmetric = temperature, momentum, symmetric
        self.projector = mlp([backbone.dim, hidden_dim, out_dim], norm=None)
        self.embedding_dim = out_dim
        self.key_encoder = frozen_copy(nn.Sequential(backbone, self.projector))
        self.queue = FeatureQueue(queue_size, out_dim, filled=True)
        self._new_keys: torch.Tensor | None = None  # this step's keys, enqueued after the optimizer step

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        x1, x2 = batch.views[:2]  # (B, ...) each
        n_keys = 2 * batch.size if self.symmetric else batch.size
        if n_keys > self.queue.size:
            raise ConfigError(f"moco_v2 enqueues {n_keys} keys a step, more than queue_size={self.queue.size}.",
                              f"set method.queue_size to at least {n_keys} (a multiple of it, e.g. {16 * n_keys}).")
        negatives = self.queue.entries  # (Q, D): this step's keys join only after the optimizer step
        if self.symmetric:
            x = cat([x1, x2])  # (2B, ...)
            h = self.backbone(x)  # (2B, D)
            z = self.projector(h)  # (2B, out_dim)
            q1, q2 = z.chunk(2)  # (B, out_dim) each
            with torch.no_grad():
                k1, k2 = self.key_encoder(x).chunk(2)
            loss = 0.5 * (info_nce(q1, k2, self.temperature, negatives) + info_nce(q2, k1, self.temperature, negatives))
            keys = torch.cat([k1, k2])
        else:
            h = self.backbone(x1)  # (B, D): only the first view goes through the online encoder
            z = q = self.projector(h)  # (B, out_dim)
            with torch.no_grad():
                keys = self.key_encoder(x2)  # (B, out_dim)
            loss = info_nce(q, keys, self.temperature, negatives)
        if self.training:  # pushed view by view: every rank's view-1 keys, then view 2's (one process's order)
            self._new_keys = F.normalize(keys.float(), dim=1).view(-1, batch.size, keys.shape[-1])
        return {"loss": loss, "features": h, "embeddings": z}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        ema_update(self.key_encoder, nn.Sequential(self.backbone, self.projector), self.momentum)
        if self._new_keys is not None:
            for view_keys in self._new_keys:
                self.queue.push(view_keys)
            self._new_keys = None
