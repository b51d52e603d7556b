"""Optimizers: AdamW and SGD from torch, LARS written here (torch has none).

Biases and normalization parameters (every tensor with one dimension) get no weight decay and, for
LARS, no trust-ratio adaptation, as in the BYOL and Barlow Twins recipes.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio (You et al., 2017, "Large Batch Training of
    Convolutional Networks", arXiv:1708.03888).

    update = momentum * buf + lr * eta * ||w|| / ||g + wd * w|| * (g + wd * w) for parameters in groups
    with ``lars=True``; plain SGD+momentum for the others (biases, norms).

    Like torch's fused optimizers it reads ``self.found_inf`` (a 0-dim tensor, set by the trainer's
    on-device non-finite check, train/guard.py): where it is nonzero the step changes nothing, neither
    the weights nor the momentum, decided on the device without reading the flag on the host.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        found_inf = getattr(self, "found_inf", None)
        ok = None if found_inf is None else found_inf == 0  # 0-dim bool on the device: apply this step
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                if group["lars"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm))
                    g = g.mul(trust)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if ok is not None:  # gated: a skipped first step leaves a zero buffer (m * 0 + g = g next time)
                    if buf is None:
                        buf = state["momentum_buffer"] = torch.zeros_like(p)
                    torch.where(ok, buf * group["momentum"] + g, buf, out=buf)
                    torch.where(ok, p - group["lr"] * buf, p, out=p)
                    continue
                if buf is None:
                    buf = state["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights with decay (and LARS adaptation), 1-D tensors (biases, norms) without."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay),
            dict(params=no_decay, weight_decay=0.0, lars=False)]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    betas: tuple[float, float] = (0.9, 0.999), lars_eta: float = 0.02,
                    gated: bool = False) -> torch.optim.Optimizer:
    """`gated`: the trainer checks for non-finite values on the device and skips a step through the
    optimizer's ``found_inf`` (train/guard.py), which torch's fused AdamW and SGD and LARS here honour;
    AdamW and SGD are then fused on every device (foreach kernels are otherwise the faster default on
    the CPU, fused on CUDA)."""
    groups = param_groups(model, weight_decay)
    params = [p for g in groups for p in g["params"]]
    if name == "adamw":
        for g in groups:
            g.pop("lars", None)
        fused = gated or all(p.is_cuda for p in params)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)
    if name == "sgd":
        for g in groups:
            g.pop("lars", None)
        if not gated:
            return torch.optim.SGD(groups, lr=lr, momentum=momentum)
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
        if momentum:  # fused SGD skipping its first step would leave its momentum buffers uninitialized (torch
            for p in params:  # 2.13 allocates them empty); zeros give the first real step the same buffer, g
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return optimizer
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=lars_eta)
    raise ConfigError(f"unknown optimizer {name!r}.", "use adamw, sgd or lars.")
