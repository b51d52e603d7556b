"""MSBReg's dispersive forces as an add-on to any joint-embedding method."""
from __future__ import annotations

import torch

from ..errors import ConfigError
from ..losses.dynamics import brownian_directions, brownian_loss, singular_value_loss
from ..methods.base import Batch, Method
from ..registry import register
from .base import Auxiliary


@register("auxiliary", "msbreg")
class MSBRegAux(Auxiliary):
    """``singular_value_loss(z) + brownian_weight * brownian_loss(z, r)`` on the method's embeddings.

    The paper adds its regularization to other methods (BYOL, SimSiam, ...) to stabilize them and
    prevent collapse. The host method already has an attraction between views, so this adds the two
    dispersive forces of ``selfsup.methods.msbreg``: the singular-value loss (global: a flat spectrum
    of each view's batch of normalized embeddings) and the Brownian loss (local: one random unit
    kick per image, shared by its views, drawn from torch's global RNG). The multi-view centroid
    term needs MSBReg's own momentum network and views, so it is not part of the add-on.

    z: ``out["embeddings"]`` viewed as (V, B, D), V = the number of views the method covers.
    ``weight`` (default 1.0) scales the whole term and ``brownian_weight`` (0.1) the kick relative
    to the singular-value term, as in the method's defaults (this implementation's choices; see
    the MSBReg method's docstring).
    """

    paper = ("Moon, Buracas, Park, Kim, Canny. An Embedding-Dynamic Approach to Self-supervised Learning. "
             "WACV 2024, arXiv:2207.03552")
    needs = ("embeddings",)
    default_weight = 1.0

    def __init__(self, method: Method, brownian_weight: float = 0.1):
        super().__init__(method)
        if brownian_weight < 0:
            raise ConfigError(f"auxiliary msbreg brownian_weight must be >= 0, got {brownian_weight}.", "use e.g. 0.1.")
        self.brownian_weight = brownian_weight

    def forward(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        B = batch.views[0].shape[0]
        z = out["embeddings"]
        z = z.view(len(z) // B, B, -1)  # (V, B, D), view-major
        singular = singular_value_loss(z)
        brownian = brownian_loss(z, brownian_directions(B, z.shape[-1], z.device))
        return {"loss": singular + self.brownian_weight * brownian, "singular": singular.detach(),
                "brownian": brownian.detach()}
