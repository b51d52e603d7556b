"""Losses run in float32 even inside a bf16/fp16 autocast region.

Normalized cross-correlations, cosine logits divided by a small temperature and per-patch pixel
normalization lose too much in bf16 (8 bits of mantissa): a temperature of 0.2 turns a rounding
error of 0.004 in a cosine into 0.02 in a logit. The matmuls here are small next to the backbone,
so full precision costs little.
"""
from __future__ import annotations

import functools

import torch


def full_precision(loss_fn):
    """Decorator: cast floating tensor arguments to float32 and run `loss_fn` with autocast off."""

    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in args if torch.is_tensor(a)), "cpu")
        args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        kwargs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()}
        with torch.autocast(device_type=device, enabled=False):
            return loss_fn(*args, **kwargs)

    return wrapper
