"""Multi-layer probes: features from several depths of the backbone, probed per layer and together.

VISSL evaluates ResNets with linear probes on res2..res5, and Masked Scene Modeling (Hermosilla,
Stippel, Sick, "Masked Scene Modeling: Narrowing the Gap Between Supervised and Self-Supervised
Learning in 3D Scene Understanding", CVPR 2025) samples features at several resolutions of a
hierarchical model and concatenates them for linear and nearest-neighbour probing. Here every
stage map of ``backbone.forward_maps`` (convnets, ResNets, scatnet) is global-average pooled to a
(N, C_l) vector, so the probes see what each depth knows about the classes and what they know
together; the last stage is the usual feature vector.

Extraction runs in fixed chunks like ``features.extract_features`` (the same bits whatever the
batch size), in eval mode without gradients.
"""
from __future__ import annotations

import torch
from torch import nn

from .features import FORWARD_CHUNK, _autocast, _frozen


def has_layers(encoder: nn.Module) -> bool:
    backbone = getattr(encoder, "backbone", encoder)
    return callable(getattr(backbone, "forward_maps", None))


def extract_layer_features(encoder: nn.Module, images: torch.Tensor, device: str | torch.device = "cpu",
                           amp: bool = False, batch_size: int = 1024) -> list[torch.Tensor]:
    """One (N, C_l) float32 tensor per stage of ``encoder.backbone.forward_maps`` (shallowest first),
    each stage map averaged over its positions. `images` uint8 (N, C, H, W)."""
    device = torch.device(device)
    backbone = encoder.backbone
    rows = max(FORWARD_CHUNK, -(-batch_size // FORWARD_CHUNK) * FORWARD_CHUNK)
    layers: list[list[torch.Tensor]] | None = None
    with _frozen(encoder, device):
        for start in range(0, len(images), rows):
            block = images[start:start + rows].to(device)
            for s in range(0, len(block), FORWARD_CHUNK):
                x = block[s:s + FORWARD_CHUNK]
                n = len(x)
                if n < FORWARD_CHUNK:  # the same padding as extract_features: fixed shapes, fixed kernels
                    x = torch.cat([x, x[:1].expand(FORWARD_CHUNK - n, *x.shape[1:])])
                x = encoder.normalize(x).contiguous(memory_format=torch.channels_last)
                with _autocast(device, amp):
                    maps = backbone.forward_maps(x)
                pooled = [m.float().mean(dim=(2, 3))[:n].cpu() for m in maps]  # (n, C_l) each
                if layers is None:
                    layers = [[] for _ in pooled]
                for out, p in zip(layers, pooled):
                    out.append(p)
    return [torch.cat(parts) for parts in (layers or [])]


def multilayer_probe(train_layers: list[torch.Tensor], train_labels: torch.Tensor, test_layers: list[torch.Tensor],
                     test_labels: torch.Tensor, seed: int = 0, **probe_options) -> dict[str, float]:
    """L-BFGS linear probe on each layer's features and on all layers concatenated (each layer's
    block is standardized by the probe, so a wide layer does not drown a narrow one by scale)."""
    from .linear import linear_probe

    results = {}
    for i, (train, test) in enumerate(zip(train_layers, test_layers), start=1):
        results[f"linear@layer{i}"] = linear_probe(train, train_labels, test, test_labels, seed=seed, **probe_options)["accuracy"]
        results[f"dim@layer{i}"] = float(train.shape[1])
    results["linear@all"] = linear_probe(torch.cat(train_layers, 1), train_labels, torch.cat(test_layers, 1), test_labels,
                                         seed=seed, **probe_options)["accuracy"]
    return results
