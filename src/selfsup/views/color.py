"""Per-sample colour operations on float images in [0, 1], batched: (B, C, H, W) in, same out.

Each takes per-sample factors (B,) where the identity value (1, or 0 for hue) leaves a sample
unchanged, so a batch mixes jittered and untouched samples without masking. Saturation, hue and
grayscale need RGB (C = 3); callers skip them for other channel counts.
"""
from __future__ import annotations

import torch

# ITU-R BT.601 luma weights, the ones torchvision's rgb_to_grayscale uses.
LUMA = (0.299, 0.587, 0.114)

# RGB -> YIQ. Y is the same luma; a hue shift is a rotation of the (I, Q) chroma plane, which is
# one 3x3 matrix per sample instead of a round trip through HSV (torchvision's choice), and
# it keeps luma fixed. It is an approximation of an HSV hue shift, close for moderate shifts.
_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                     [0.595716, -0.274453, -0.321263],
                     [0.211456, -0.522591, 0.311135]], dtype=torch.float64)
_YIQ_INV = torch.linalg.inv(_YIQ)
# hue matrix(theta) = YIQ^-1 @ rot(theta) @ YIQ = _HUE_0 + cos(theta) _HUE_COS + sin(theta) _HUE_SIN
_HUE_0 = torch.outer(_YIQ_INV[:, 0], _YIQ[0])
_HUE_COS = torch.outer(_YIQ_INV[:, 1], _YIQ[1]) + torch.outer(_YIQ_INV[:, 2], _YIQ[2])
_HUE_SIN = torch.outer(_YIQ_INV[:, 2], _YIQ[1]) - torch.outer(_YIQ_INV[:, 1], _YIQ[2])


_ON_DEVICE: dict[torch.device, tuple[torch.Tensor, ...]] = {}


def _hue_basis(device: torch.device) -> tuple[torch.Tensor, ...]:
    """The three hue matrices on `device`, copied there once (a copy per step would make the host wait
    for the GPU every step)."""
    if device not in _ON_DEVICE:
        _ON_DEVICE[device] = tuple(m.to(device) for m in (_HUE_0, _HUE_COS, _HUE_SIN))
    return _ON_DEVICE[device]


def _per_sample(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma; any other channel count is returned as it is."""
    if images.shape[1] != 3:
        return images
    # Three multiply-adds on single channels: several times faster on CPU than einsum (a bmm)
    # or a weighted sum over the channel dimension.
    gray = images[:, 0:1] * LUMA[0]
    return gray.add_(images[:, 1:2], alpha=LUMA[1]).add_(images[:, 2:3], alpha=LUMA[2])


def brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x * f, clamped to [0, 1]."""
    return (images * _per_sample(factor)).clamp_(0, 1)


def contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the per-image mean luma: f x + (1 - f) mean(gray(x)), clamped to [0, 1]."""
    mean = grayscale(images.mean(dim=(2, 3), keepdim=True))  # (B, 1, 1, 1): luma is linear, so mean first
    return torch.lerp(mean, images, _per_sample(factor)).clamp_(0, 1)


def saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the luma image: f x + (1 - f) gray(x), clamped to [0, 1]. RGB only."""
    return torch.lerp(grayscale(images), images, _per_sample(factor)).clamp_(0, 1)


def hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma (I, Q) plane by 2 pi * shift (shift in [-0.5, 0.5] turns), clamped. RGB only."""
    angle = (2 * torch.pi * shift).to(torch.float64)
    base, cos, sin = _hue_basis(shift.device)
    matrix = base + torch.cos(angle)[:, None, None] * cos + torch.sin(angle)[:, None, None] * sin  # (B, 3, 3)
    b, c, h, w = images.shape
    out = torch.bmm(matrix.to(images.dtype), images.reshape(b, c, h * w))  # (B, 3, H*W)
    return out.view(b, c, h, w).clamp_(0, 1)


def solarize(images: torch.Tensor, apply: torch.Tensor, threshold: float) -> torch.Tensor:
    """x -> 1 - x where x >= threshold, for the samples where `apply` (B,) is 1."""
    flip = (images >= threshold) & (_per_sample(apply) > 0)
    return torch.where(flip, 1 - images, images)


def to_grayscale(images: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Replace RGB by its luma on all three channels for the samples where `apply` (B,) is 1."""
    return torch.where(_per_sample(apply) > 0, grayscale(images).expand_as(images), images)
