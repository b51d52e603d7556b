"""The method contract: a recipe of views + encoder + heads + loss (+ EMA teacher or queue).

A method is an ``nn.Module`` that owns its backbone (``self.backbone``), heads, loss
hyper-parameters and any state (teacher, queue, prototypes: registered buffers/modules, so they
are part of the checkpoint). The trainer calls ``forward(batch)`` once per step and
``on_step_end(progress)`` after the optimizer step; it knows nothing else about the method.
Before the first step (of a fresh or a resumed run, before the checkpoint is loaded) it calls
``prepare(data)`` once with the whole training set, for methods that need a pass over the data
(G-SimCLR's pseudo-labels); the default does nothing. What ``prepare`` computes must be
deterministic or stored in buffers, so that a resumed run continues exactly.

What ``forward`` returns: a dict with the scalar ``loss``, detached scalars worth logging, and,
for joint-embedding methods, two tensors auxiliary objectives (``selfsup.auxiliaries``) build on,
both with their graph, global views in order, view-major ((view 0 of every image), (view 1 ...)):

- ``features``: backbone features of the global views, (n_global * B, D);
- ``embeddings``: the (online) projector's outputs for them, (n_global * B, ``embedding_dim``).

An asymmetric method may cover fewer views (MoCo v2 passes only view 0 through its online
encoder: (B, D)); an auxiliary reads the number of views covered as ``len(features) // B``.
``aux_outputs`` names the keys a method returns; MAE returns none, DINO only ``features``.

Class attributes a method sets:

- ``paper``: one-line citation shown by ``selfsup methods``.
- ``views``: the view layout it needs, ``dict(n_global=2, n_local=0)`` by default; the trainer's
  view generator draws exactly that.
- ``family``: "contrastive", "redundancy", "distillation", "masked", ...
- ``needs_labels``: True for a method that trains on ``Batch.labels`` (SupCon); the trainer then
  refuses a dataset without labels before training.
- ``modalities``: the kinds of data it works on, ``("image", "table")`` by default (a method that
  only combines backbone outputs of its views works on any); one that needs pixels (rotations,
  feature maps, patches) says ``("image",)`` and the trainer refuses other data before training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn


@dataclass
class TrainData:
    """What ``Method.prepare`` sees: the whole training set on the training device.

    images: uint8 (N, C, H, W), or for a table the rows (N, F) float32; labels: (N,) int64 or None;
    mean, std: per-channel floats of the [0, 1]-scaled pixels (per column for a table), the
    normalization the views use.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    mean: list[float]
    std: list[float]


@dataclass
class Batch:
    """One training step's input.

    views: V tensors (B, C, H, W), normalized floats (tables: (B, F)); global views first, then local views.
    params: one dict per view of the random parameters drawn for it (see ``selfsup.views``).
    images: the un-augmented uint8 images (B, C, H, W) on the device (masked objectives use them);
    for a table, its raw rows (B, F).
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
    modalities: ClassVar[tuple[str, ...]] = ("image", "table")

    aux_outputs: ClassVar[tuple[str, ...]] = ("features", "embeddings")
    embedding_dim: int | None = None  # width of the ``embeddings`` forward returns (set by methods that return them)

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    @torch.no_grad()
    def prepare(self, data: TrainData) -> None:
        """One pass over the training set before training (see the module docstring)."""

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return a dict with a scalar ``loss`` and anything worth logging (scalars, detached)."""
        raise NotImplementedError

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        """Called after each optimizer step (EMA teacher updates, queue bookkeeping)."""

    def embedding(self, batch: Batch) -> torch.Tensor | None:
        """Backbone features of the first view from the last forward, for cheap monitors (optional)."""
        return None
