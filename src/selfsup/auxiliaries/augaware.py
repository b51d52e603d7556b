"""Augmentation-aware self-supervision: predict the augmentation parameters each view was drawn with."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.precision import full_precision
from ..methods.base import Batch, Method
from ..registry import register
from .base import Auxiliary

# Parameter groups (one head each) and their columns: (column name, key in the view params, index or None, binary?).
GROUPS: dict[str, tuple[tuple[str, str, int | None, bool], ...]] = {
    "crop": (("crop_y", "crop", 0, False), ("crop_x", "crop", 1, False), ("crop_h", "crop", 2, False),
             ("crop_w", "crop", 3, False)),
    "flip": (("flip", "flip", None, True),),
    "color": (("jitter", "jitter", None, True), ("brightness", "brightness", None, False),
              ("contrast", "contrast", None, False), ("saturation", "saturation", None, False),
              ("hue", "hue", None, False)),
    "grayscale": (("grayscale", "grayscale", None, True),),
    "blur": (("blur_sigma", "blur_sigma", None, False),),
    "solarize": (("solarize", "solarize", None, True),),
}
TARGETS = ("absolute", "difference")


def view_parameters(params: dict[str, torch.Tensor], groups=tuple(GROUPS)) -> torch.Tensor:
    """One view's parameters as a table (B, K), columns in ``GROUPS`` order for `groups`.

    The crop's center x is mirrored (1 - x) on flipped views, as AugSelf does: it is then where the
    crop's content sits in the view the network sees.
    """
    columns = []
    for group in groups:
        for _, key, index, _ in GROUPS[group]:
            value = params[key].float()
            if index is not None:
                value = value[:, index]
            if key == "crop" and index == 1:
                value = torch.where(params["flip"] > 0, 1 - value, value)
            columns.append(value)
    return torch.stack(columns, dim=1)


def targets(params: list[dict[str, torch.Tensor]], target: str, groups=tuple(GROUPS)) -> torch.Tensor:
    """Raw regression/classification targets (N, K) for the views whose ``params`` are given.

    ``"absolute"``: each view's own parameters, views stacked view-major (N = V * B).
    ``"difference"`` (AugSelf): for the pair (view 0, view 1), rows ``[params(0) - params(1);
    params(1) - params(0)]`` for continuous columns and ``[same; same]`` for binary ones
    (1 where the two views agree), N = 2B, matching head inputs ``[h0 | h1; h1 | h0]``.
    """
    tables = [view_parameters(p, groups) for p in params]
    if target == "absolute":
        return torch.cat(tables)
    a, b = tables[0], tables[1]
    binary = torch.tensor([c[3] for g in groups for c in GROUPS[g]], device=a.device)
    same = (a == b).float()
    return torch.cat([torch.where(binary, same, a - b), torch.where(binary, same, b - a)])


def standardize(raw: torch.Tensor, binary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets the head regresses, and which columns count in this batch.

    Continuous columns become (x - batch mean) / batch std (population std); binary ones stay 0/1.
    A column that is constant in the batch is inactive: a parameter the view generator did not
    vary (saturation, hue, grayscale of grey images; blur with blur_p = 0) carries no signal.
    """
    active = (raw != raw[:1]).any(dim=0)  # (K,)
    mean, std = raw.mean(0), raw.std(0, correction=0)
    scaled = (raw - mean) / torch.where(active, std, torch.ones_like(std))
    return torch.where(binary, raw, scaled), active


