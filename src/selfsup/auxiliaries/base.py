"""The auxiliary-objective contract: a loss term any joint-embedding method can switch on.

An auxiliary is an ``nn.Module`` registered with ``@register("auxiliary", name)`` and built as
``cls(method, **options)``: it reads the method's widths (``method.backbone.dim``,
``method.embedding_dim``) and may own heads. The trainer attaches the configured auxiliaries to
the method (``method.auxiliaries``, a ModuleDict), so their parameters are optimized with the
method's and their state is part of the checkpoint. Each step:

1. ``before(batch)``: may change the views in place and add parameters to ``batch.params``
   (a pretext transform that the head then predicts); randomness comes from torch's global RNG,
   which the trainer reseeds per step, so resumed runs draw the same;
2. the method's ``forward(batch)`` -> ``out`` with ``features`` / ``embeddings``
   (see ``selfsup.methods.base``);
3. ``forward(batch, out)`` -> ``{"loss": scalar, ...detached logs}``; the trainer adds
   ``weight * loss`` to the method's loss and logs ``<name>_loss``;
4. ``on_step_end(progress)`` after the optimizer step.

Class attributes: ``paper`` (citation with arXiv id), ``needs`` (keys of the method's output it
reads; a method that does not return them is refused before training), ``default_weight``.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .. import registry
from ..errors import ConfigError
from ..methods.base import Batch, Method


class Auxiliary(nn.Module):
    paper: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ("features",)
    default_weight: ClassVar[float] = 1.0
    requires: ClassVar[tuple[str, ...]] = ()  # capabilities of the data or backbone (selfsup.capabilities)

    def __init__(self, method: Method):
        super().__init__()

    def before(self, batch: Batch) -> None:
        """Optionally transform ``batch.views`` in place before the method's forward."""

    def forward(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        """Called after each optimizer step."""


def attach(method: Method, specs) -> Method:
    """Build the auxiliaries of ``specs`` (a list of {name, weight, **options}) onto ``method``."""
    auxiliaries, weights = nn.ModuleDict(), {}
    for i, spec in enumerate(specs or ()):
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"method.aux[{i}] must be a mapping with a 'name', got {spec!r}.",
                              "write e.g. method.aux=[{name: augaware, weight: 0.1}].")
        options = {k: v for k, v in spec.items() if k not in ("name", "weight")}
        name = spec["name"]
        cls = registry.get("auxiliary", name)
        registry.check_kwargs("auxiliary", name, options)
        if name in auxiliaries:
            raise ConfigError(f"auxiliary {name!r} is listed twice in method.aux.", "list each auxiliary once.")
        method_name = getattr(type(method), "registered_name", type(method).__name__)
        supported = getattr(type(method), "aux_outputs", ("features", "embeddings"))
        missing = [key for key in cls.needs if key not in supported]
        if missing:
            raise ConfigError(f"auxiliary {name!r} needs the method's {', '.join(missing)}, which method {method_name!r} does not provide.",
                              "use it with a joint-embedding method such as simclr, byol, barlow_twins or vicreg.")
        raw = spec.get("weight", cls.default_weight)
        try:
            weight = float(raw)
        except (TypeError, ValueError):
            weight = float("nan")
        if not 0 <= weight < float("inf"):  # also refuses NaN, infinity and non-numbers
            raise ConfigError(f"method.aux[{i}].weight must be >= 0, got {raw!r}.", "use a finite, non-negative weight.")
        auxiliaries[name] = cls(method, **options)
        weights[name] = weight
    method.auxiliaries = auxiliaries
    method.aux_weights = weights
    return method


def before(method: Method, batch: Batch) -> None:
    for aux in getattr(method, "auxiliaries", {}).values():
        aux.before(batch)


def add_losses(method: Method, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``out`` with each auxiliary's weighted loss added to ``loss`` and its terms logged."""
    auxiliaries = getattr(method, "auxiliaries", None)
    if not auxiliaries:
        return out
    for name, aux in auxiliaries.items():
        for key in aux.needs:
            if key not in out:
                raise ConfigError(f"auxiliary {name!r} needs '{key}' from the method's forward, which did not return it.",
                                  "use it with a joint-embedding method such as simclr, byol, barlow_twins or vicreg.")
        terms = aux(batch, out)
        out["loss"] = out["loss"] + method.aux_weights[name] * terms["loss"]
        out[f"{name}_loss"] = terms["loss"].detach()
        out.update({f"{name}_{k}": v for k, v in terms.items() if k != "loss"})
    return out


@torch.no_grad()
def on_step_end(method: Method, progress: float) -> None:
    for aux in getattr(method, "auxiliaries", {}).values():
        aux.on_step_end(progress)
