"""G-SimCLR: SimCLR whose negatives leave out the images that share a k-means pseudo-label."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..distributed import world
from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import masked_nt_xent, nt_xent
from ..pseudolabels import FIRST_STAGES, pseudo_labels
from ..registry import register
from ..samples import cat
from .base import Batch, Method, TrainData


@register("method", "gsimclr")
class GSimCLR(Method):
    """SimCLR guided by pseudo-labels: same-cluster images are not used as each other's negatives.

    Chakraborty, Gosthipaty, Paul. G-SimCLR: Self-Supervised Contrastive Learning with Guided
    Projection via Pseudo Labelling. ICDM Workshops (DLKT) 2020, arXiv:2009.12007.

    Recipe. Stage one (``prepare``, once before training): embed every training image with a
    first-stage model, cluster the embeddings with k-means into ``n_clusters`` groups and keep the
    cluster ids as pseudo-labels (buffer ``pseudo_labels``, (N,) int64, part of the checkpoint).
    Stage two: SimCLR (backbone -> projector ``mlp([D, hidden_dim, out_dim])`` -> NT-Xent), except
    that for the anchor i the denominator drops the views of other images with i's pseudo-label
    (``losses.masked_nt_xent``); the partner view always stays. Each image's pseudo-label is looked
    up through ``Batch.index``. Images of one class are likely to share a cluster, so the loss stops
    pushing apart many would-be positives (the "false negatives" of instance discrimination).

    Relation to the paper's batching. The paper builds batches in which no two images share a
    pseudo-label: the authors' code sets k = batch size, ranks the images within each cluster and
    orders the data by that rank, so a batch takes one image from each of the k clusters. Here the
    trainer owns the data order (a seeded permutation per epoch, which makes resumed runs
    bit-identical), so G-SimCLR keeps random batches and masks instead: as in the paper's batches,
    no anchor has a negative from its own cluster, and k is free to be the number of classes rather
    than the batch size. The differences: an anchor keeps fewer negatives (about (B - 1)(1 - sum_c
    p_c^2) other images on average, with cluster proportions p_c, instead of B - 1), and the mask
    holds when clusters are unbalanced, where the rank order puts many same-cluster images into the
    last batches of an epoch once the small clusters have run out. The log ``masked_frac`` is the
    fraction of negatives that share the anchor's pseudo-label (removed unless ``mask=False``,
    which trains plain SimCLR on the same pseudo-labels, an ablation).

    First stages (``first_stage``; stage one lives in ``selfsup.pseudolabels``):

    - "dae", the paper's: a small convolutional denoising autoencoder trained here for
      ``first_stage_steps`` Adam steps (lr 1e-3, batches of 128) to reconstruct normalized images
      from copies with Gaussian noise (std ``noise_std``, in normalized units); the features are its
      32-d bottleneck. Encoder: three stride-2 3x3 conv-BN-ReLU blocks (16, 32, 64 channels) and a
      linear bottleneck; the decoder mirrors it with transposed convolutions. On a CPU it runs on one
      torch thread (restored afterwards), as the view generator does: tiny kernels on two threads
      stall each other on a loaded 2-core machine. Cost with the defaults on the 60,000
      Fashion-MNIST train images, measured on this project's 2-core CPU machine: about 23 s
      (18 s training, 3 s features, 1.5 s k-means; more while other jobs share the cores); k-means
      on its bottleneck agrees with the classes at NMI 0.55 (pixels: 0.51, in about 3 s).
    - "pixels": PCA of the normalized pixels to 50 dimensions (the covariance matrix accumulated in
      float64, then its eigenvectors): a deterministic, cheap baseline.
    - a path to an exported selfsup encoder (a run directory or its ``encoder/``): its features of
      the un-augmented images, L2-normalized, as a stronger first stage.

    k-means is scikit-learn's (``random_state=cluster_seed``, ``n_init=3``), the autoencoder draws its
    initial weights, batches and noise from generators seeded with ``cluster_seed``, and the global
    RNG is left untouched, so two ``prepare`` calls on the same CPU give the same labels (on a GPU,
    cuDNN's convolution gradients need not be bit-reproducible). A resumed run does not rely on that:
    the trainer loads ``pseudo_labels`` from the checkpoint after ``prepare``, so the run continues
    with the labels it started with.

    Un-prepared use: while ``pseudo_labels`` is empty (a method built without ``prepare``, as in the
    registry-wide smoke test), every image is its own pseudo-label, which is plain SimCLR; the first
    such forward says so with a ``UserWarning``.

    Defaults and the paper. The paper: a CIFAR ResNet on CIFAR-10 (batch 64 and k = 64 in the
    authors' code) and ResNet-50 on an ImageNet subset; the autoencoder's noise std 0.01 on [0, 1]
    pixels and features from its global-average-pooled bottleneck. Here: k = 10 (the number of classes of the small
    datasets this package targets; any k works with the mask), a projector and temperature as
    ``simclr`` (512 hidden, 0.5), a smaller autoencoder with more noise (0.2 normalized, about 0.07
    on [0, 1]) and a linear bottleneck, trained for a fixed step budget so that stage one stays a
    fraction of a CPU run.
    """

    requires = ("pixels",)  # the first stage learns from pixels (see the docstring)
    paper = ("Chakraborty, Gosthipaty, Paul. G-SimCLR: Self-Supervised Contrastive Learning with Guided "
             "Projection via Pseudo Labelling. ICDM Workshops 2020, arXiv:2009.12007")
    family = "contrastive"
    batch_terms = "gather"  # every rank's images are negatives unless in the anchor's group
    views = {"n_global": 2, "n_local": 0}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128, temperature: float = 0.5,
                 last_norm: bool = False, n_clusters: int = 10, first_stage: str = "dae",
                 first_stage_steps: int = 500, noise_std: float = 0.2, cluster_seed: int = 0, mask: bool = True):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"gsimclr temperature must be positive, got {temperature}.", "use e.g. 0.1-0.5.")
        if int(n_clusters) != n_clusters or n_clusters < 2:
            raise ConfigError(f"gsimclr n_clusters must be an integer >= 2, got {n_clusters!r}.",
                              "use e.g. the number of classes (10 for Fashion-MNIST or CIFAR-10).")
        if int(first_stage_steps) != first_stage_steps or first_stage_steps < 1:
            raise ConfigError(f"gsimclr first_stage_steps must be a positive integer, got {first_stage_steps!r}.",
                              "use e.g. 500 (the autoencoder's Adam steps).")
        if noise_std < 0:
            raise ConfigError(f"gsimclr noise_std must be >= 0, got {noise_std}.", "use e.g. 0.2 (normalized units).")
        first_stage = str(first_stage)
        if first_stage not in FIRST_STAGES and not Path(first_stage).exists():
            raise ConfigError(f"gsimclr first_stage {first_stage!r} is neither one of {', '.join(FIRST_STAGES)} "
                              "nor an existing path.",
                              "use first_stage=dae, first_stage=pixels, or the run directory of a `selfsup pretrain` run "
                              "(or its encoder/ folder).")
        self.temperature, self.n_clusters, self.first_stage = temperature, int(n_clusters), first_stage
        self.first_stage_steps, self.noise_std, self.cluster_seed, self.mask = int(first_stage_steps), noise_std, cluster_seed, mask
        self.projector = mlp([backbone.dim, hidden_dim, out_dim], last_norm="bn" if last_norm else False)
        self.embedding_dim = out_dim
        self.register_buffer("pseudo_labels", torch.zeros(0, dtype=torch.long))  # (N,) once prepared
        self._warned = False

    # ------------------------------------------------------------------ stage one: pseudo-labels

    @torch.no_grad()
    def prepare(self, data: TrainData) -> None:
        n = len(data.samples)
        if n < self.n_clusters:
            raise ConfigError(f"gsimclr has n_clusters={self.n_clusters} but the training set has only {n} images.",
                              f"use method.n_clusters={max(2, n // 10)} or fewer, or more data.")
        start = time.perf_counter()
        labels = pseudo_labels(data, self.first_stage, self.n_clusters, self.first_stage_steps, self.noise_std,
                               self.cluster_seed)  # (N,): first-stage features, then k-means (selfsup.pseudolabels)
        self.pseudo_labels = labels.to(self.pseudo_labels.device)
        print(f"gsimclr: {n} images -> {self.n_clusters} pseudo-labels ({self.first_stage} + k-means) "
              f"in {time.perf_counter() - start:.1f}s", file=sys.stderr)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The buffer's length is the dataset's: take the saved one's shape (an un-prepared method has (0,)).
        saved = state_dict.get(prefix + "pseudo_labels")
        if saved is not None and saved.shape != self.pseudo_labels.shape:
            self.pseudo_labels = torch.zeros(saved.shape, dtype=torch.long, device=self.pseudo_labels.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ stage two: guided SimCLR

    def batch_pseudo_labels(self, batch: Batch, size: int) -> torch.Tensor:
        """The pseudo-label of each batch image, (B,); every image its own group before ``prepare``."""
        if self.pseudo_labels.numel() == 0:
            if not self._warned:
                warnings.warn("gsimclr: pseudo_labels are empty (prepare() was not called); every image is its "
                              "own pseudo-label, so this is plain SimCLR.", stacklevel=2)
                self._warned = True
            return torch.arange(size, device=self.pseudo_labels.device) + world()[0] * size  # distinct over ranks too
        if batch.index is None:
            raise ValueError("gsimclr needs Batch.index (the dataset index of each image) to look up pseudo-labels.")
        return self.pseudo_labels[batch.index.to(self.pseudo_labels.device)]

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D)
        z = self.projector(h)  # (2B, out_dim)
        z1, z2 = z.chunk(2)  # (B, out_dim) each
        B = z1.shape[0]
        groups = self.batch_pseudo_labels(batch, B).to(z.device)  # (B,)
        # Each same-group image pair (i, j) removes 4 of the 2B (2B - 2) negatives: m / (B (B - 1)) of them.
        same_pairs = (groups[:, None] == groups[None, :]).sum() - B
        masked_frac = same_pairs.float() / max(B * (B - 1), 1)
        if self.mask:
            loss = masked_nt_xent(z1, z2, groups, temperature=self.temperature)
        else:
            loss = nt_xent(z1, z2, temperature=self.temperature)
        return {"loss": loss, "masked_frac": masked_frac.detach(), "features": h, "embeddings": z}
