"""SLA: self-supervised label augmentation, one classifier over (class, input transformation) pairs."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..losses.precision import full_precision
from ..registry import register
from .base import Batch, Method, TrainData
from .supervised import check_labels

TRANSFORMATIONS = ("rotation", "color_permutation")


def transform_all(x: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, C, H, W) -> (M B, C, H, W): every image under each of the M transformations,
    transformation-major (rows m B .. m B + B - 1 are transformation m); transformation 0 is the identity.

    "rotation": M = 4, ``torch.rot90`` by 0, 90, 180, 270 degrees (needs square images).
    "color_permutation": M = 6, the channel orders of ``itertools.permutations((0, 1, 2))`` (RGB only).
    """
    B, C, H, W = x.shape
    if kind == "rotation":
        if H != W:
            raise ConfigError(f"sla rotates its views by 90 degrees, which needs square views, and they are {H}x{W}.",
                              "set views.size to one side (square crops), or use method.transformations=color_permutation.")
        return torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    if kind == "color_permutation":
        if C != 3:
            raise ConfigError(f"sla's color_permutation permutes 3 colour channels, and the images have {C}.",
                              "use method.transformations=rotation for grey or multi-band images.")
        return torch.cat([x[:, list(order)] for order in itertools.permutations(range(3))])
    raise ConfigError(f"unknown sla transformations {kind!r}.", f"choose one of: {', '.join(TRANSFORMATIONS)}.")


def n_transformations(kind: str) -> int:
    return {"rotation": 4, "color_permutation": 6}[kind]


def joint_labels(labels: torch.Tensor, M: int) -> torch.Tensor:
    """(B,) class labels -> (M B,) joint labels of ``transform_all``'s rows: class n under
    transformation m is joint class n M + m."""
    return torch.cat([labels * M + m for m in range(M)])


def aggregate(joint_logits: torch.Tensor, M: int) -> torch.Tensor:
    """(M B, N M) joint logits of the M transformed copies -> (B, N) aggregated logits (SLA+AG):
    s_n = (1/M) sum_m z_m[n M + m], each copy's logit for its own transformation, averaged."""
    B = joint_logits.shape[0] // M
    z = joint_logits.view(M, B, -1, M)  # (copy m, image, class n, transformation m')
    return torch.diagonal(z, dim1=0, dim2=3).mean(-1)  # (B, N, M) with m = m' -> (B, N)


