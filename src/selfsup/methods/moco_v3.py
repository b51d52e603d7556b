"""MoCo v3: query and momentum encoders on both views, in-batch negatives, no queue."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import moco_v3_loss
from ..registry import register
from ..samples import cat
from .base import Batch, Method
from .ema import MomentumSchedule, ema_update, frozen_copy


@register("method", "moco_v3")
class MoCoV3(Method):
    """Query encoder: backbone -> projector -> predictor; momentum encoder: an EMA copy of backbone +
    projector. Both views go through both; the loss is ``moco_v3_loss``: 2t (InfoNCE(q1, k2) +
    InfoNCE(q2, k1)), the other keys of the batch being the negatives.

    Heads as in the paper and the authors' code: Linear layers without bias, BatchNorm + ReLU after
    each hidden layer; the projector ends in BatchNorm without affine parameters, the predictor
    ``mlp([out_dim, hidden_dim, out_dim])`` in a plain Linear. `proj_layers` is 2 for ResNets (the
    default, for this library's convnets) and 3 for ViTs. The paper's widths are hidden 4096, out
    256; hidden 2048 here halves the head cost next to a small CPU backbone. Temperature: 1.0 is the
    paper's ResNet setting, 0.2 its ViT setting. Momentum: cosine from 0.99 to 1 over training.
    """

    paper = ("Chen, Xie, He. An Empirical Study of Training Self-Supervised Vision Transformers. "
             "ICCV 2021, arXiv:2104.02057")
    family = "contrastive"
    batch_terms = "gather"  # every rank's keys are negatives
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 256, proj_layers: int = 2,
                 temperature: float = 1.0, base_momentum: float = 0.99, final_momentum: float = 1.0):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"moco_v3 temperature must be positive, got {temperature}.", "use 1.0 (ResNet) or 0.2 (ViT).")
        if proj_layers < 2:
            raise ConfigError(f"moco_v3 proj_layers must be at least 2, got {proj_layers}.", "use 2 (ResNet) or 3 (ViT).")
        self.temperature = temperature
        self.momentum_at = MomentumSchedule("moco_v3", base_momentum, final_momentum)
        dims = [backbone.dim] + [hidden_dim] * (proj_layers - 1) + [out_dim]
        self.projector = mlp(dims, last_norm="bn_noaffine", bias_last=False)
        self.predictor = mlp([out_dim, hidden_dim, out_dim], bias_last=False)
        self.embedding_dim = out_dim
        self.momentum_encoder = frozen_copy(nn.Sequential(backbone, self.projector))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = cat(batch.views[:2])  # (2B, ...)
        h = self.backbone(x)  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        q1, q2 = self.predictor(z).chunk(2)  # (B, out_dim) each
        with torch.no_grad():
            k1, k2 = self.momentum_encoder(x).chunk(2)  # (B, out_dim) each
        loss = moco_v3_loss(q1, q2, k1, k2, self.temperature)
        return {"loss": loss, "momentum": torch.tensor(self.momentum_at(batch.progress)), "features": h, "embeddings": z}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        ema_update(self.momentum_encoder, nn.Sequential(self.backbone, self.projector), self.momentum_at(progress))
