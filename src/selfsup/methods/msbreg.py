"""MSBReg: embeddings as particles under three forces: attraction to a momentum network's multi-view
centroid, global dispersion by the singular-value spectrum, local dispersion by Brownian kicks."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.dynamics import brownian_directions, brownian_loss, multiview_centroid_loss, singular_value_loss
from ..registry import register
from ..samples import cat
from .base import Batch, Method
from .ema import MomentumSchedule, ema_update, frozen_copy


@register("method", "msbreg")
class MSBReg(Method):
    """Online: backbone -> projector ``mlp([D, hidden_dim, out_dim])`` -> predictor
    ``mlp([out_dim, pred_hidden_dim, out_dim])``; target: an EMA copy of backbone + projector (BYOL's
    "delayed-parameter" network), no gradient. All V global views go through both in one pass.

    Loss (``losses.dynamics``), with z the online projections of the V views (the particles):

        centroid_weight * multiview_centroid_loss(predictions, target projections)   # attraction
      + singular_weight * singular_value_loss(z)      # global dispersion, per view, averaged
      + brownian_weight * brownian_loss(z, r)         # local dispersion, r: one random unit vector per image

    The centroid is the target network's mean of an image's V normalized projections: a delayed
    centroid averaged over several views is a steadier attractor than BYOL's single other view, the
    paper's argument for combining the two. The Brownian directions come from torch's global RNG
    (reseeded by the trainer per step), so a resumed run draws the same kicks.

    Defaults and sources. This implementation has not been checked against the paper's equations:
    only its abstract, introduction and figure caption were available when it was written. The three
    terms follow their descriptions there: centroids of online and target embeddings of several
    views, a singular-value loss that decorrelates the dimensions and disperses the embeddings
    homogeneously, a loss that induces a random motion of the embeddings. The exact normalizations
    (nuclear norm at fixed Frobenius norm, unit kick directions shared by an image's views), the
    weights 1 / 1 / 0.1 and V = 4 views are this implementation's choices, not numbers read from the
    paper; check them against it before quoting results as the paper's. Heads (2048 hidden, 256 out)
    and momentum (cosine 0.99 -> 1) follow this package's BYOL defaults for small data and short runs.
    Set ``views.n_global`` to change V (at least 2); it takes no local views.
    """

    paper = ("Moon, Buracas, Park, Kim, Canny. An Embedding-Dynamic Approach to Self-supervised Learning. "
             "WACV 2024, arXiv:2207.03552")
    family = "distillation"
    batch_terms = "gather"  # the singular values of every rank's embeddings
    views = {"n_global": 4, "n_local": 0}
    view_limits = {"n_global": (2, None), "n_local": (0, 0)}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, out_dim: int = 256, pred_hidden_dim: int = 2048,
                 centroid_weight: float = 1.0, singular_weight: float = 1.0, brownian_weight: float = 0.1,
                 base_momentum: float = 0.99, final_momentum: float = 1.0):
        super().__init__(backbone)
        if min(centroid_weight, singular_weight, brownian_weight) < 0:
            raise ConfigError(f"msbreg weights must be >= 0, got centroid {centroid_weight}, singular {singular_weight}, "
                              f"brownian {brownian_weight}.", "use e.g. 1.0, 1.0 and 0.1.")
        self.centroid_weight, self.singular_weight, self.brownian_weight = centroid_weight, singular_weight, brownian_weight
        self.momentum_at = MomentumSchedule("msbreg", base_momentum, final_momentum)
        self.projector = mlp([backbone.dim, hidden_dim, out_dim])
        self.predictor = mlp([out_dim, pred_hidden_dim, out_dim])
        self.embedding_dim = out_dim
        self.teacher = frozen_copy(nn.Sequential(backbone, self.projector))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        V, B = batch.n_global, batch.size
        x = cat(batch.views[:V])  # (V B, ...): one pass for all global views
        h = self.backbone(x)  # (V B, D)
        z = self.projector(h)  # (V B, out_dim)
        p = self.predictor(z).view(V, B, -1)  # (V, B, out_dim)
        with torch.no_grad():
            t = self.teacher(x).view(V, B, -1)  # (V, B, out_dim)
        particles = z.view(V, B, -1)  # (V, B, out_dim)
        centroid = multiview_centroid_loss(p, t)
        singular = singular_value_loss(particles)
        brownian = brownian_loss(particles, brownian_directions(B, particles.shape[-1], particles.device))
        loss = self.centroid_weight * centroid + self.singular_weight * singular + self.brownian_weight * brownian
        return {"loss": loss, "centroid": centroid.detach(), "singular": singular.detach(), "brownian": brownian.detach(),
                "momentum": torch.tensor(self.momentum_at(batch.progress)), "features": h, "embeddings": z}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        ema_update(self.teacher, nn.Sequential(self.backbone, self.projector), self.momentum_at(progress))
