"""The method contract: a recipe of views + encoder + heads + loss (+ EMA teacher or queue).

A method is an ``nn.Module`` that owns its backbone (``self.backbone``), heads, loss
hyper-parameters and any state (teacher, queue, prototypes: registered buffers/modules, so they
are part of the checkpoint). The trainer calls ``forward(batch)`` once per step and
``on_step_end(progress)`` after the optimizer step; it knows nothing else about the method.

Class attributes a method sets:

- ``paper``: one-line citation shown by ``selfsup methods``.
- ``views``: the view layout it needs, ``dict(n_global=2, n_local=0)`` by default; the trainer's
  view generator draws exactly that.
- ``family``: "contrastive", "redundancy", "distillation", "masked", ...
- ``needs_labels``: True for a method that trains on ``Batch.labels`` (SupCon); the trainer then
  refuses a dataset without labels before training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn


@dataclass
class Batch:
    """One training step's input.

    views: V tensors (B, C, H, W), normalized floats; global views first, then local views.
    params: one dict per view of the random parameters drawn for it (see ``selfsup.views``).
    images: the un-augmented uint8 images (B, C, H, W) on the device (masked objectives use them).
    labels: (B,) int64 or None. index: (B,) dataset indices. progress: fraction of training done, in [0, 1].
    """

    views: list[torch.Tensor]
    params: list[dict[str, torch.Tensor]] = field(default_factory=list)
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None
    progress: float = 0.0


class Method(nn.Module):
    paper: ClassVar[str] = ""
    family: ClassVar[str] = ""
    views: ClassVar[dict] = {"n_global": 2, "n_local": 0}
    needs_labels: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return a dict with a scalar ``loss`` and anything worth logging (scalars, detached)."""
        raise NotImplementedError

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        """Called after each optimizer step (EMA teacher updates, queue bookkeeping)."""

    def embedding(self, batch: Batch) -> torch.Tensor | None:
        """Backbone features of the first view from the last forward, for cheap monitors (optional)."""
        return None
