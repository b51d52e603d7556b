"""Accuracy of a frozen encoder + frozen probe under common image corruptions.

In the spirit of ImageNet-C (Hendrycks & Dietterich, ICLR 2019, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations"): five corruption kinds at five severities,
applied to the test images only; the probe is fitted once on clean train features and never
sees a corrupted image. The severities are re-chosen for small (28-32 px) images:

| kind           | parameter                     | 1    | 2    | 3    | 4    | 5    | ImageNet-C (224 px)      |
|----------------|-------------------------------|------|------|------|------|------|--------------------------|
| gaussian_noise | sigma, in units of [0, 1]     | 0.04 | 0.08 | 0.12 | 0.18 | 0.26 | .08 .12 .18 .26 .38      |
| gaussian_blur  | sigma, in pixels              | 0.5  | 0.75 | 1.0  | 1.5  | 2.0  | 1 2 3 4 6                |
| contrast       | factor c, x -> (x - m) c + m  | 0.6  | 0.45 | 0.3  | 0.2  | 0.1  | .4 .3 .2 .1 .05          |
| pixelate       | block side, in pixels         | 2    | 3    | 4    | 5    | 6    | side x .6 .5 .4 .3 .25   |
| occlusion      | patch side / image side       | 0.2  | 0.3  | 0.4  | 0.5  | 0.6  | (not in ImageNet-C)      |

Why these values: pixel noise does not scale with resolution, but a 28 px image has 64x fewer
pixels for a feature to average over than a 224 px one, so the ImageNet-C sigmas are shifted down
by about one level (CIFAR-10-C, for 32 px, does the same). Blur sigmas are in pixels; scaling
ImageNet-C's by 28/224 would leave severity 1 (0.125 px) a no-op, so severity 1 starts at half a
pixel and severity 5 (2 px, a 13-tap kernel) wipes out the stroke-level detail small images
live on. The contrast factor is relative, hence resolution-free, but objects fill small
frames with no redundant detail, so it starts milder than ImageNet-C and ends at its severity 4.
Pixelation uses whole-pixel blocks: with a fractional factor, nearest upsampling shifts content
by up to a pixel, which on 28 px changed more pixels than the pixelation itself (measured: a 0.8
factor moved pixels more than 0.5, so severity was not monotone). Block 2, the mildest there is,
keeps ImageNet-C's severity-2 fraction (0.5); block 6 (1/6, past its severity 5 at 1/4) leaves
5x5 cells of a 28 px image, a silhouette. Occlusion (a square in a random place per image)
covers 4% to 36% of the area and is filled with that image's per-channel mean, not zero: on
Fashion-MNIST's black background a black patch would only erase object pixels, so its strength
would depend on where the object happens to be.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError, closest
from .features import extract_features

SEVERITIES = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
    "gaussian_blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.1),
    "pixelate": (2, 3, 4, 5, 6),
    "occlusion": (0.2, 0.3, 0.4, 0.5, 0.6),
}
CORRUPTIONS = tuple(SEVERITIES)


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """x + N(0, sigma^2) per pixel, clipped to [0, 1]. x: float (B, C, H, W) in [0, 1]."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return (x + sigma * noise.to(x.device)).clamp_(0, 1)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalized 1-D Gaussian taps (2r + 1,), r = ceil(3 sigma): the cut tails weigh < 0.3%."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with edge-replicating padding. x: float (B, C, H, W) -> same shape.

    Replicate padding (not reflect) works for any image size and keeps a constant image constant.
    """
    kernel = gaussian_kernel(sigma).to(x)
    r, c = len(kernel) // 2, x.shape[1]
    rows = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)  # (C, 1, 2r+1, 1): one filter per channel
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), rows, groups=c)
    return F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), rows.transpose(2, 3), groups=c)


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """(x - m) * factor + m, m the per-image, per-channel mean (as ImageNet-C). x: (B, C, H, W)."""
    mean = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return ((x - mean) * factor + mean).clamp_(0, 1)


def pixelate(x: torch.Tensor, block: int) -> torch.Tensor:
    """Each `block` x `block` cell replaced by its mean: average-pool, then nearest-upsample.

    Cells sit on the pixel grid from the top-left corner; cells cut by the right or bottom edge
    average the pixels they hold (ceil-mode pooling). x: (B, C, H, W) -> same shape.
    """
    h, w = x.shape[-2:]
    small = F.avg_pool2d(x, block, stride=block, ceil_mode=True)  # (B, C, ceil(H / block), ceil(W / block))
    return small.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)[..., :h, :w]


def occlusion(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A square of side round(fraction * min(H, W)) at a uniform random place per image, set to
    that image's per-channel mean. x: (B, C, H, W) -> same shape."""
    b, _, h, w = x.shape
    side = min(round(fraction * min(h, w)), h, w)
    top = torch.randint(0, h - side + 1, (b,), generator=generator).to(x.device)  # (B,)
    left = torch.randint(0, w - side + 1, (b,), generator=generator).to(x.device)
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    inside_y = (ys >= top[:, None]) & (ys < top[:, None] + side)  # (B, H)
    inside_x = (xs >= left[:, None]) & (xs < left[:, None] + side)  # (B, W)
    mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None]  # (B, 1, H, W)
    return torch.where(mask, x.mean(dim=(2, 3), keepdim=True), x)


