"""TS2Vec: hierarchical instance-wise and temporal contrast of two overlapping crops."""
from __future__ import annotations

import torch
from torch import nn

from ..losses.temporal import hierarchical_contrastive_loss
from ..registry import register
from .base import Batch, Method
from .ema import frozen_copy


@register("method", "ts2vec")
class TS2Vec(Method):
    """Yue, Wang, Duan, Yang, Huang, Tong, Xu. TS2Vec: Towards Universal Representation of Time
    Series. AAAI 2022, arXiv:2106.10466.

    Views (``views.preset=auto`` picks ``ts2vec``): two crops of each series that overlap in a
    random window of ``crop_l`` steps (one geometry for the batch, a random offset per series),
    each with timestamp masking (p = 0.5: a masked step carries nothing into the encoder). The
    backbone gives one representation per step (``forward_steps``); the loss is the hierarchical
    contrastive loss (``losses.temporal``) on the two views' representations of the overlap: at
    every scale, alpha = 0.5 of instance-wise contrast (the same step of the same series in the other
    view against the other series) and 0.5 of temporal contrast (the same step against the series'
    other steps), then max-pooling by 2 over time, until one step is left.

    The paper's encoder is ``ts2vec_cnn`` (320-d, 10 dilated blocks); its recipe: AdamW, lr 1e-3,
    batch 8, 200 iterations for datasets of at most 100,000 values (600 above). Its code evaluates
    the uniform average of the encoder's weights over all iterations (stochastic weight averaging);
    ``average=True`` keeps that average (a buffer of the checkpoint) and exports it as the encoder.
    The instance-level representation is the max over the steps (the backbone's ``forward``).

    Data parallel (``batch_terms = "per_rank"``): the crops' overlap length is drawn once per batch
    and each rank draws its own views, so the ranks' per-step representations differ in length and
    cannot be gathered; the instance contrast takes its negatives from the rank's own share.
    """

    paper = ("Yue, Wang, Duan, Yang, Huang, Tong, Xu. TS2Vec: Towards Universal Representation of Time Series. "
             "AAAI 2022, arXiv:2106.10466")
    family = "contrastive"
    batch_terms = "per_rank"  # each rank's crops overlap by their own length (see the docstring)
    requires = ("timesteps",)
    preferred_views = {"series": "ts2vec"}
    aux_outputs = ("features",)

    def __init__(self, backbone: nn.Module, alpha: float = 0.5, temporal_unit: int = 0, average: bool = True):
        super().__init__(backbone)
        self.alpha, self.temporal_unit, self.average = alpha, temporal_unit, average
        self.averaged = frozen_copy(backbone) if average else None
        self.register_buffer("n_averaged", torch.zeros((), dtype=torch.long))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.views[:2]
        p1 = batch.params[0] if batch.params else {}
        h1, h2 = self.backbone.forward_steps(v1), self.backbone.forward_steps(v2)  # (B, T1, D), (B, T2, D)
        if "overlap_length" in p1:  # TS2Vec's crops: the overlap ends view 1 and starts view 2
            start, length = int(p1["overlap_start"][0]), int(p1["overlap_length"][0])
            z1, z2 = h1[:, start:start + length], h2[:, :length]
        else:  # other views of the whole series: every step corresponds
            length = min(h1.shape[1], h2.shape[1])
            z1, z2 = h1[:, :length], h2[:, :length]
        loss = hierarchical_contrastive_loss(z1, z2, self.alpha, self.temporal_unit)
        features = torch.cat([z1.amax(1), z2.amax(1)])  # (2B, D): instance-level (max over the overlap)
        return {"loss": loss, "overlap": torch.tensor(float(z1.shape[1])), "features": features}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        if self.averaged is None:
            return
        n = int(self.n_averaged) + 1  # the running mean of the weights after each of the n steps
        live, mean = list(self.backbone.parameters()), list(self.averaged.parameters())
        torch._foreach_mul_(mean, 1 - 1 / n)
        torch._foreach_add_(mean, live, alpha=1 / n)
        for b_mean, b_live in zip(self.averaged.buffers(), self.backbone.buffers()):
            b_mean.copy_(b_live)
        self.n_averaged.fill_(n)

    def export_name(self) -> str:
        """The averaged weights once a step has run (the paper's code evaluates them), else the live backbone."""
        return "averaged" if self.averaged is not None and int(self.n_averaged) > 0 else "backbone"
