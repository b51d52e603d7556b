"""Batched views of table rows: SCARF's random feature corruption, on the compute device.

SCARF (Bahri et al., "SCARF: Self-Supervised Contrastive Learning using Random Feature
Corruption", ICLR 2022): for each row, a subset of exactly ``q = floor(c * F)`` of its F features,
uniform over subsets, is replaced by draws from each feature's empirical marginal, i.e. by that
feature's value in a row drawn uniformly from the whole training table; c = 0.6 is the paper's
default. The paper contrasts the clean row (the anchor) with its corrupted copy, so view 0 is left
clean by default (``corrupt_first=False``); with ``corrupt_first=True`` every view is corrupted
independently. Categorical columns are codes, so a replacement is always a valid category.
Optional Gaussian noise (``noise_std``, in units of each numeric column's std) is added to the
numeric columns of corrupted views after the normalization.

    views = TableViews(scarf_views(), mean, std, pool=train.values)
    tensors, params = views(rows (B, F) float32, generator)   # V tensors (B, F), V dicts

Parameters per view: ``corrupted`` (B, F) float 0/1, the features that were replaced. All
randomness is two draws per call from the caller's generator, a fixed amount whatever the
outcome, so the same generator state gives the same views bit for bit (exact resume).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class TableViewConfig:
    """How table views are drawn (SCARF's defaults)."""

    n_global: int = 2
    n_local: int = 0  # extra views for multi-crop methods (DINO, SwAV): more corrupted copies, as the global ones
    corruption_rate: float = 0.6  # c: the fraction of features replaced per corrupted row
    corrupt_first: bool = False  # SCARF keeps view 0 (the anchor) clean
    noise_std: float = 0.0  # Gaussian noise on the numeric columns of corrupted views (normalized units)

    def __post_init__(self):
        if not 0.0 <= self.corruption_rate <= 1.0:
            raise ConfigError(f"views.corruption_rate={self.corruption_rate} is outside [0, 1].",
                              "use a fraction of the features, e.g. 0.6 (SCARF).")
        if self.noise_std < 0 or not math.isfinite(self.noise_std):
            raise ConfigError(f"views.noise_std={self.noise_std} must be finite and >= 0.", "use e.g. 0 or 0.1.")
        if self.n_global < 1 or self.n_local < 0:
            raise ConfigError(f"table views need n_global >= 1 and n_local >= 0, got {self.n_global}, {self.n_local}.",
                              "use the method's view layout.")


def scarf_views(**overrides) -> TableViewConfig:
    return TableViewConfig(**overrides)


class TableViews:
    """Draws ``n_global + n_local`` views of a batch of rows (see the module docstring).

    ``mean``/``std``: per-column normalization (``TableDataset.normalization()``: numeric columns
    standardized, categorical codes passed as they are). ``pool``: the training table (N, F) the
    marginals are drawn from, on the device the batches come from. ``numeric``: (F,) bool, the
    columns that get noise.
    """

    def __init__(self, config: TableViewConfig, mean: list[float], std: list[float], pool: torch.Tensor,
                 numeric: list[bool] | None = None):
        if len(mean) != len(std) or pool.dim() != 2 or pool.shape[1] != len(mean):
            raise ConfigError(f"table views got {len(mean)} means, {len(std)} stds and a pool of shape {tuple(pool.shape)}.",
                              "give one mean and one std per column of the table.")
        if min(std, default=1.0) <= 0:
            raise ConfigError(f"std={list(std)} has a value <= 0.", "use TableDataset.normalization().")
        self.config, self.pool = config, pool
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.numeric = torch.tensor([True] * len(mean) if numeric is None else numeric)
        self._on: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(pool, mean, std, numeric, column index) on `device`, moved there once."""
        if device not in self._on:
            self._on[device] = (self.pool.to(device), self.mean.to(device), self.std.to(device),
                                self.numeric.to(device), torch.arange(self.pool.shape[1], device=device))
        return self._on[device]

    def __repr__(self) -> str:
        return f"TableViews({self.config})"

    def __call__(self, rows: torch.Tensor, generator: torch.Generator | None = None):
        if rows.dim() != 2 or rows.shape[1] != len(self.mean):
            raise DataError(f"table views need rows (B, {len(self.mean)}), got {tuple(rows.shape)}.",
                            "pass rows of the table the views were built for.")
        cfg = self.config
        n = cfg.n_global + cfg.n_local
        b, f = rows.shape
        q = int(math.floor(cfg.corruption_rate * f))
        device = rows.device
        pool, mean, std, numeric, columns = self._tensors(device)
        gen_device = generator.device if generator is not None else device
        # Two draws, always the same amount: scores choosing each row's q features, and donor rows.
        scores = torch.rand(n, b, f, generator=generator, device=gen_device).to(device)  # (V, B, F)
        donors = torch.randint(0, len(pool), (n, b, f), generator=generator, device=gen_device).to(device)
        noise = None
        if cfg.noise_std > 0:
            noise = torch.randn(n, b, f, generator=generator, device=gen_device).to(device)
        # The q lowest scores of a row are a uniform q-subset of its features.
        ranks = scores.argsort(dim=-1).argsort(dim=-1)  # (V, B, F)
        corrupted = ranks < q
        if not cfg.corrupt_first:
            corrupted[0] = False
        replaced = pool[donors, columns]  # (V, B, F): feature j of donor row donors[v, i, j]
        x = torch.where(corrupted, replaced, rows.unsqueeze(0).float())
        x = (x - mean) / std
        if noise is not None:
            noisy = numeric.expand(n, 1, f).clone()  # (V, 1, F): numeric columns of the corrupted views
            if not cfg.corrupt_first:
                noisy[0] = False
            x = x + noise * cfg.noise_std * noisy.float()
        views = list(x.unbind(0))
        params = [{"corrupted": corrupted[v].float()} for v in range(n)]
        return views, params