def corrupt(images: torch.Tensor, kind: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` uint8 (B, C, H, W) corrupted by `kind` at `severity` (1..5) -> uint8 (B, C, H, W).

    Batched; deterministic for a `seed` (used by the random kinds, gaussian_noise and occlusion).
    Computed in float32 on [0, 1] and rounded to the nearest uint8 level.
    """
    if kind not in SEVERITIES:
        raise ConfigError(f"unknown corruption {kind!r}.{closest(kind, CORRUPTIONS)}",
                          f"use one of {', '.join(CORRUPTIONS)}.")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ConfigError(f"corruption severity {severity!r} is not one of 1..5.", "pass an integer from 1 to 5.")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"corrupt() takes uint8 images (B, C, H, W), got {got}.",
                          "pass the dataset's uint8 image tensor (ImageDataset.images).")
    value = SEVERITIES[kind][severity - 1]
    generator = torch.Generator().manual_seed(int(seed))
    x = images.float().div_(255)
    if kind == "gaussian_noise":
        x = gaussian_noise(x, value, generator)
    elif kind == "gaussian_blur":
        x = gaussian_blur(x, value)
    elif kind == "contrast":
        x = contrast(x, value)
    elif kind == "pixelate":
        x = pixelate(x, value)
    else:
        x = occlusion(x, value, generator)
    return x.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def probe_accuracy(probe_predict, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows where probe_predict(features (N, D)) equals labels (N,)."""
    predicted = torch.as_tensor(probe_predict(features)).flatten().cpu()
    return (predicted == labels.cpu().flatten()).float().mean().item()


def robustness(encoder, probe_predict, test_images: torch.Tensor, test_labels: torch.Tensor,
               kinds: tuple[str, ...] = CORRUPTIONS, severities: tuple[int, ...] = (1, 2, 3, 4, 5),
               seed: int = 0, batch_size: int = 1024, device: str | torch.device = "cpu",
               amp: bool = False, clean_features: torch.Tensor | None = None) -> dict[str, float]:
    """Accuracy of `probe_predict` on features of clean and corrupted `test_images` (N, C, H, W) uint8.

    `probe_predict(features (N, D)) -> labels (N,)` is a probe fitted on clean train features,
    e.g. ``linear_probe(..., return_model=True)[1].predict``. Returns "clean", f"{kind}@{s}" for
    every kind and severity, f"{kind}_mean" (over severities), "mean_corrupted" (over all kinds and
    severities) and "relative_drop" = 1 - mean_corrupted / clean (0: no loss; NaN when clean is 0).

    Every (kind, severity) uses the same `seed`: common random numbers, so severities of a kind
    differ only in strength (the same noise pattern scaled, patches at the same random draws).
    One corruption of the whole test set and one feature extraction per (kind, severity); the
    corrupted set is held in memory as uint8, like the test set itself. `clean_features`: the
    features of `test_images` when the caller has them already (the same extraction), else extracted.
    """
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    severities = tuple(severities)
    if not kinds or not severities:
        raise ConfigError("robustness() needs at least one corruption kind and one severity.",
                          f"pass e.g. kinds={CORRUPTIONS} and severities=(1, 2, 3, 4, 5).")
    for kind in kinds:  # fail on a typo before the first (slow) extraction
        corrupt(test_images[:1], kind, severities[0], seed)
    for severity in severities:
        corrupt(test_images[:1], kinds[0], severity, seed)

    def accuracy(images: torch.Tensor) -> float:
        return probe_accuracy(probe_predict, extract_features(encoder, images, batch_size, device, amp), test_labels)

    clean_acc = accuracy(test_images) if clean_features is None else probe_accuracy(probe_predict, clean_features, test_labels)
    result = {"clean": clean_acc}
    for kind in kinds:
        scores = [accuracy(corrupt(test_images, kind, s, seed)) for s in severities]
        result.update({f"{kind}@{s}": score for s, score in zip(severities, scores)})
        result[f"{kind}_mean"] = sum(scores) / len(scores)
    result["mean_corrupted"] = sum(result[f"{k}_mean"] for k in kinds) / len(kinds)
    clean = result["clean"]
    result["relative_drop"] = 1 - result["mean_corrupted"] / clean if clean > 0 else float("nan")
    return result