@full_precision
def column_losses(pred: torch.Tensor, target: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
    """Per-column losses (K,) of predictions (N, K) against targets (N, K), float32: the mean squared
    error for continuous columns, the binary cross-entropy of logits for binary ones."""
    mse = (pred - target).pow(2).mean(0)
    bce = F.binary_cross_entropy_with_logits(pred, target.clamp(0, 1), reduction="none").mean(0)
    return torch.where(binary, bce, mse)


@register("auxiliary", "augaware")
class AugAware(Auxiliary):
    """A head on the backbone features that predicts the augmentation parameters of each view.

    AugSelf-GAN (the paper): augmentation makes a discriminator invariant to it and discards what
    the augmentation changed; a self-supervised head that predicts the augmentation parameter
    from the augmented image keeps that information. Its loss is the mean squared error between
    the predicted and the drawn parameters, normalized, one linear head per augmentation group,
    ``lambda = 1``. Here the same objective regularizes a joint-embedding method: the groups are
    what ``ImageViews`` draws (``batch.params``): ``crop`` (center y, x and height, width of the
    box), ``flip``, ``color`` (jitter on/off, brightness, contrast, saturation factors, hue
    shift), ``grayscale``, ``blur`` (sigma) and ``solarize``. Continuous parameters are regressed
    with the MSE, binary ones (flip, jitter, grayscale, solarize) classified with the binary
    cross-entropy. A group's loss is the mean over its active columns; the loss is the sum over groups.

    Normalization: the papers scale each parameter by the range it is drawn from; the auxiliary
    does not see the view configuration, so continuous targets are standardized with the batch's
    mean and standard deviation instead (each then has unit variance, so the MSE of a column is
    the fraction of its variance left unexplained, logged as ``<group>_err``; binary columns log
    ``<column>_acc``). Columns constant in the batch (not applicable, such as hue for grey images,
    or not drawn, such as blur with blur_p = 0) are left out of the loss. AugSelf squashes its
    regressions with tanh because its targets lie in [-1, 1]; standardized targets are unbounded,
    so the outputs here are plain linear.

    ``target="absolute"`` (default, the paper): each view's own parameters from that view's
    features, for every view the method returns features of (``len(features) // B``). The
    authors' code feeds the discriminator head the difference between the features of the
    augmented and the un-augmented image; auxiliaries see neither an un-augmented view nor the
    normalization to make one, so the head reads the view's features alone (their code's
    single-input variant). ``target="difference"`` is AugSelf (Lee et al. 2021): from the
    concatenated features ``[h0 | h1]`` of views 0 and 1 (and ``[h1 | h0]``), predict the
    parameter differences ``params(0) - params(1)`` (binary: whether the two views agree); it needs
    a method that returns features of both views.

    Heads: ``hidden_dim=None`` uses each paper's head, linear for ``"absolute"`` (AugSelf-GAN) and
    a 3-layer MLP 512 wide with BatchNorm for ``"difference"`` (AugSelf); an integer gives an MLP
    of that width for either. ``groups`` picks the groups to predict (AugSelf used crop and color).
    Default weight 1.0, as in both papers (AugSelf: 1.0 on STL-10, 0.5 on ImageNet-100).
    """

    requires = ("pixels",)  # rotations, jigsaw tiles and crop parameters are pixel operations (see the docstring)
    paper = ("Hou, Cao, Yuan, Zhao, Ma, Pan, Wan, Wang, Shen, Cheng. Augmentation-Aware Self-Supervision for "
             "Data-Efficient GAN Training. NeurIPS 2023, arXiv:2205.15677; AugSelf: Lee, Lee, Lee, Lee, Shin. Improving "
             "Transferability of Representations via Augmentation-Aware Self-Supervision. NeurIPS 2021, arXiv:2111.09613")
    needs = ("features",)
    default_weight = 1.0

    def __init__(self, method: Method, target: str = "absolute", groups: tuple[str, ...] = tuple(GROUPS),
                 hidden_dim: int | None = None):
        super().__init__(method)
        groups = (groups,) if isinstance(groups, str) else tuple(groups)
        if target not in TARGETS:
            raise ConfigError(f"auxiliary augaware target={target!r} is not valid.", f"choose one of: {', '.join(TARGETS)}.")
        if not groups or any(g not in GROUPS for g in groups) or len(set(groups)) != len(groups):
            raise ConfigError(f"auxiliary augaware groups={list(groups)} is not a list of distinct parameter groups.",
                              f"choose from: {', '.join(GROUPS)}.")
        if hidden_dim is not None and hidden_dim < 1:
            raise ConfigError(f"auxiliary augaware hidden_dim={hidden_dim} must be positive.", "use e.g. 512, or null for the paper's head.")
        self.target, self.groups = target, groups
        in_dim = method.backbone.dim * (2 if target == "difference" else 1)
        if hidden_dim is None and target == "difference":
            hidden_dim = 512

        def head(k: int) -> nn.Module:
            return nn.Linear(in_dim, k) if hidden_dim is None else mlp([in_dim, hidden_dim, hidden_dim, k])

        self.heads = nn.ModuleDict({g: head(len(GROUPS[g])) for g in groups})
        self.columns = [c[0] for g in groups for c in GROUPS[g]]
        self.binary_columns = [c[3] for g in groups for c in GROUPS[g]]
        self.register_buffer("binary", torch.tensor(self.binary_columns), persistent=False)
        self.register_buffer("group_index", torch.tensor([i for i, g in enumerate(groups) for _ in GROUPS[g]]),
                             persistent=False)

    def inputs(self, batch: Batch, features: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """Head inputs (N, in_dim) and the params of the views they cover."""
        B = batch.views[0].shape[0]
        n = len(features) // B
        if self.target == "absolute":
            return features, batch.params[:n]
        if n < 2:
            raise ConfigError(f"auxiliary augaware target='difference' needs features of two views; the method returns {n}.",
                              "use target='absolute' with this method, or a method that encodes both views (simclr, byol, ...).")
        h0, h1 = features[:B], features[B:2 * B]
        return torch.cat([torch.cat([h0, h1], 1), torch.cat([h1, h0], 1)]), batch.params[:2]

    def forward(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h, params = self.inputs(batch, out["features"])
        pred = torch.cat([self.heads[g](h) for g in self.groups], dim=1)  # (N, K)
        with torch.no_grad():
            target, active = standardize(targets(params, self.target, self.groups), self.binary)
        losses = column_losses(pred, target, self.binary)  # (K,)
        # A group's loss is the mean over its active columns; groups with none add nothing.
        n_groups = len(self.groups)
        weights = active.float()
        per_group = torch.zeros(n_groups, device=losses.device).index_add(0, self.group_index, losses * weights)
        counts = torch.zeros(n_groups, device=losses.device).index_add(0, self.group_index, weights)
        loss = (per_group / counts.clamp(min=1)).sum()
        return {"loss": loss, **self._logs(pred.detach().float(), target, active, losses.detach())}

    def _logs(self, pred, target, active, losses) -> dict[str, torch.Tensor]:
        active = active.tolist()  # one transfer, then plain Python
        logs = {}
        for g in self.groups:
            cols = [i for i, name in enumerate(self.columns) if name in {c[0] for c in GROUPS[g]}]
            continuous = [i for i in cols if not self.binary_columns[i] and active[i]]
            if continuous:
                logs[f"{g}_err"] = losses[continuous].mean()
            for i in cols:
                if self.binary_columns[i] and active[i]:
                    logs[f"{self.columns[i]}_acc"] = ((pred[:, i] > 0).float() == target[:, i]).float().mean()
        return logs