@full_precision
def self_distillation(single_logits: torch.Tensor, aggregated_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 KL(softmax(agg / T) || softmax(single / T)), averaged over the batch; the aggregated
    prediction is the teacher (no gradient). (B, N), (B, N) -> scalar."""
    target = F.softmax(aggregated_logits.detach() / temperature, dim=1)
    return F.kl_div(F.log_softmax(single_logits / temperature, dim=1), target, reduction="batchmean") * temperature ** 2


@register("method", "sla")
class SLA(Method):
    """Self-supervised label augmentation (supervised; needs labels).

    Each augmented view x is transformed by all M transformations t_m (rotations by 0/90/180/270
    degrees by default, M = 4; or the 6 colour-channel permutations, M = 6, for RGB), the M B images
    go through the backbone in one pass, and one linear classifier z = ``nn.Linear(D, N M)`` predicts
    the joint label (class n, transformation m) = n M + m (the paper's eq. 5):

        L_SLA = (1/M) sum_m CE(z(t_m(x)), (y, m))

    Aggregated inference (SLA+AG, eq. 6): s_n = (1/M) sum_m z(t_m(x))[(n, m)], softmax over n.
    Self-distillation (SLA+SD, eq. 7, on by default): a second head u = ``nn.Linear(D, N)`` on the
    untransformed image learns the aggregated prediction in one pass,

        L = L_SLA + T^2 KL(softmax(s / T) || softmax(u(x) / T)) + CE(u(x), y),

    with s detached (the teacher), as in the authors' code (Lee et al., github.com/hankook/SLA),
    whose temperature option T defaults to 1 (the paper's equation). ``predict(x)`` returns both
    the aggregated and the single-pass predictions. The representation is the backbone feature of
    the untransformed view; ``features`` is that (B, D) tensor, there are no embeddings.

    Cost: M times the backbone work of ``supervised`` per image. Channel permutation acts on the
    normalized views, as the authors' code does. Options not taken over: the authors' "large
    loss" (sum instead of mean over transformations, for ImageNet-scale data). ``num_classes`` must
    cover the labels (see ``supervised``); the views are those of ``supervised`` (the ``mae``
    preset under ``views.preset: auto``).
    """

    requires = ("pixels",)  # rotations and colour permutations (see the docstring)
    paper = ("Lee, Hwang, Shin. Self-supervised Label Augmentation via Input Transformations. ICML 2020, "
             "arXiv:1910.05872")
    family = "supervised"
    batch_terms = "local"  # per-image cross-entropies and distillation
    views = {"n_global": 1, "n_local": 0}
    needs_labels = True
    aux_outputs = ("features",)  # heads are classifiers, not embeddings (see methods.base)

    def __init__(self, backbone: nn.Module, num_classes: int = 10, transformations: str = "rotation",
                 self_distillation: bool = True, temperature: float = 1.0):
        super().__init__(backbone)
        if transformations not in TRANSFORMATIONS:
            raise ConfigError(f"unknown sla transformations {transformations!r}.", f"choose one of: {', '.join(TRANSFORMATIONS)}.")
        if num_classes < 2:
            raise ConfigError(f"sla needs num_classes >= 2, got {num_classes}.", "set method.num_classes to the number of classes.")
        if temperature <= 0:
            raise ConfigError(f"sla temperature must be positive, got {temperature}.", "use e.g. 1.0 (the paper's).")
        self.num_classes, self.transformations, self.temperature = num_classes, transformations, temperature
        self.M = n_transformations(transformations)
        self.joint = nn.Linear(backbone.dim, num_classes * self.M)
        self.single = nn.Linear(backbone.dim, num_classes) if self_distillation else None
        self.embedding_dim = None  # features only

    @torch.no_grad()
    def prepare(self, data: TrainData) -> None:
        check_labels("sla", data.labels, self.num_classes)
        transform_all(data.samples[:1].float(), self.transformations)  # unsuitable images fail before training

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.labels is None:
            check_labels("sla", None, self.num_classes)
        x, y, M = batch.views[0], batch.labels, self.M
        B = x.shape[0]
        h = self.backbone(transform_all(x, self.transformations))  # (M B, D), identity copy first
        z = self.joint(h).float()  # (M B, N M)
        joint_loss = F.cross_entropy(z, joint_labels(y, M))  # mean over the M B rows = (1/M) sum_m
        out = {"joint_loss": joint_loss.detach()}
        loss = joint_loss
        if self.single is not None:
            u = self.single(h[:B]).float()  # (B, N): one pass on the untransformed view
            single_loss = F.cross_entropy(u, y)
            distill = self_distillation(u, aggregate(z, M), self.temperature)
            loss = loss + distill + single_loss
            out.update(single_loss=single_loss.detach(), distill_loss=distill.detach())
        return {"loss": loss, **out, "features": h[:B]}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, H, W) normalized images -> {"aggregated": (B, N) SLA+AG logits over the M
        transformed copies, "single": (B, N) one-pass logits}. "single" is the self-distilled head
        (SLA+SD), or without it the joint head's logits for the identity transformation (SLA+SI).
        Call ``eval()`` first for BatchNorm's running statistics."""
        B, M = x.shape[0], self.M
        h = self.backbone(transform_all(x, self.transformations))  # (M B, D)
        z = self.joint(h).float()  # (M B, N M)
        single = self.single(h[:B]).float() if self.single is not None else z[:B, ::M]
        return {"aggregated": aggregate(z, M), "single": single}
