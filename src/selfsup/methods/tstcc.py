"""TS-TCC: temporal contrasting (cross-view prediction of future steps) and contextual contrasting."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import from_rank0
from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import nt_xent
from ..losses.temporal import future_prediction_loss
from ..registry import register
from .base import Batch, Method


class ContextTransformer(nn.Module):
    """(B, t, D) step representations -> (B, H) context c_t: a linear map to H, a class token, `depth`
    pre-norm transformer blocks; the class token's output is the context (TS-TCC's autoregressive model)."""

    def __init__(self, in_dim: int, hidden_dim: int = 100, depth: int = 4, heads: int = 4, mlp_dim: int = 64):
        super().__init__()
        self.embed = nn.Linear(in_dim, hidden_dim)
        self.cls = nn.Parameter(torch.randn(1, 1, hidden_dim))
        layer = nn.TransformerEncoderLayer(hidden_dim, heads, mlp_dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls.expand(z.shape[0], -1, -1), self.embed(z)], dim=1)  # (B, 1 + t, H)
        return self.blocks(tokens)[:, 0]


@register("method", "tstcc")
class TSTCC(Method):
    """Eldele, Ragab, Chen, Wu, Kwoh, Li, Guan. Time-Series Representation Learning via Temporal and
    Contextual Contrasting. IJCAI 2021, arXiv:2106.14112.

    Views (``views.preset=auto`` picks ``tstcc``): a weak view (scaling) and a strong view
    (permutation of up to 8 segments, then jitter). The backbone gives per-step representations z
    (``forward_steps``), L2-normalized over the feature dim. Temporal contrasting: a transformer
    summarizes one view's steps up to a random step t into a context c_t (``ContextTransformer``:
    hidden 100, 4 blocks, 4 heads), and linear maps W_k c_t, k = 1..K (K = ``horizon`` = 6), predict
    the OTHER view's z_{t+k}, contrasted against the other series' z_{t+k} in the batch (eq. 2;
    ``losses.temporal.future_prediction_loss``), in both directions. Contextual contrasting: NT-Xent
    (temperature 0.2) between the two views' contexts through a projection head. Loss =
    L_TC(weak -> strong) + L_TC(strong -> weak) + 0.7 L_CC (the paper's lambda1 = 1, lambda2 = 0.7).
    The paper's encoder is a 3-block CNN (128 channels); any ``timesteps`` backbone works here.
    """

    paper = ("Eldele, Ragab, Chen, Wu, Kwoh, Li, Guan. Time-Series Representation Learning via Temporal and "
             "Contextual Contrasting. IJCAI 2021, arXiv:2106.14112")
    family = "contrastive"
    batch_terms = "gather"  # every rank's series are negatives, at rank 0's time step
    requires = ("timesteps",)
    preferred_views = {"series": "tstcc"}

    def __init__(self, backbone: nn.Module, horizon: int = 6, hidden_dim: int = 100, depth: int = 4, heads: int = 4,
                 mlp_dim: int = 64, temperature: float = 0.2, tc_weight: float = 1.0, cc_weight: float = 0.7):
        super().__init__(backbone)
        if horizon < 1 or temperature <= 0 or hidden_dim % heads:
            raise ConfigError(f"tstcc needs horizon >= 1, temperature > 0 and hidden_dim divisible by heads, got "
                              f"{horizon}, {temperature}, {hidden_dim}, {heads}.", "use e.g. horizon=6, temperature=0.2.")
        D = backbone.dim
        self.horizon, self.temperature, self.tc_weight, self.cc_weight = horizon, temperature, tc_weight, cc_weight
        self.context = ContextTransformer(D, hidden_dim, depth, heads, mlp_dim)
        self.predictors = nn.ModuleList(nn.Linear(hidden_dim, D) for _ in range(horizon))  # W_k
        self.projector = mlp([hidden_dim, D // 2, D // 4])
        self.embedding_dim = D // 4

    def _temporal(self, z_from: torch.Tensor, z_to: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Context of `z_from` up to step t predicts `z_to` at t + 1 .. t + K: (loss, context (B, H))."""
        c = self.context(z_from[:, :t + 1])  # (B, H)
        predictions = torch.stack([w(c) for w in self.predictors])  # (K, B, D)
        targets = z_to[:, t + 1:t + 1 + self.horizon].transpose(0, 1)  # (K, B, D)
        return future_prediction_loss(predictions, targets), c

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        weak, strong = batch.views[:2]
        z1 = F.normalize(self.backbone.forward_steps(weak), dim=-1)  # (B, T, D)
        z2 = F.normalize(self.backbone.forward_steps(strong), dim=-1)
        T = min(z1.shape[1], z2.shape[1])
        if T <= self.horizon:
            raise ConfigError(f"tstcc predicts {self.horizon} steps ahead, and the series have {T} steps.",
                              f"use method.horizon={max(1, T // 4)} or longer series.")
        # a random step, from the trainer's seeded RNG; rank 0's on every rank (data parallel: the other
        # series of every rank, at the same step, are the negatives of the future prediction)
        t = int(from_rank0(torch.randint(T - self.horizon, (1,)).to(z1.device)))
        tc1, c1 = self._temporal(z1, z2, t)
        tc2, c2 = self._temporal(z2, z1, t)
        p1, p2 = self.projector(c1), self.projector(c2)
        cc = nt_xent(p1, p2, temperature=self.temperature)
        loss = self.tc_weight * (tc1 + tc2) + self.cc_weight * cc
        features = torch.cat([z1.amax(1), z2.amax(1)])  # (2B, D)
        return {"loss": loss, "temporal": (tc1 + tc2).detach(), "contextual": cc.detach(), "features": features,
                "embeddings": torch.cat([p1, p2])}
