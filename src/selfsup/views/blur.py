"""Gaussian blur with a different sigma per sample, as one grouped convolution over the batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kernel_size(image_size: int) -> int:
    """About 10% of the image side, odd, at least 3 (BYOL/SimCLR: 23 px at 224)."""
    k = int(0.1 * image_size)
    return max(3, k if k % 2 else k + 1)


def gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) sigmas -> (B, size) normalized 1-D kernels; sigma 0 gives the identity (a delta)."""
    offsets = torch.arange(size, dtype=sigma.dtype, device=sigma.device) - size // 2  # (size,)
    safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma))[:, None]
    kernels = torch.exp(-offsets**2 / (2 * safe**2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    delta = (offsets == 0).to(sigma.dtype).expand_as(kernels)
    return torch.where(sigma[:, None] > 0, kernels, delta)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image (B, C, H, W) with its own sigma (B,); reflect padding, like torchvision.

    Separable: a vertical then a horizontal depthwise pass, each one conv2d with groups = B * C
    (every channel of every sample gets its own kernel), so there is no loop over samples.
    """
    b, c, h, w = images.shape
    size = kernel_size(min(h, w))
    r = size // 2
    kernels = gaussian_kernels(sigma, size).repeat_interleave(c, dim=0)  # (B*C, size)
    x = F.pad(images, (r, r, r, r), mode="reflect").reshape(1, b * c, h + 2 * r, w + 2 * r)
    x = F.conv2d(x, kernels.view(b * c, 1, size, 1), groups=b * c)  # (1, B*C, H, W + 2r)
    x = F.conv2d(x, kernels.view(b * c, 1, 1, size), groups=b * c)  # (1, B*C, H, W)
    return x.view(b, c, h, w)
