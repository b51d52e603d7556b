"""Random resized crop + horizontal flip as one batched resampling.

Pure functions of uniform random numbers, so the caller decides where the randomness comes from
(one draw per view group keeps views reproducible from a generator state). Boxes are continuous
fractions of the image, not whole pixels: the image is resampled at exactly the box it reports,
which is what augmentation-aware objectives regress.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TRIES = 10  # torchvision's RandomResizedCrop also gives up after 10 rejected boxes


def sample_boxes(u_area: torch.Tensor, u_ratio: torch.Tensor, u_pos: torch.Tensor, scale: tuple[float, float],
                 ratio: tuple[float, float], height: int, width: int) -> torch.Tensor:
    """Crop boxes with torchvision's RandomResizedCrop rule, vectorized over samples.

    u_area, u_ratio: (B, TRIES) uniforms for the area fraction (uniform in `scale`) and the
    aspect ratio w/h (log-uniform in `ratio`); u_pos: (B, 2) uniforms for the (y, x) position.
    The first try whose box fits in the image wins; a sample with no fitting try gets the
    centered box of the whole image with its aspect ratio clamped into `ratio`, as torchvision does.
    Returns (B, 4): (center_y, center_x, height, width) as fractions of the image.
    """
    area = scale[0] + (scale[1] - scale[0]) * u_area
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u_ratio)
    # Box sides as fractions: w_px = sqrt(area * H * W * aspect), so w = w_px / W.
    w = torch.sqrt(area * aspect * (height / width))
    h = torch.sqrt(area / aspect * (width / height))
    fits = (w <= 1) & (h <= 1)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    found = fits.any(dim=1)

    in_ratio = width / height
    if in_ratio < ratio[0]:
        h_fb, w_fb = in_ratio / ratio[0], 1.0
    elif in_ratio > ratio[1]:
        h_fb, w_fb = 1.0, ratio[1] / in_ratio
    else:
        h_fb, w_fb = 1.0, 1.0
    h = torch.where(found, h, torch.full_like(h, h_fb))
    w = torch.where(found, w, torch.full_like(w, w_fb))
    cy = torch.where(found, h / 2 + (1 - h) * u_pos[:, 0], torch.full_like(h, 0.5))
    cx = torch.where(found, w / 2 + (1 - w) * u_pos[:, 1], torch.full_like(w, 0.5))
    return torch.stack([cy, cx, h, w], dim=1)


def crop_flip(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample each image at its box, mirrored where `flip` is 1, straight to the output size.

    images: (B, C, H, W) float; boxes: (B, 4) (center_y, center_x, height, width) fractions;
    flip: (B,) 0/1. Returns (B, C, size[0], size[1]). One per-sample affine sampling grid + one
    bilinear grid_sample (the same as F.affine_grid + grid_sample); with align_corners=False, -1 and 1 are the outer pixel edges, so fractions map exactly and an
    identity box samples pixel centers exactly. Border padding keeps up-sampled crops that touch
    the image edge from blending in zeros. No antialiasing when shrinking (the crops here rarely
    shrink more than ~1.5x).
    """
    cy, cx, h, w = boxes.to(images.dtype).unbind(dim=1)
    n = len(boxes)
    # The affine map has no rotation or shear, so the grid is an outer "sum" of a per-sample x row
    # and y column: cheaper than F.affine_grid's batched 3x2 matmul (which dominated the time).
    ys = _pixel_centers(size[0], images)  # (S_h,) in (-1, 1)
    xs = _pixel_centers(size[1], images)  # (S_w,)
    gx = (w * (1 - 2 * flip.to(images.dtype)))[:, None] * xs + (2 * cx - 1)[:, None]  # (n, S_w); flip mirrors x
    gy = h[:, None] * ys + (2 * cy - 1)[:, None]  # (n, S_h)
    grid = torch.stack([gx[:, None, :].expand(n, size[0], size[1]), gy[:, :, None].expand(n, size[0], size[1])],
                       dim=-1)  # (n, S_h, S_w, 2) as (x, y)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _pixel_centers(n: int, like: torch.Tensor) -> torch.Tensor:
    return (torch.arange(n, dtype=like.dtype, device=like.device) * 2 + 1) / n - 1
