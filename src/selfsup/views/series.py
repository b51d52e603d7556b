"""Batched views of time series on the compute device, with the random parameters they drew.

    views = SeriesViews(tstcc_views(), mean, std)
    tensors, params = views(series (B, C, T) float32 with NaN, generator)   # V tensors (B, C, T'), V dicts

The transformations (each per sample, vectorized over the batch; NaN, a missing step or padding,
stays NaN and the backbones mask it):

- jitter: additive Gaussian noise of std ``jitter`` (Um et al. 2017; TS-TCC's strong view);
- scaling: every channel multiplied by a factor ~ N(``scale_mean``, ``scale``) (TS-TCC's weak view
  draws its factor around 2, as its code does; the usual choice is around 1);
- magnitude warp: multiplied by a smooth random curve through ``warp_knots`` knots ~ N(1, ``magnitude_warp``),
  cubic between them (Um et al. 2017);
- time warp: the time axis distorted by a smooth random speed curve (knots ~ N(1, ``time_warp``)),
  resampled linearly at the warped times;
- segment permutation: the series cut at up to ``max_segments - 1`` random points, the segments
  put in a random order (TS-TCC's strong view);
- random crop: a window of ``crop_scale`` of the observed length, resampled to the full length;
- timestamp masking: each step hidden (set to NaN) with probability ``mask_p`` (TS2Vec masks its
  latent steps with p = 0.5; zeroing a step after the per-step input projection, as the backbones
  do with NaN, is the same thing);
- TS2Vec's overlapping crops (``ts2vec_crop``): two views of one batch-wide random window pair
  that overlap in ``crop_l`` steps at a per-sample random offset (Yue et al. 2022, section 3.2);
  their params say where the overlap sits in each view (``overlap_start``, ``overlap_length``).

Then the normalization with the dataset's per-channel mean and std.

Parameters per view, float32 (B,) or (B, C) unless noted: ``jitter`` (the std used, 0 = none),
``scale`` (B, C) factors, ``magnitude_warp`` and ``time_warp`` (0/1), ``segments`` (the number of
segments, 1 = not permuted), ``crop`` (B, 2) start and length as fractions of the observed length
(0, 1 = none), ``masked`` (the fraction of steps hidden), and for TS2Vec's crops ``overlap_start``
and ``overlap_length`` (the same for the whole batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class SeriesViewConfig:
    """How series views are drawn (defaults: identity, the presets below set what they use)."""

    n_global: int = 2
    n_local: int = 0
    jitter: float | tuple[float, ...] = 0.0  # noise std per view (one value for all, or one per global view)
    scale: float | tuple[float, ...] = 0.0  # std of the scaling factor
    scale_mean: float = 1.0
    magnitude_warp: float = 0.0  # std of the magnitude curve's knots (0 = off)
    time_warp: float = 0.0  # std of the speed curve's knots (0 = off)
    warp_knots: int = 4
    max_segments: int | tuple[int, ...] = 1  # segment permutation: up to this many segments (1 = off)
    crop_scale: tuple[float, float] = (1.0, 1.0)  # random crop of this share of the observed length, resampled
    mask_p: float = 0.0  # timestamp masking probability
    ts2vec_crop: bool = False  # TS2Vec's two overlapping crops (needs n_global=2, n_local=0)

    def __post_init__(self):
        for name in ("magnitude_warp", "time_warp", "mask_p", "scale_mean"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"views.{name}={value} must be finite and >= 0.", f"use e.g. views.{name}=0.2.")
        if self.mask_p >= 1:
            raise ConfigError(f"views.mask_p={self.mask_p} hides every step.", "use a probability below 1, e.g. 0.5 (TS2Vec).")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ConfigError(f"views.crop_scale={self.crop_scale} is not 0 < low <= high <= 1.", "use e.g. [0.5, 1.0].")
        if self.warp_knots < 2 or self.n_global < 1 or self.n_local < 0:
            raise ConfigError(f"series views need warp_knots >= 2, n_global >= 1, n_local >= 0; got {self.warp_knots}, "
                              f"{self.n_global}, {self.n_local}.", "use the defaults.")
        if self.ts2vec_crop and (self.n_global, self.n_local) != (2, 0):
            raise ConfigError("views.ts2vec_crop draws exactly two global views.", "use n_global=2, n_local=0.")

    def per_view(self, name: str, view: int):
        value = getattr(self, name)
        if isinstance(value, (tuple, list)):
            return value[min(view, len(value) - 1)]
        return value


def series_views(**overrides) -> SeriesViewConfig:
    """For joint-embedding methods (SimCLR, BYOL, ...): crop 50-100% and resample, jitter, scaling,
    magnitude and time warps (Um et al. 2017's sensor-data augmentations, in normalized units)."""
    return SeriesViewConfig(**{"crop_scale": (0.5, 1.0), "jitter": 0.1, "scale": 0.2, "magnitude_warp": 0.2,
                               "time_warp": 0.2, **overrides})


def tstcc_views(**overrides) -> SeriesViewConfig:
    """TS-TCC (Eldele et al. 2021): a weak view (scaling around 2, std 1.1) and a strong view
    (permutation into up to 8 segments, then jitter 0.8), the values of its HAR configuration."""
    return SeriesViewConfig(**{"jitter": (0.0, 0.8), "scale": (1.1, 0.0), "scale_mean": 2.0, "max_segments": (1, 8),
                               **overrides})


def ts2vec_views(**overrides) -> SeriesViewConfig:
    """TS2Vec (Yue et al. 2022): two overlapping random crops, each with timestamp masking p = 0.5."""
    return SeriesViewConfig(**{"ts2vec_crop": True, "mask_p": 0.5, **overrides})


def plain_views(**overrides) -> SeriesViewConfig:
    """One untouched view (MAE's masking is the task)."""
    return SeriesViewConfig(**{"n_global": 1, **overrides})


def _smooth_curve(knots: torch.Tensor, length: int) -> torch.Tensor:
    """(B, K) knot values -> (B, length): cubic interpolation through the knots, end to end."""
    return F.interpolate(knots[:, None, None, :], size=(1, length), mode="bicubic", align_corners=True)[:, 0, 0]


def _resample(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (B, C, T) sampled at fractional step positions (B, T') by linear interpolation -> (B, C, T')."""
    T = x.shape[2]
    pos = positions.clamp(0, T - 1)
    left = pos.floor().long().clamp(max=T - 1)
    right = (left + 1).clamp(max=T - 1)
    w = (pos - left.to(pos.dtype))[:, None, :]  # (B, 1, T')
    gather = lambda idx: x.gather(2, idx[:, None, :].expand(-1, x.shape[1], -1))  # noqa: E731
    a, b = gather(left), gather(right)
    # a NaN neighbour makes the sample NaN (a missing value stays missing) except where its weight is 0
    return torch.where(w == 0, a, torch.where(w == 1, b, a * (1 - w) + b * w))


class SeriesViews:
    """Draws ``n_global + n_local`` views of a batch of series (see the module docstring)."""

    def __init__(self, config: SeriesViewConfig, mean: list[float], std: list[float]):
        if len(mean) != len(std) or min(std, default=1.0) <= 0:
            raise ConfigError(f"series views got means {list(mean)} and stds {list(std)}.",
                              "use SeriesDataset.normalization().")
        self.config = config
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1)

    def __repr__(self) -> str:
        return f"SeriesViews({self.config})"

    def __call__(self, series: torch.Tensor, generator: torch.Generator | None = None):
        if series.dim() != 3 or series.shape[1] != self.mean.shape[1]:
            raise DataError(f"series views need (B, {self.mean.shape[1]}, T) series, got {tuple(series.shape)}.",
                            "pass series of the dataset the views were built for.")
        x = series.float()
        device = x.device
        mean, std = self.mean.to(device), self.std.to(device)
        cfg = self.config
        n = cfg.n_global + cfg.n_local
        rand = lambda *shape: torch.rand(*shape, generator=generator, device=generator.device if generator is not None else device).to(device)  # noqa: E731
        randn = lambda *shape: torch.randn(*shape, generator=generator, device=generator.device if generator is not None else device).to(device)  # noqa: E731
        if cfg.ts2vec_crop:
            views, params = self._ts2vec_crops(x, rand)
        else:
            views, params = [], []
            for v in range(n):
                view, p = self._one_view(x, v, rand, randn)
                views.append(view)
                params.append(p)
        out = []
        for view, p in zip(views, params):
            if cfg.mask_p > 0:
                hide = rand(view.shape[0], view.shape[2]) < cfg.mask_p  # (B, T')
                view = view.masked_fill(hide[:, None, :], float("nan"))
                p["masked"] = hide.float().mean(1)
            out.append((view - mean) / std)
        return out, params

    def _one_view(self, x: torch.Tensor, v: int, rand, randn):
        cfg = self.config
        B, C, T = x.shape
        p: dict[str, torch.Tensor] = {}
        lengths = (~torch.isnan(x).all(1)).float() * torch.arange(1, T + 1, device=x.device)  # (B, T)
        observed = lengths.max(1).values.clamp_min(1)  # (B,): observed length of each series
        low, high = cfg.crop_scale
        if (low, high) != (1.0, 1.0) or cfg.time_warp > 0:
            frac = low + (high - low) * rand(B)  # (B,) share of the observed length kept
            start = (1 - frac) * rand(B)  # (B,) start as a fraction
            grid = torch.linspace(0, 1, T, device=x.device)[None, :]  # (1, T)
            if cfg.time_warp > 0:  # a smooth, positive speed curve; its cumulative sum is the warped time
                speed = _smooth_curve((1 + cfg.time_warp * randn(B, cfg.warp_knots)).clamp_min(0.1), T)
                warped = torch.cumsum(speed, 1)
                grid = (warped - warped[:, :1]) / (warped[:, -1:] - warped[:, :1]).clamp_min(1e-6)
                p["time_warp"] = torch.ones(B, device=x.device)
            else:
                p["time_warp"] = torch.zeros(B, device=x.device)
            positions = (start[:, None] + frac[:, None] * grid) * (observed[:, None] - 1)  # (B, T) in steps
            x = _resample(x, positions)
            pad = torch.arange(T, device=x.device)[None, :] >= observed[:, None]  # keep the padding where it was
            x = x.masked_fill(pad[:, None, :], float("nan"))
            p["crop"] = torch.stack([start, frac], 1)
        segments = int(cfg.per_view("max_segments", v))
        if segments > 1:
            x, p["segments"] = self._permute(x, segments, observed, rand)
        scale = float(cfg.per_view("scale", v))
        factor = (cfg.scale_mean + scale * randn(B, C)) if scale > 0 else torch.ones(B, C, device=x.device)
        x = x * factor[:, :, None]
        p["scale"] = factor
        if cfg.magnitude_warp > 0:
            curve = _smooth_curve(1 + cfg.magnitude_warp * randn(B, cfg.warp_knots), T)  # (B, T)
            x = x * curve[:, None, :]
            p["magnitude_warp"] = torch.ones(B, device=x.device)
        jitter = float(cfg.per_view("jitter", v))
        if jitter > 0:
            x = x + jitter * randn(B, C, T)
        p["jitter"] = torch.full((B,), jitter, device=x.device)
        return x, p

    @staticmethod
    def _permute(x: torch.Tensor, max_segments: int, observed: torch.Tensor, rand):
        """Cut each series' observed part at up to max_segments - 1 random points and shuffle the pieces."""
        B, C, T = x.shape
        n_seg = 1 + (rand(B) * max_segments).long().clamp(max=max_segments - 1)  # (B,) in 1..max_segments
        cuts = (rand(B, max_segments - 1) * observed[:, None]).sort(1).values  # (B, M-1) cut positions
        active = torch.arange(max_segments - 1, device=x.device)[None, :] < (n_seg - 1)[:, None]
        cuts = torch.where(active, cuts, torch.full_like(cuts, float(T)))  # inactive cuts past the end
        t = torch.arange(T, device=x.device, dtype=cuts.dtype)
        segment = (t[None, :, None] >= cuts[:, None, :]).sum(2)  # (B, T): segment id of every step
        order = rand(B, max_segments).argsort(1).argsort(1)  # (B, M) a random rank per segment
        rank = order.gather(1, segment)  # (B, T)
        inside = t[None, :] < observed[:, None]
        key = torch.where(inside, rank * T + t[None, :].long(), max_segments * T + t[None, :].long())  # padding stays last
        index = key.argsort(1)  # (B, T)
        return x.gather(2, index[:, None, :].expand(-1, C, -1)), n_seg.float()

    def _ts2vec_crops(self, x: torch.Tensor, rand):
        """TS2Vec's two overlapping crops: one window geometry for the batch, a random offset per series."""
        B, C, T = x.shape
        draw = lambda low, high: int(low + (high - low) * float(rand(1)))  # noqa: E731  integer in [low, high)
        crop_l = draw(min(2, T), T + 1)
        left = draw(0, T - crop_l + 1)
        right = left + crop_l
        e_left = draw(0, left + 1)
        e_right = draw(right, T + 1)
        offset = (-e_left + (rand(B) * (T - e_right + e_left + 1)).long().clamp(max=T - e_right + e_left)).to(x.device)
        def take(start: int, length: int) -> torch.Tensor:
            idx = offset[:, None] + start + torch.arange(length, device=x.device)[None, :]  # (B, L), inside [0, T)
            return x.gather(2, idx[:, None, :].expand(-1, C, -1))
        v1, v2 = take(e_left, right - e_left), take(left, e_right - left)
        p1 = {"overlap_start": torch.full((B,), float(left - e_left), device=x.device),
              "overlap_length": torch.full((B,), float(crop_l), device=x.device)}
        p2 = {"overlap_start": torch.zeros(B, device=x.device), "overlap_length": torch.full((B,), float(crop_l), device=x.device)}
        return [v1, v2], [p1, p2]
