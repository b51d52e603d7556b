"""Projector and predictor heads: MLPs described by their layer widths.

Paper recipes, with D the backbone dim:

- SimCLR projector ``mlp([D, 512, 128])`` (fmnist-cpu; the paper uses [D, 2048, 128]);
- BYOL projector and predictor ``mlp([D, 4096, 256])``, ``mlp([256, 4096, 256])``;
- Barlow Twins and VICReg projectors ``mlp([D, 8192, 8192, 8192])``;
- SimSiam projector ``mlp([D, 2048, 2048, 2048], last_norm="bn_noaffine")``, predictor ``mlp([2048, 512, 2048])``;
- MoCo v3 projector ``mlp([D, 4096, 256], last_norm="bn_noaffine")`` (ResNet; ViT: 3 layers), predictor ``mlp([256, 4096, 256])``;
- DINO's head ``DINOHead`` (an MLP, L2 normalization, weight-normalized prototypes), shared by DINO and Mugs.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

NORMS = ("bn", "ln", None)
LAST_NORMS = (False, True, "bn", "ln", "bn_noaffine")


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm1d(dim)
    if kind == "ln":
        return nn.LayerNorm(dim)
    return nn.BatchNorm1d(dim, affine=False)  # "bn_noaffine"


def mlp(dims: list[int], norm: str | None = "bn", last_norm: bool | str = False,
        act: Callable[[], nn.Module] = nn.ReLU, bias_last: bool = True) -> nn.Sequential:
    """(B, dims[0]) -> (B, dims[-1]): Linear layers with ``norm`` and ``act`` between them.

    dims: widths, input first, at least two. norm: "bn", "ln" or None after every hidden Linear.
    last_norm: False for none; True for the same norm as the hidden layers; "bn", "ln" or
    "bn_noaffine" (BatchNorm without learned scale and shift, as SimSiam and MoCo v3 end their
    projectors). act: a module class, instantiated once per hidden layer.
    Hidden Linears before a BatchNorm have no bias: BN subtracts the mean, so a bias would be dead weight.
    """
    if len(dims) < 2 or any(int(d) < 1 for d in dims):
        raise ConfigError(f"mlp dims must be at least two positive widths, got {dims}.", "e.g. dims=[128, 512, 128].")
    if norm not in NORMS:
        raise ConfigError(f"unknown mlp norm {norm!r}.", "use 'bn', 'ln' or None.")
    if last_norm not in LAST_NORMS:
        raise ConfigError(f"unknown mlp last_norm {last_norm!r}.", "use False, True, 'bn', 'ln' or 'bn_noaffine'.")
    if last_norm is True and norm is None:
        raise ConfigError("mlp last_norm=True repeats the hidden norm, but norm is None.", "name it, e.g. last_norm='bn'.")
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers.append(nn.Linear(d_in, d_out, bias=norm != "bn"))
        if norm is not None:
            layers.append(_norm(norm, d_out))
        layers.append(act())
    layers.append(nn.Linear(dims[-2], dims[-1], bias=bias_last))
    if last_norm:
        layers.append(_norm(norm if last_norm is True else last_norm, dims[-1]))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """(B, D) -> (B, K): ``mlp([D, hidden, hidden, bottleneck])`` with GELU and no norm, L2-normalize,
    then a weight-normalized Linear without bias to K prototypes.

    With ``norm_last_layer`` (the paper's default) the weight norm's gain is fixed at 1, so the last
    layer is ``x @ normalize(v, dim=1).T``: a cosine to each prototype; otherwise a learned gain per
    prototype multiplies it. ``use_bn`` puts BatchNorm after the hidden Linears (an option of the
    official code, off by default).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 norm_last_layer: bool = True, use_bn: bool = False):
        super().__init__()
        self.mlp = mlp([in_dim, hidden_dim, hidden_dim, bottleneck_dim], norm="bn" if use_bn else None, act=nn.GELU)
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))  # (K, bottleneck), the direction v
        nn.init.trunc_normal_(self.prototypes, std=0.02)
        self.gain = None if norm_last_layer else nn.Parameter(torch.ones(out_dim))  # (K,), the weight norm's g

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        x = self.mlp(x)  # (B, bottleneck)
        # The cosines are divided by temperatures down to 0.04: in bf16 a rounding error of 0.004 would
        # become 0.1 in a logit, so the last layer runs in float32 (it is small next to the MLP).
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.normalize(x.float(), dim=-1)
            v = self.prototypes.detach() if freeze_last_layer else self.prototypes
            w = F.normalize(v, dim=1)  # (K, bottleneck)
            if self.gain is not None:
                w = w * (self.gain.detach() if freeze_last_layer else self.gain)[:, None]
            return x @ w.T  # (B, K)
