"""Batched image views drawn on the compute device, with the random parameters they used.

    views = ImageViews(byol_views(32), mean, std)
    tensors, params = views(images_uint8, generator)   # V tensors (B, C, S, S), V dicts of (B,)/(B, 4)

Pipeline per view, every step batched over samples (and over the views of a group) with
per-sample parameters, no loop over samples:

1. random resized crop + horizontal flip: one affine grid + bilinear grid_sample, straight to the
   output size (``crop.py``);
2. with probability ``jitter_p``: brightness, contrast, saturation, hue, in this FIXED order
   (torchvision's ColorJitter shuffles the order per call; a fixed order keeps the parameters a
   plain vector and costs nothing measurable in quality), clamping to [0, 1] after each, as
   torchvision does; hue is a rotation in YIQ space (``color.py``);
3. grayscale, Gaussian blur, solarize (BYOL's order);
4. with probability ``bss_p`` per view (off by default): Batch Styles Standardization (Scalbert et
   al., ICLR 2024, arXiv:2303.06088; ``fourier.py``). Each view is one batch of B augmented images;
   one of them is drawn as the style reference and every image of that view gets its low-frequency
   Fourier amplitude (a centred box of area ratio r, r uniform in ``bss_ratio``, interpolated by
   ``bss_mix``; 1 = replaced, as in the paper) while keeping its own phase, then is clamped to
   [0, 1]. Each view draws its own reference and r, as the paper standardizes each view (column
   of the B x V grid of views) separately: the images of one view share a style, the views of one
   image usually get different ones. It comes last, on the fully augmented views, as the paper
   applies it to the batch of views; the paper's Algorithm 1 has no probability, every batch is
   standardized (``bss_p = 1``). Any channel count (per channel);
5. normalization with the dataset's mean and std.

All randomness is one ``torch.rand`` per group of views from the caller's generator, a fixed
number of numbers per sample whatever the outcome, so the same generator state gives the same
views bit for bit (exact resume) and the parameters returned are exactly the ones applied. When
``bss_p > 0``, one more ``torch.rand`` of 3 numbers per view (apply, r, reference) follows the
groups' draws, so every other parameter is the same as with BSS off for the same generator state.

Parameters per view (all float32 on the images' device; identity values where not applied):
``crop`` (B, 4) (center_y, center_x, height, width) as fractions of the image; ``flip`` (B,) 0/1;
``jitter`` (B,) 0/1; ``brightness``, ``contrast``, ``saturation`` (B,) factors (1 = identity);
``hue`` (B,) shift in turns (0 = identity); ``grayscale`` (B,) 0/1; ``blur_sigma`` (B,)
(0 = not blurred); ``solarize`` (B,) 0/1; ``bss`` (B,) 0/1 (the same for the whole view);
``bss_ref`` (B,) index in the batch of the style reference (-1 = not applied); ``bss_ratio`` (B,) the
box's area ratio r (0 = not applied). Saturation, hue and grayscale apply to RGB only: for other
channel counts they are identity and their parameters say so.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import ConfigError, DataError
from . import color
from .blur import gaussian_blur
from .crop import TRIES, crop_flip, sample_boxes
from .fourier import batch_styles_standardization

# Columns of the uniform draw, per sample: crop area and ratio tries, crop position, then one
# number per decision. Drawing all of them always keeps the generator's consumption fixed.
_AREA = slice(0, TRIES)
_RATIO = slice(TRIES, 2 * TRIES)
_POS = slice(2 * TRIES, 2 * TRIES + 2)
_FLIP, _JITTER, _BRIGHT, _CONTRAST, _SAT, _HUE, _GRAY, _BLUR, _SIGMA, _SOLAR = range(2 * TRIES + 2, 2 * TRIES + 12)
_COLUMNS = 2 * TRIES + 12
# Batch Styles Standardization draws per VIEW, not per sample, in a separate draw after the groups'.
_BSS_APPLY, _BSS_RATIO, _BSS_REF = range(3)
_BSS_COLUMNS = 3


@dataclass(frozen=True)
class ImageViewConfig:
    """How views are drawn. Defaults are the BYOL / MoCo v2 ImageNet recipe, the common baseline.

    ``blur_p`` and ``solarize_p`` take one float for every global view or a tuple with one value
    per global view (BYOL's asymmetric views: blur (1.0, 0.1), solarize (0.0, 0.2)).

    ``bss_*``: the paper's appendix parameterizes BSS by a range (r_min, r_max) of area ratios; the
    values it used were not in the text available to us, so (0.01, 0.1) is our choice: on 28 px
    images a 3 x 3 to 9 x 9 box of the 28 x 28 spectrum, on 224 px 23 x 23 to 71 x 71, i.e. the
    mean colour and the coarse intensity layout, not the texture. ``bss_ratio = (1, 1)`` with
    ``bss_mix = 1`` gives every image the reference's whole amplitude spectrum.
    """

    size: int | None = None  # side of the global views; None = the input's size (no resizing for small data)
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction kept; 0.08 is the Inception/SimCLR crop, the strongest single augmentation in SimCLR's ablation
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio w/h, log-uniform, as in Inception
    flip_p: float = 0.5  # horizontal flip; natural images are mirror-symmetric in distribution
    jitter_p: float = 0.8  # colour jitter probability; SimCLR found colour the second key augmentation
    brightness: float = 0.4  # factor uniform in [max(0, 1 - b), 1 + b]; 0.4/0.4/0.2/0.1 are BYOL's strengths
    contrast: float = 0.4  # factor uniform in [max(0, 1 - c), 1 + c]
    saturation: float = 0.2  # factor uniform in [max(0, 1 - s), 1 + s]; RGB only
    hue: float = 0.1  # shift uniform in [-h, h] turns, h <= 0.5; RGB only
    grayscale_p: float = 0.2  # RGB only; stops the network from matching views by colour histogram
    blur_p: float | tuple[float, ...] = 0.0  # off by default: blur hurts at 32 px (SimCLR CIFAR recipe)
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma in pixels of the output view, uniform
    solarize_p: float | tuple[float, ...] = 0.0  # BYOL solarizes only its second view (0.2)
    solarize_threshold: float = 0.5  # pixels >= threshold (in [0, 1]) are inverted
    n_global: int = 2  # full-size views; most joint-embedding methods compare two
    n_local: int = 0  # small multi-crop views (SwAV, DINO); cheap extra positives
    local_size: int | None = None  # side of local views; None = about 3/7 of the global size (DINO: 96 of 224), at least 8
    local_scale: tuple[float, float] = (0.05, 0.4)  # DINO's local crop scale: small parts of the image
    local_blur_p: float = 0.0  # blur probability of the local views (DINO: 0.5)
    bss_p: float = 0.0  # Batch Styles Standardization per view (arXiv:2303.06088); off by default, the paper uses 1
    bss_ratio: tuple[float, float] = (0.01, 0.1)  # area ratio r of the swapped low-frequency box, uniform per view; our choice, see below
    bss_mix: float = 1.0  # amplitude interpolation inside the box: 1 = substitution (the paper), < 1 = FACT-style mix

    def __post_init__(self):
        # YAML gives lists; store tuples so the config stays hashable and comparable.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        _check(self)

    def per_view(self, name: str) -> tuple[float, ...]:
        """`blur_p` or `solarize_p` as one value per global view."""
        value = getattr(self, name)
        return tuple(value) if isinstance(value, tuple) else (float(value),) * self.n_global


def _check(cfg: ImageViewConfig) -> None:
    def bad(name, value, fix):
        raise ConfigError(f"views.{name}={value!r} is out of range.", fix)

    for name in ("size", "local_size"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or value < 2):
            bad(name, value, "use an integer side of at least 2 pixels, or null for the default.")
    for name in ("crop_scale", "local_scale"):
        lo, hi = _pair(cfg, name)
        if not 0 < lo <= hi <= 1:
            bad(name, getattr(cfg, name), "give (low, high) area fractions with 0 < low <= high <= 1, e.g. (0.08, 1.0).")
    lo, hi = _pair(cfg, "crop_ratio")
    if not 0 < lo <= hi:
        bad("crop_ratio", cfg.crop_ratio, "give (low, high) aspect ratios with 0 < low <= high, e.g. (0.75, 1.333).")
    lo, hi = _pair(cfg, "blur_sigma")
    if not 0 < lo <= hi:
        bad("blur_sigma", cfg.blur_sigma, "give (low, high) sigmas in pixels with 0 < low <= high, e.g. (0.1, 2.0).")
    lo, hi = _pair(cfg, "bss_ratio")
    if not 0 <= lo <= hi <= 1:
        bad("bss_ratio", cfg.bss_ratio, "give (low, high) area ratios with 0 <= low <= high <= 1, e.g. (0.01, 0.1).")
    for name in ("flip_p", "jitter_p", "grayscale_p", "solarize_threshold", "local_blur_p", "bss_p", "bss_mix"):
        if not 0 <= getattr(cfg, name) <= 1:
            bad(name, getattr(cfg, name), "use a value in [0, 1].")
    for name in ("brightness", "contrast", "saturation"):
        if getattr(cfg, name) < 0:
            bad(name, getattr(cfg, name), "use a jitter strength >= 0 (0 turns it off).")
    if not 0 <= cfg.hue <= 0.5:
        bad("hue", cfg.hue, "use a hue strength in [0, 0.5] turns (0 turns it off).")
    if cfg.n_global < 1 or cfg.n_local < 0:
        raise ConfigError(f"views.n_global={cfg.n_global}, views.n_local={cfg.n_local} is not a view layout.",
                          "use n_global >= 1 and n_local >= 0.")
    for name in ("blur_p", "solarize_p"):
        values = cfg.per_view(name)
        if len(values) != cfg.n_global:
            raise ConfigError(f"views.{name}={getattr(cfg, name)!r} has {len(values)} values for {cfg.n_global} global views.",
                              f"give one float for all views or exactly {cfg.n_global} values.")
        if not all(0 <= p <= 1 for p in values):
            bad(name, getattr(cfg, name), "use probabilities in [0, 1].")


def _pair(cfg, name) -> tuple[float, float]:
    value = getattr(cfg, name)
    if not isinstance(value, tuple) or len(value) != 2:
        raise ConfigError(f"views.{name}={value!r} is not a (low, high) pair.", "give two numbers, e.g. [0.08, 1.0].")
    return float(value[0]), float(value[1])


# Presets. Each returns a plain config; fields can be overridden with dataclasses.replace.

def simclr_views(size: int) -> ImageViewConfig:
    """SimCLR (Chen et al. 2020): colour strength 1.0 with blur at ImageNet scale; at 64 px and
    below the paper's CIFAR recipe (strength 0.5, no blur)."""
    s = 1.0 if size > 64 else 0.5
    return ImageViewConfig(size=size, brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=0.2 * s,
                           grayscale_p=0.2, blur_p=0.5 if size > 64 else 0.0)


def byol_views(size: int) -> ImageViewConfig:
    """BYOL (Grill et al. 2020): asymmetric views, blur (1.0, 0.1) and solarize (0.0, 0.2)."""
    return ImageViewConfig(size=size, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, grayscale_p=0.2,
                           blur_p=(1.0, 0.1), solarize_p=(0.0, 0.2))


def fmnist_views() -> ImageViewConfig:
    """The fmnist-cpu protocol (BENCHMARK.md): crop (0.08, 1), flip, p=0.8 brightness and contrast
    of strength 0.8 (factor in [0.2, 1.8]); grayscale images, so nothing else. Input size kept."""
    return ImageViewConfig(size=None, brightness=0.8, contrast=0.8, saturation=0.0, hue=0.0, grayscale_p=0.0)


def mae_views(size: int) -> ImageViewConfig:
    """MAE (He et al. 2022): one mildly cropped (0.2, 1) and flipped view; the masking is the task."""
    return ImageViewConfig(size=size, crop_scale=(0.2, 1.0), jitter_p=0.0, grayscale_p=0.0, n_global=1)


def multicrop_views(size: int, n_local: int) -> ImageViewConfig:
    """DINO (Caron et al. 2021) multi-crop: 2 global views at scale (0.4, 1) with BYOL's colour
    recipe, plus `n_local` small views at scale (0.05, 0.4), blurred with p = 0.5."""
    return ImageViewConfig(size=size, crop_scale=(0.4, 1.0), blur_p=(1.0, 0.1), solarize_p=(0.0, 0.2),
                           n_local=n_local, local_blur_p=0.5)


def normalize(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, per channel; for evaluation."""
    scale, shift = _affine(mean, std, images.device, pixel_max=255.0)
    return torch.addcmul(shift, images.float(), scale)


def _affine(mean, std, device, pixel_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    # (x / pixel_max - m) / s  ==  x * (1 / (pixel_max s)) + (-m / s): one fused multiply-add per pixel.
    mean = torch.as_tensor(mean, dtype=torch.float64)
    std = torch.as_tensor(std, dtype=torch.float64)
    scale, shift = 1 / (pixel_max * std), -mean / std
    return scale.float().view(1, -1, 1, 1).to(device), shift.float().view(1, -1, 1, 1).to(device)


class ImageViews:
    """Draws ``config.n_global`` global then ``config.n_local`` local views of a uint8 batch.

    ``mean``/``std`` are per-channel statistics of pixels in [0, 1] (``ImageDataset.mean_std``).
    Call with ``(images (B, C, H, W) uint8, generator)``; returns ``(views, params)``: V float32
    tensors (B, C, S, S) normalized, and V dicts of parameters (see the module docstring).

    ``cpu_threads``: on a CPU, draw the views with this many torch threads (restored afterwards);
    None keeps torch's setting. Views are many small elementwise ops, and on a shared 2-core
    machine each 2-thread parallel region waits for a busy core: fmnist views took ~150 ms per
    batch of 256 with 2 threads against ~8 ms with 1 (measured side by side in one process).
    """

    def __init__(self, config: ImageViewConfig, mean: list[float], std: list[float], *, cpu_threads: int | None = 1):
        if len(mean) != len(std):
            raise ConfigError(f"mean has {len(mean)} values but std has {len(std)}.", "give one mean and one std per channel.")
        if min(std) <= 0:
            raise ConfigError(f"std={list(std)} has a value <= 0.", "use the dataset's per-channel std (ImageDataset.mean_std()).")
        self.config, self.mean, self.std, self.cpu_threads = config, list(mean), list(std), cpu_threads
        self._on_device: dict = {}  # device -> the normalization's (scale, shift); (values, device) -> per-view probabilities

    def __repr__(self) -> str:
        return f"ImageViews({self.config})"

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"views need uint8 images (B, C, H, W), got {images.dtype} {tuple(images.shape)}.",
                            "pass the dataset's uint8 tensor, not normalized floats.")
        if images.shape[1] != len(self.mean):
            raise DataError(f"images have {images.shape[1]} channels but mean/std have {len(self.mean)}.",
                            "compute mean/std on the same dataset (ImageDataset.mean_std()).")
        threads = torch.get_num_threads()
        if images.device.type != "cpu" or not self.cpu_threads or self.cpu_threads == threads:
            return self._draw(images, generator)
        torch.set_num_threads(self.cpu_threads)
        try:
            return self._draw(images, generator)
        finally:
            torch.set_num_threads(threads)

    def _draw(self, images: torch.Tensor, generator: torch.Generator | None):
        cfg = self.config
        _, _, height, width = images.shape
        out_global = (cfg.size, cfg.size) if cfg.size else (height, width)
        local = cfg.local_size or max(8, round(out_global[0] * 3 / 7))
        x = images.float().div_(255)  # (B, C, H, W); once, shared by every view
        views, params = [], []
        groups = [(cfg.n_global, out_global, cfg.crop_scale, cfg.per_view("blur_p"), cfg.per_view("solarize_p")),
                  (cfg.n_local, (local, local), cfg.local_scale, (cfg.local_blur_p,) * cfg.n_local, (0.0,) * cfg.n_local)]
        groups = [g for g in groups if g[0] > 0]
        # Every group's per-sample draw first, in order, then BSS's per-view draw: the same generator
        # state gives the same crops, colours, ... whether BSS is on or off.
        draws = [self._uniforms(g[0] * x.shape[0], _COLUMNS, x.device, generator) for g in groups]
        n_views = sum(g[0] for g in groups)
        bss = self._uniforms(n_views, _BSS_COLUMNS, x.device, generator) if cfg.bss_p > 0 else None  # (V, 3)
        first = 0
        for (n, size, scale, blur_p, solarize_p), u in zip(groups, draws):
            out, drawn = self._group(x, u, n, size, scale, blur_p, solarize_p,
                                     None if bss is None else bss[first:first + n])
            first += n
            views.extend(out.chunk(n))
            chunks = {key: value.chunk(n) for key, value in drawn.items()}
            params.extend({key: chunks[key][v] for key in chunks} for v in range(n))
        return views, params

    @staticmethod
    def _uniforms(rows: int, columns: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        if generator is None:
            return torch.rand(rows, columns, device=device)
        return torch.rand(rows, columns, generator=generator, device=generator.device).to(device)

    def _group(self, x, u, n, size, scale, blur_p, solarize_p, bss):
        """n views of x (B, C, H, W) at one output size, batched as (n*B, ...) view-major.

        u (n*B, _COLUMNS): row v*B + i = view v of sample i; bss (n, _BSS_COLUMNS) per view, or None (off).
        """
        cfg = self.config
        b, c, height, width = x.shape
        xr = x.repeat(n, 1, 1, 1) if n > 1 else x  # (n*B, C, H, W)

        boxes = sample_boxes(u[:, _AREA], u[:, _RATIO], u[:, _POS], scale, cfg.crop_ratio, height, width)
        flip = (u[:, _FLIP] < cfg.flip_p).float()
        out = crop_flip(xr, boxes, flip, size)

        rgb = c == 3
        jitter = (u[:, _JITTER] < cfg.jitter_p).float()
        on = jitter > 0

        def factor(column, strength, identity, low, high):
            drawn = low + (high - low) * u[:, column]
            return torch.where(on, drawn, torch.full_like(drawn, identity)) if strength > 0 else torch.full_like(drawn, identity)

        bright = factor(_BRIGHT, cfg.brightness, 1.0, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness)
        contr = factor(_CONTRAST, cfg.contrast, 1.0, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast)
        sat = factor(_SAT, cfg.saturation if rgb else 0, 1.0, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation)
        shift = factor(_HUE, cfg.hue if rgb else 0, 0.0, -cfg.hue, cfg.hue)
        if cfg.jitter_p > 0:  # static skips: an op whose strength is 0 is never run
            if cfg.brightness > 0:
                out = color.brightness(out, bright)
            if cfg.contrast > 0:
                out = color.contrast(out, contr)
            if rgb and cfg.saturation > 0:
                out = color.saturation(out, sat)
            if rgb and cfg.hue > 0:
                out = color.hue(out, shift)

        gray = (u[:, _GRAY] < cfg.grayscale_p).float() if rgb else torch.zeros_like(flip)
        if rgb and cfg.grayscale_p > 0:
            out = color.to_grayscale(out, gray)

        blur_on = u[:, _BLUR].view(n, b) < self._per_view(blur_p, x.device)  # (n, B)
        lo, hi = cfg.blur_sigma
        sigma = torch.where(blur_on.reshape(-1), lo + (hi - lo) * u[:, _SIGMA], torch.zeros_like(flip))
        if max(blur_p) > 0:
            out = gaussian_blur(out, sigma)

        solar = (u[:, _SOLAR].view(n, b) < self._per_view(solarize_p, x.device)).reshape(-1).float()
        if max(solarize_p) > 0:
            out = color.solarize(out, solar, cfg.solarize_threshold)

        style = {"bss": torch.zeros_like(flip), "bss_ref": torch.full_like(flip, -1.0), "bss_ratio": torch.zeros_like(flip)}
        if bss is not None:
            out, style = self._standardize_styles(out, bss, n, b)

        scale_, shift_ = self._normalizer(x.device)
        out = out.mul_(scale_).add_(shift_)  # (x - mean) / std; in place, `out` is always a fresh tensor
        return out, {"crop": boxes, "flip": flip, "brightness": bright, "contrast": contr, "saturation": sat,
                     "hue": shift, "jitter": jitter, "grayscale": gray, "blur_sigma": sigma, "solarize": solar,
                     **style}

    def _standardize_styles(self, out, bss, n, b):
        """Batch Styles Standardization of each view (B rows of `out` (n*B, C, S, S)) whose draw says so."""
        cfg = self.config
        lo, hi = cfg.bss_ratio
        on = bss[:, _BSS_APPLY] < cfg.bss_p  # (n,) one decision per view
        ratio = lo + (hi - lo) * bss[:, _BSS_RATIO]  # (n,)
        ref = (bss[:, _BSS_REF] * b).long().clamp_(max=b - 1)  # (n,) index in the batch, uniform over B
        rows = torch.arange(n, device=out.device) * b + ref  # (n,) row of each view's reference in `out`
        on, ratio, ref, rows = (t.repeat_interleave(b) for t in (on, ratio, ref, rows))  # (n*B,) per row
        styled = batch_styles_standardization(out, rows, ratio, cfg.bss_mix)
        out = torch.where(on.view(-1, 1, 1, 1), styled, out)  # views drawn "off" stay exactly as they were
        return out, {"bss": on.float(), "bss_ref": torch.where(on, ref.float(), -1.0),
                     "bss_ratio": torch.where(on, ratio, 0.0)}

    def _per_view(self, values: tuple[float, ...], device) -> torch.Tensor:
        """(n, 1) per-view probabilities on `device`, copied there once per distinct tuple (a copy
        per step would make the host wait for the GPU every step)."""
        key = (tuple(values), device)
        if key not in self._on_device:
            self._on_device[key] = torch.tensor(values, device=device).view(-1, 1)
        return self._on_device[key]

    def _normalizer(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = _affine(self.mean, self.std, device, pixel_max=1.0)  # views are in [0, 1]
        return self._on_device[device]
