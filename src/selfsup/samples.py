"""Operations on a batch of samples that hold for every kind of data.

A dense modality (images, tables, series) keeps a batch as one tensor whose first dimension is
the sample; a ragged one (graphs, recordings of different lengths) as an object that implements
``__len__`` (the number of samples), ``to(device)``, ``index(idx)`` and ``cat(parts)`` (a
classmethod). Methods, views and evaluation go through these functions, so a method written for
images (``cat(batch.views[:2])``, one backbone pass over both views) runs on graphs unchanged.
"""
from __future__ import annotations

import torch


def cat(parts):
    """The samples of `parts` (a list of batches of one kind) as one batch, in order."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    return type(first).cat(list(parts))


def count(samples) -> int:
    """How many samples a batch holds."""
    return samples.shape[0] if isinstance(samples, torch.Tensor) else len(samples)


def take(samples, index: torch.Tensor):
    """The samples at `index` (a 1-D long tensor), in that order."""
    if isinstance(samples, torch.Tensor):
        return samples[index.to(samples.device)]
    return samples.index(index)


def to(samples, device, non_blocking: bool = False):
    """The batch on `device`."""
    if isinstance(samples, torch.Tensor):
        return samples.to(device, non_blocking=non_blocking)
    return samples.to(device)


def tensors(samples) -> list[torch.Tensor]:
    """Every tensor a batch is made of (for content hashes)."""
    if isinstance(samples, torch.Tensor):
        return [samples]
    return list(samples.tensors())
