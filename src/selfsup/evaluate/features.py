"""Frozen-encoder features, extracted once per (encoder weights, dataset split) and cached.

Every protocol works on these features, so an evaluation costs one forward pass over the data;
the cache makes re-running a protocol (or another one) on the same encoder free.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _autocast(device: torch.device, amp: bool):
    # bf16 autocast: about 2.5x faster on CPUs with AMX, and the same precision the trainer uses.
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def extract_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                     device: str | torch.device = "cpu", amp: bool = False) -> torch.Tensor:
    """Features of `images` (N, C, H, W) uint8 (or any input the encoder takes) -> float32 (N, D) on CPU.

    The encoder runs in eval mode without gradients (its train/eval mode is restored afterwards);
    it is moved to `device` when its parameters live elsewhere.
    """
    device = torch.device(device)
    first = next(iter(encoder.parameters()), None)
    if first is not None and first.device != device:
        encoder.to(device)
    was_training = encoder.training
    encoder.eval()
    chunks = []
    try:
        with torch.inference_mode(), _autocast(device, amp):
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size].to(device, non_blocking=True)
                if x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                chunks.append(encoder(x).float().cpu())
    finally:
        encoder.train(was_training)
    if not chunks:
        return torch.zeros(0, getattr(encoder, "dim", 0))
    # torch.cat outside inference mode gives an ordinary tensor that autograd (the linear probe) accepts.
    return torch.cat(chunks)


def weights_hash(encoder: nn.Module) -> str:
    """sha256 over every tensor of the encoder (parameters, buffers and normalization constants)."""
    digest = hashlib.sha256()
    tensors = dict(encoder.state_dict())
    # Encoder keeps mean/std as non-persistent buffers; they change the features, so hash them too.
    tensors.update({f"buffer:{name}": b for name, b in encoder.named_buffers()})
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return digest.hexdigest()


def _data_hash(images: torch.Tensor) -> str:
    # Hashing the pixels (about 0.1 s for 47 MB) guards against two datasets sharing a name.
    x = images.detach().cpu().contiguous()
    return hashlib.sha256(x.view(torch.uint8).numpy().tobytes()).hexdigest()


class FeatureCache:
    """Float32 feature matrices stored as ``<key>.npy`` files in `directory`, written atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def key(self, encoder: nn.Module, dataset, split_key: str | None = None, amp: bool = False) -> str:
        parts = [weights_hash(encoder), str(dataset.name), str(split_key or ""), str(len(dataset)),
                 _data_hash(dataset.images), f"amp={bool(amp)}"]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            return None  # a damaged cache file is only a cache miss; it is rewritten below

    def put(self, key: str, features: torch.Tensor) -> Path:
        from ..train.checkpoint import atomic_write  # readers never see a half-written file

        array = features.detach().cpu().float().numpy()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npy" to the temp name
                np.save(handle, array, allow_pickle=False)

        self.directory.mkdir(parents=True, exist_ok=True)
        return atomic_write(self.path(key), write)


def cached_features(encoder: nn.Module, dataset, split_key: str | None = None,
                    cache_dir: str | os.PathLike | None = None, batch_size: int = 1024, device: str | torch.device = "cpu", amp: bool = False) -> torch.Tensor:
    """Features (N, D) float32 of `dataset.images`, from `cache_dir` when this encoder saw this split before.

    `cache_dir=None` disables caching. The key covers the encoder's weights, the dataset name,
    `split_key` (optional: the pixel hash already tells splits apart), its length and pixels, and
    `amp`, so any change there re-extracts.
    """
    if cache_dir is None:
        return extract_features(encoder, dataset.images, batch_size, device, amp)
    cache = FeatureCache(cache_dir)
    key = cache.key(encoder, dataset, split_key, amp)
    features = cache.get(key)
    if features is None or len(features) != len(dataset):
        features = extract_features(encoder, dataset.images, batch_size, device, amp)
        cache.put(key, features)
    return features
