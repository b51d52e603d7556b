"""DINO: a student matches a momentum teacher's centered, sharpened softmax over prototypes, with multi-crop."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..heads import DINOHead
from ..losses.distillation import dino_center, dino_loss
from ..registry import register
from ..samples import cat
from ..schedules import linear_warmup
from .base import Batch, Method, encode_views
from .ema import MomentumSchedule, ema_update, frozen_copy


@register("method", "dino")
class DINO(Method):
    """Student: backbone -> ``DINOHead`` on every view; teacher: an EMA copy of both, on the global
    views only, no gradient. Loss: ``dino_loss``, the student's softmax (temperature 0.1) against the
    teacher's centered and sharpened softmax, over all pairs of different views. The center is an
    EMA (momentum 0.9) of the teacher's logits, a buffer in the checkpoint.

    Multi-crop: 2 global views and ``views.n_local`` local views (6 by default; set it in the config),
    the global and local views each go through the backbone in one pass per resolution.
    Schedules, pure functions of progress: teacher temperature linear from 0.04 to 0.07 over the
    first ``teacher_temperature_warmup`` of training (the paper: the first 30 of 100 epochs), then
    constant; teacher momentum cosine from ``base_momentum`` to 1. The last layer is frozen during the
    first ``freeze_last_layer`` of training (the paper: the first epoch of 100, which helps stability).

    Defaults changed for small data: ``out_dim`` 4096 prototypes instead of 65536 (a 256 x 65536 last
    layer and softmax would cost many times the small backbones used here, and a dataset of 60k
    images of a few classes has far fewer modes than 4096); ``base_momentum`` 0.99 instead of 0.996,
    as for BYOL here: in runs of a few thousand steps a teacher averaging over ~250 steps lags too far
    behind a fast-changing student. DINO also clips gradients at 3.0 (``optim.clip_grad``).

    Small convnets: the loss can sit at the uniform plateau ln K for hundreds of steps (teacher
    outputs too alike across images for the sharpening to separate them; seen on Fashion-MNIST with
    convnet6, 600 steps at batch 64). ``use_bn_in_head=True`` with ``teacher_temperature=0.04`` (the
    official code's default, whose help says to lower it when the loss does not decrease) left the
    plateau within 100 steps in the same check; the paper's settings stay the defaults here.
    """

    paper = ("Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin. Emerging Properties in Self-Supervised "
             "Vision Transformers. ICCV 2021, arXiv:2104.14294")
    family = "distillation"
    batch_terms = "gather"  # the teacher's center is the mean over every rank
    aux_outputs = ("features",)  # what auxiliaries can read from its forward (see methods.base)
    views = {"n_global": 2, "n_local": 6}
    view_limits = {"n_global": (2, 2), "n_local": (0, None)}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 2048, bottleneck_dim: int = 256, out_dim: int = 4096,
                 norm_last_layer: bool = True, student_temperature: float = 0.1,
                 warmup_teacher_temperature: float = 0.04, teacher_temperature: float = 0.07,
                 teacher_temperature_warmup: float = 0.3, center_momentum: float = 0.9,
                 base_momentum: float = 0.99, final_momentum: float = 1.0, freeze_last_layer: float = 0.01,
                 use_bn_in_head: bool = False):
        super().__init__(backbone)
        if min(student_temperature, warmup_teacher_temperature, teacher_temperature) <= 0:
            raise ConfigError(f"dino temperatures must be positive, got student {student_temperature}, "
                              f"teacher {warmup_teacher_temperature} -> {teacher_temperature}.",
                              "use e.g. student_temperature=0.1, teacher 0.04 -> 0.07.")
        if not 0.0 <= center_momentum < 1.0 or not 0.0 <= teacher_temperature_warmup <= 1.0:
            raise ConfigError(f"dino needs center_momentum in [0, 1) and teacher_temperature_warmup in [0, 1], got "
                              f"{center_momentum}, {teacher_temperature_warmup}.", "use e.g. 0.9 and 0.3.")
        self.student_temperature = student_temperature
        self.warmup_teacher_temperature, self.teacher_temperature = warmup_teacher_temperature, teacher_temperature
        self.teacher_temperature_warmup, self.center_momentum = teacher_temperature_warmup, center_momentum
        self.momentum_at = MomentumSchedule("dino", base_momentum, final_momentum)
        self.freeze_last_layer = freeze_last_layer
        self.find_unused_parameters = freeze_last_layer > 0  # the frozen last layer gets no gradient (under DDP)
        self.head = DINOHead(backbone.dim, out_dim, hidden_dim, bottleneck_dim, norm_last_layer, use_bn_in_head)
        self.teacher = frozen_copy(nn.Sequential(backbone, self.head))
        self.register_buffer("center", torch.zeros(1, out_dim))  # (1, K)

    def teacher_temperature_at(self, progress: float) -> float:
        """Linear from the warmup temperature (progress 0) to the final one (progress `teacher_temperature_warmup`)."""
        return linear_warmup(progress, self.warmup_teacher_temperature, self.teacher_temperature,
                             self.teacher_temperature_warmup)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        n_global, B = batch.n_global, batch.size
        h, feats = encode_views(self.backbone, batch)  # (2B, D), (V B, D): one backbone pass per resolution
        freeze = batch.progress < self.freeze_last_layer
        student = self.head(feats, freeze_last_layer=freeze).view(len(batch.views), B, -1)  # (V, B, K)
        with torch.no_grad():
            teacher = self.teacher(cat(batch.views[:n_global])).view(n_global, B, -1)  # (2, B, K)
        temperature = self.teacher_temperature_at(batch.progress)
        loss = dino_loss(student, teacher, self.center, self.student_temperature, temperature)
        if self.training:
            self.center.copy_(dino_center(self.center, teacher, self.center_momentum))
        # The head's output is K prototype scores, not an embedding; auxiliaries get the features only.
        return {"loss": loss, "teacher_temperature": torch.tensor(temperature), "features": h}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        ema_update(self.teacher, nn.Sequential(self.backbone, self.head), self.momentum_at(progress))
