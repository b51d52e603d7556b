"""Quality metrics that need no labels: RankMe, alignment and uniformity.

They tell collapse apart from a healthy representation on data without labels, which is the
normal case for a user of selfsup.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank of features (N, D), in [1, min(N, D)].

    Garrido et al. 2023, "RankMe: Assessing the downstream performance of pretrained
    self-supervised representations by their rank": exp(-sum_k p_k log p_k) with
    p_k = s_k / ||s||_1 + eps over the singular values s of the (uncentred) feature matrix.
    """
    s = torch.linalg.svdvals(features.detach().double().cpu())  # float64: tiny singular values matter
    p = s / s.sum().clamp_min(torch.finfo(torch.float64).tiny) + eps
    return torch.exp(-(p * p.log()).sum()).item()


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> float:
    """E ||f(x) - f(y)||^alpha over positive pairs: rows of z1 and z2 (B, D), L2-normalized here.

    Wang & Isola 2020, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere". Lower is better; 0 means the views map to the same point.
    """
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return (z1 - z2).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: torch.Tensor, t: float = 2) -> float:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of rows of z (B, D), L2-normalized here.

    Wang & Isola 2020. Lower (more negative) is more uniform on the sphere; a collapsed
    representation scores 0.
    """
    z = F.normalize(z.float(), dim=1)
    sq_dist = torch.pdist(z.double()).pow(2)  # (B(B-1)/2,) distinct pairs only
    return torch.logsumexp(-t * sq_dist, dim=0).sub(torch.log(torch.tensor(float(len(sq_dist))))).item()


def alignment_uniformity(encoder: nn.Module, images: torch.Tensor, views, n: int = 2048,
                         generator: torch.Generator | None = None, batch_size: int = 512,
                         alpha: float = 2, t: float = 2) -> dict[str, float]:
    """Alignment and uniformity of `encoder` on two augmented views of up to `n` of `images` (N, C, H, W) uint8.

    `views` is a ``selfsup.views`` callable ``(images_uint8, generator) -> (views, params)`` whose
    views are already normalized, so they go through ``encoder.backbone`` (an object without a
    ``backbone`` attribute is used directly). Uniformity is computed on the first view's features.
    """
    device = next(encoder.parameters()).device
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    index = torch.randperm(len(images), generator=generator)[:n]
    net = getattr(encoder, "backbone", encoder)
    was_training = encoder.training
    encoder.eval()
    z1, z2 = [], []
    try:
        with torch.inference_mode():
            for start in range(0, len(index), batch_size):
                batch = images[index[start:start + batch_size]].to(device)
                drawn, _ = views(batch, generator)
                z1.append(net(drawn[0]).float().cpu())
                z2.append(net(drawn[1]).float().cpu())
    finally:
        encoder.train(was_training)
    z1, z2 = torch.cat(z1), torch.cat(z2)
    return {"alignment": alignment(z1, z2, alpha), "uniformity": uniformity(z1, t)}
