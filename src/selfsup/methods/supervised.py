"""Supervised: backbone -> linear classifier -> cross-entropy on the labels, the reference every
self-supervised method is measured against."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError
from ..registry import register
from .base import Batch, Method, TrainData


def check_labels(name: str, labels: torch.Tensor | None, num_classes: int) -> None:
    """Fail before training when the dataset has no labels or more classes than the head."""
    if labels is None:
        raise DataError(f"{name} needs a class label for every image, and the data has none.",
                        "train it on a labelled dataset (class subfolders, or an .npz with 'y'), or use a self-supervised method.")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ConfigError(f"{name} has num_classes={num_classes}, and the labels run from {int(labels.min())} to {int(labels.max())}.",
                          f"set method.num_classes={int(labels.max()) + 1} (labels must be 0 .. num_classes - 1).")


@register("method", "supervised")
class Supervised(Method):
    """Recipe: one augmented view per image -> backbone -> ``nn.Linear(D, num_classes)`` ->
    cross-entropy with ``Batch.labels`` (computed in float32). The representation is the backbone
    feature (the classifier is discarded at export, as a projector would be); ``features`` is
    returned for auxiliary objectives, there are no embeddings.

    Views: with ``views.preset: auto`` a one-view method gets the ``mae`` preset: a random resized
    crop of 20-100% of the area, a horizontal flip, no colour jitter. That is the usual supervised
    recipe (Inception crop + flip), close to the pad-and-crop + flip of CIFAR training, and it suits
    28x28 grey images. ``views.preset: fmnist`` instead gives the self-supervised methods' stronger
    views (crops down to 8%, brightness/contrast jitter), for a baseline trained on exactly their
    augmentations.

    ``num_classes`` must cover the labels (10 for Fashion-MNIST and CIFAR-10): the head is built with
    the method, before the data is seen, and ``prepare`` refuses labels outside 0 .. num_classes - 1.
    """

    paper = ("He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016, arXiv:1512.03385 "
             "(the standard supervised training the self-supervised literature compares with)")
    family = "supervised"
    batch_terms = "local"  # a per-image cross-entropy
    views = {"n_global": 1, "n_local": 0}
    needs_labels = True
    aux_outputs = ("features",)  # no projector, so no embeddings (see methods.base)

    def __init__(self, backbone: nn.Module, num_classes: int = 10):
        super().__init__(backbone)
        if num_classes < 2:
            raise ConfigError(f"supervised needs num_classes >= 2, got {num_classes}.", "set method.num_classes to the number of classes.")
        self.num_classes = num_classes
        self.classifier = nn.Linear(backbone.dim, num_classes)
        self.embedding_dim = None  # features only

    @torch.no_grad()
    def prepare(self, data: TrainData) -> None:
        check_labels("supervised", data.labels, self.num_classes)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.labels is None:
            check_labels("supervised", None, self.num_classes)
        h = self.backbone(batch.views[0])  # (B, D)
        logits = self.classifier(h).float()  # (B, num_classes)
        loss = F.cross_entropy(logits, batch.labels)
        accuracy = (logits.detach().argmax(1) == batch.labels).float().mean()
        return {"loss": loss, "accuracy": accuracy, "features": h}
