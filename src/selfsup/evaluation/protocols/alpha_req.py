"""alpha-ReQ: the power-law decay of the feature spectrum, no labels (Agrawal et al. 2022)."""
from __future__ import annotations

from ..context import EvalContext, protocol


@protocol("alpha_req", needs_labels=False)
def alpha_req_protocol(ctx: EvalContext, k_min: int = 11, k_max: int = 100) -> dict[str, float]:
    """alpha-ReQ: the power-law decay of the train features' covariance spectrum (about 1 is healthy)."""
    from ..spectrum import alpha_req

    return {"alpha": alpha_req(ctx.features("train"), k_min=k_min, k_max=k_max)}
