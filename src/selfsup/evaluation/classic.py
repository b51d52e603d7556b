"""The classic linear-evaluation protocol: SGD on a linear head over a frozen backbone, on augmented images.

As in SimCLR/MoCo: random resized crops and flips of the train images go through the frozen
backbone (eval mode, no gradient), a linear head is trained with SGD (momentum 0.9, cosine
learning rate), and the test accuracy is measured on un-augmented test images. It costs one
backbone forward per image per epoch, so it is minutes where the L-BFGS probe on cached features
(``linear.py``) is seconds; keep it for numbers comparable with papers.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def crop_flip_views(encoder: nn.Module, size: int | None = None, scale: tuple[float, float] = (0.08, 1.0)):
    """``selfsup.views`` drawing one random resized crop (area `scale`) + horizontal flip, normalized like `encoder`.

    `size` None keeps the images' size.
    """
    from ..views import ImageViewConfig, ImageViews  # lazy: evaluation on cached features needs no views

    config = ImageViewConfig(size=size, crop_scale=tuple(scale), jitter_p=0.0, grayscale_p=0.0, n_global=1)  # no colour: the eval recipe
    return ImageViews(config, encoder.mean.flatten().tolist(), encoder.std.flatten().tolist())


def _cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * step / max(1, total)))


def classic_linear_eval(encoder: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor,
                        test_features: torch.Tensor, test_labels: torch.Tensor, views, epochs: int = 10,
                        lr: float = 0.1, batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 0.0,
                        seed: int = 0, amp: bool = False) -> dict[str, float]:
    """Train a linear head on frozen-backbone features of augmented `train_images` (N, C, H, W) uint8.

    `views(images_uint8, generator) -> (views, params)` draws the augmentation (its first view is
    used; views are normalized, so they go through ``encoder.backbone``). `test_features` (M, D)
    are the encoder's features of the un-augmented test images (from the feature cache).
    The head is BatchNorm without affine parameters + Linear, so the learning rate does not
    depend on the feature scale (as in MoCo v3 / MAE linear probing).
    Returns {"accuracy", "train_loss" (mean over the last epoch)}.
    """
    device = next(encoder.parameters()).device
    classes, y = torch.unique(train_labels.cpu(), return_inverse=True)  # labels -> 0..K-1
    y = y.to(device)
    net = getattr(encoder, "backbone", encoder)
    dim = test_features.shape[1]
    torch.manual_seed(seed)  # the head's initialization
    # momentum=None: running statistics are the plain average over all batches, so they are exact
    # even after a few steps (the default momentum leaves ~30% of the initial var=1 after 12 steps).
    head = nn.Sequential(nn.BatchNorm1d(dim, affine=False, momentum=None), nn.Linear(dim, len(classes))).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, len(train_images) // batch_size)  # last incomplete batch dropped
    total, step, losses = epochs * steps_per_epoch, 0, []
    was_training = encoder.training
    encoder.eval()
    try:
        for _ in range(epochs):
            order = torch.randperm(len(train_images), generator=generator)
            losses = []
            for b in range(steps_per_epoch):
                index = order[b * batch_size:(b + 1) * batch_size]
                with torch.no_grad():
                    drawn, _ = views(train_images[index].to(device), generator)
                    x = drawn[0].contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                        features = net(x).float()  # (B, D), no graph: the backbone stays frozen
                for group in optimizer.param_groups:
                    group["lr"] = _cosine_lr(lr, step, total)
                loss = nn.functional.cross_entropy(head(features), y[index.to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                step += 1
    finally:
        encoder.train(was_training)
    head.eval()
    with torch.no_grad():
        preds = classes[head(test_features.to(device).float()).argmax(dim=1).cpu()]
    accuracy = (preds == test_labels.cpu()).float().mean().item()
    return {"accuracy": accuracy, "train_loss": sum(losses) / max(1, len(losses))}
