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
- ``view_limits``: the layouts it accepts, ``{"n_global": (min, max), "n_local": (min, max)}`` (max
  None: no bound); by default exactly ``views``. The trainer checks ``views.n_global`` /
  ``views.n_local`` against it before training (``check_views``), and ``Batch`` carries the layout.
- ``preferred_views``: {modality: preset} for methods whose loss is built around particular views
  (TS2Vec's overlapping crops); ``views.preset=auto`` picks it. ``preferred_backbones`` likewise for
  ``backbone.name=auto`` (SCGC's MLP node encoder).
- ``batch_terms``: how the loss behaves under data parallelism (torchrun: N processes at batch B/N
  each, gradients averaged by DDP, BatchNorm over every rank), one of ``BATCH_TERMS``:
  "gather": the loss has batch-level terms (negatives, batch statistics, Sinkhorn marginals, a
  center, queue or memory pushes) and takes each over every rank's samples through
  ``selfsup.distributed`` (``gather``, ``sum_over_ranks``, ``from_rank0``), so N ranks compute what
  one process computes at batch B; "local": a mean of per-sample terms with nothing batch-level,
  so the mean over ranks is the global mean without communication; "per_rank": batch-level terms
  taken within each rank's share, which differs from one process at batch B (the method's
  docstring and ``tests/test_distributed_registry.py`` say why). Randomness drawn inside
  ``forward`` (masks, mixup partners) comes from each rank's own RNG in every case.
- ``find_unused_parameters``: True (class or instance) for a method whose parameters that require
  a gradient may get none in some steps (DINO's and Mugs' last layer and SwAV's prototypes, frozen
  for the first steps); under torchrun DDP then looks for them after each forward
  (``train.loop.data_parallel``). EMA teachers and other copies without gradients are made with
  ``requires_grad=False`` and need nothing.
- ``requires``: capabilities beyond joint embeddings of views (``selfsup.capabilities``): pixels,
  feature maps, tokens, mixable samples. A method that only combines backbone outputs of its views
  requires nothing and works on every modality; the trainer refuses a run whose data or backbone
  lacks a requirement before training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..samples import cat, count


@dataclass
class TrainData:
    """What ``Method.prepare`` sees: the whole training set on the training device.

    samples: the stored samples (uint8 images (N, C, H, W), table rows (N, F) float32, ...; see the
    modality); labels: (N,) int64 or None; mean, std: the per-channel (per-column) normalization
    the views use.
    """

    samples: object
    labels: torch.Tensor | None
    mean: list[float]
    std: list[float]


@dataclass
class Batch:
    """One training step's input.

    views: V batches of views, normalized (images: (B, C, H, W) floats; tables (B, F); a ragged
    modality its own batch type, see ``selfsup.samples``): the ``n_global`` global views first,
    then the ``n_local`` local views, the layout the trainer checked against the method and drew.
    params: one dict per view of the random parameters drawn for it (see ``selfsup.views``).
    samples: the un-augmented samples of the batch on the device (uint8 images (B, C, H, W), table
    rows (B, F), ...): masked objectives and teachers that see the clean input use them.
    labels: (B,) int64 or None. index: (B,) dataset indices. progress: fraction of training done, in [0, 1].
    """

    views: list
    params: list[dict[str, torch.Tensor]] = field(default_factory=list)
    samples: object = None
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None
    progress: float = 0.0
    n_global: int | None = None  # None: every view is global
    n_local: int = 0

    def __post_init__(self):
        if self.n_global is None:
            self.n_global = len(self.views) - self.n_local

    @property
    def size(self) -> int:
        """B, the number of samples (each view holds one view of each)."""
        return count(self.views[0])


# The values of ``Method.batch_terms`` (see the module docstring), with the one-line meaning `selfsup methods` shows.
BATCH_TERMS = {
    "gather": "batch-level terms over every rank's samples: N processes at B/N compute one process at B",
    "local": "per-sample terms only: the mean over the ranks is the global mean",
    "per_rank": "batch-level terms within each rank's share: differs from one process at the global batch",
}


class Method(nn.Module):
    paper: ClassVar[str] = ""
    family: ClassVar[str] = ""
    batch_terms: ClassVar[str] = ""  # one of BATCH_TERMS; every registered method declares it
    views: ClassVar[dict] = {"n_global": 2, "n_local": 0}
    # The layouts it accepts: (min, max) global and local views, None = no upper bound. The default
    # is exactly ``views``: a method that reads ``views[:2]`` would silently ignore more.
    view_limits: ClassVar[dict | None] = None
    needs_labels: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()  # capabilities of the data and backbone (selfsup.capabilities)
    preferred_views: ClassVar[dict] = {}  # modality -> the view preset views.preset=auto picks (e.g. series: ts2vec)
    preferred_backbones: ClassVar[dict] = {}  # modality -> the backbone backbone.name=auto picks (scgc: node_mlp)

    aux_outputs: ClassVar[tuple[str, ...]] = ("features", "embeddings")
    embedding_dim: int | None = None  # width of the ``embeddings`` forward returns (set by methods that return them)
    find_unused_parameters: bool = False  # some trainable parameters get no gradient in some steps (see above)

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

    def changed_at_step_end(self) -> list[torch.Tensor]:
        """Trainable tensors that ``on_step_end`` changes outside the optimizer (SwAV renormalizes its
        prototypes). The on-device non-finite check (train/guard.py) runs ``on_step_end`` on a bad step
        too and then puts these back, with the buffers and the frozen parameters. Default: none."""
        return []

    def export_name(self) -> str:
        """The attribute holding the weights to export as the encoder (and to evaluate checkpoints
        with): "backbone"; a method that evaluates other weights (TS2Vec's average of its iterates)
        names their module, built like the backbone."""
        return "backbone"

    def embedding(self, batch: Batch) -> torch.Tensor | None:
        """Backbone features of the first view from the last forward, for cheap monitors (optional)."""
        return None

    @classmethod
    def check_views(cls, n_global: int, n_local: int) -> str | None:
        """Why the view layout (`n_global`, `n_local`) does not suit this method, or None."""
        limits = cls.view_limits or {k: (v, v) for k, v in cls.views.items()}
        for key, value in (("n_global", n_global), ("n_local", n_local)):
            low, high = limits.get(key, (0, 0))
            if value < low or (high is not None and value > high):
                wanted = f"{low}" if low == high else (f"at least {low}" if high is None else f"{low} to {high}")
                return f"{key}={value}, and it takes {wanted}"
        return None


def encode_views(backbone: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of every view with one pass per resolution (multi-crop, Caron et al. 2020):
    the global views together, then the local views. Returns (global (n_global B, D), all (V B, D)),
    both view-major; all starts with global."""
    n_global = batch.n_global
    h = backbone(cat(batch.views[:n_global]))  # (n_global B, D)
    if len(batch.views) == n_global:
        return h, h
    return h, torch.cat([h, backbone(cat(batch.views[n_global:]))])  # (V B, D)
