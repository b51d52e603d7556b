"""A downstream-agnostic universal adversarial perturbation of a frozen encoder.

After Zhou et al., ICCV 2023, "Downstream-agnostic Adversarial Examples" (AdvEncoder): an attacker
who holds the public pre-trained encoder, but neither the downstream task, its labels nor its
probe, fools every downstream model at once with one image-agnostic perturbation that pushes the
encoder's features of perturbed images away from those of the clean ones. AdvEncoder trains a
generator for it, with a contrastive (InfoNCE) feature loss, an L2 term for image quality and a
high-frequency term. Here the core idea only, as a measurement rather than an attack tool:

- the perturbation delta (C, H, W) is optimized directly, by projected signed-gradient ascent
  (PGD, Madry et al. 2018): seeded uniform start in [-eps, eps], `steps` steps over minibatches of
  a surrogate set, each step followed by projection onto ||delta||_inf <= eps; x + delta is clamped
  to [0, 1] inside the forward pass, so the budget is what the image actually receives;
- the objective is the mean cosine displacement 1 - cos(f(x + delta), f(x)), with no labels.
  Cosine, not L2, because downstream probes see direction (kNN is cosine, linear probes standardize)
  and an L2 loss can be raised just by inflating the feature norm; it is AdvEncoder's "cos"
  criterion. InfoNCE would also push f(x + delta) towards other images' features; a universal
  delta already moves every image the same way, and the cosine form needs no batch of negatives.
  (Measured: cosine, cosine of standardized features and L2 reached the same probe accuracy.)
- the hard projection replaces AdvEncoder's L2 quality term. Its high-frequency term (make an
  FFT high-pass of x + delta differ from that of x) is an option, `high_frequency` (its weight),
  off by default: it pulls delta towards high frequencies, and sign steps already put it there.
  Measured (convnet6 w=8 briefly trained, Fashion-MNIST, eps 8/255, 20 steps): without the term
  79% of delta's energy lies above half the Nyquist radius (white noise: 80%) and the probe falls
  from 0.73 to 0.54; weight 1 changes nothing (0.55), weight 100 (92% high-frequency) weakens the
  attack (0.59). The generator and its fixed noise input are dropped: one delta is the output.

Images are uint8 (N, C, H, W) in [0, 255] or float in [0, 1]; eps is in units of [0, 1].
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .features import extract_features
from .robustness import probe_accuracy

# 8/255: the usual L-inf budget of CIFAR-10 attacks (AdvEncoder uses 10/255), about 3% of the range.
# On 28 px grayscale it is a smaller attack than on 32 px RGB: 784 values instead of 3,072 (an L2
# norm of 0.88 instead of 1.74 when every pixel moves by eps), and on Fashion-MNIST's zero
# background only the positive half of the budget survives the clamp to [0, 1] (pixels that are 0
# in every surrogate image get no gradient and keep their random start: 72% of delta saturates).
# MNIST-style budgets (0.1 to 0.3) are for per-image attacks on robust classifiers and are
# visible at a glance; at 8/255 a briefly trained convnet6 already loses 0.19 of its 0.73 accuracy.
EPS = 8 / 255
# Sign steps of 2.5 eps / steps (Madry et al.'s rule: enough to cross the box from any start).
# Measured: 10, 20 and 40 steps reach the same accuracy on the test encoder; 20 leaves a margin.
STEPS = 20


def _unit(images: torch.Tensor) -> torch.Tensor:
    ok = isinstance(images, torch.Tensor) and images.dim() == 4
    if not ok or not (images.dtype == torch.uint8 or images.is_floating_point()):
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigError(f"adversarial evaluation takes images (N, C, H, W) uint8 or float in [0, 1], got {got}.",
                          "pass the dataset's uint8 image tensor (ImageDataset.images).")
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def high_pass(x: torch.Tensor, radius: float = 0.5) -> torch.Tensor:
    """The part of x (..., H, W) at spatial frequencies >= radius * (min(H, W) / 2), via the FFT.

    radius 0.5 matches AdvEncoder's 8 of 16 on 32 px images. A constant image -> 0.
    """
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device) * h  # signed integer frequencies, no fftshift needed
    fx = torch.fft.fftfreq(w, device=x.device) * w
    keep = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt() >= radius * min(h, w) / 2  # (H, W)
    return torch.fft.ifft2(torch.fft.fft2(x) * keep).real


def apply_perturbation(images: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """clamp(x + delta, 0, 1): `images` (N, C, H, W) uint8 or float in [0, 1], delta (C, H, W) -> float (N, C, H, W)."""
    return (_unit(images) + delta.to(images.device)).clamp_(0, 1)


@contextlib.contextmanager
def _frozen_for_input_grads(encoder):
    """Eval mode, no parameter gradients; mode and requires_grad flags restored afterwards."""
    flags = [(p, p.requires_grad) for p in encoder.parameters()]
    was_training = encoder.training
    encoder.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        encoder.train(was_training)


def universal_perturbation(encoder, images: torch.Tensor, eps: float = EPS, steps: int = STEPS,
                           step_size: float | None = None, batch_size: int = 256, seed: int = 0,
                           high_frequency: float = 0.0, radius: float = 0.5) -> torch.Tensor:
    """One delta (C, H, W), ||delta||_inf <= eps, that displaces the features of all `images` (N, C, H, W).

    Maximizes mean(1 - cos(f(clamp(x + delta)), f(x))) [+ high_frequency * mean squared high-pass
    difference of clamp(x + delta) and x] by `steps` signed-gradient steps of `step_size` (default
    2.5 eps / steps), step t on the t-th minibatch of `batch_size` of a seeded shuffle of `images`
    (reshuffled after each pass). Gradients flow through encoder.backbone(encoder.normalize(.));
    the encoder stays in eval mode and its parameters are not changed. Deterministic on the CPU.
    """
    x_all = _unit(images)
    if not 0 < eps <= 1:
        raise ConfigError(f"eps {eps!r} is not in (0, 1]; it is in units of the [0, 1] pixel range.",
                          "pass e.g. eps=8/255.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1 or batch_size < 1:
        raise ConfigError(f"steps {steps!r} and batch_size {batch_size!r} must be positive integers.",
                          f"pass e.g. steps={STEPS}, batch_size=256.")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if step_size <= 0:
        raise ConfigError(f"step_size {step_size!r} is not positive.", "leave it None for 2.5 * eps / steps.")
    device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(int(seed))
    delta = ((torch.rand(x_all.shape[1:], generator=generator) * 2 - 1) * eps).to(device)  # (C, H, W)
    order, cursor = torch.randperm(len(x_all), generator=generator), 0
    targets = extract_features(encoder, x_all, batch_size, device)  # (N, D) clean features, computed once
    with _frozen_for_input_grads(encoder):
        for _ in range(steps):
            if cursor >= len(order):
                order, cursor = torch.randperm(len(x_all), generator=generator), 0
            index = order[cursor:cursor + batch_size]
            x = x_all[index].to(device).contiguous(memory_format=torch.channels_last)  # (B, C, H, W)
            clean, cursor = targets[index].to(device), cursor + batch_size  # (B, D)
            delta.requires_grad_(True)
            x_adv = (x + delta).clamp(0, 1)  # (B, C, H, W); delta broadcast over the batch
            loss = (1 - F.cosine_similarity(encoder.backbone(encoder.normalize(x_adv)), clean, dim=1)).mean()
            if high_frequency:
                loss = loss + high_frequency * (high_pass(x_adv, radius) - high_pass(x, radius)).pow(2).mean()
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step_size * grad.sign()).clamp_(-eps, eps)
    return delta.detach().cpu()


def adversarial_drop(encoder, probe_predict, surrogate_images: torch.Tensor, test_images: torch.Tensor,
                     test_labels: torch.Tensor, eps: float = EPS, steps: int = STEPS, seed: int = 0,
                     batch_size: int = 256, step_size: float | None = None, high_frequency: float = 0.0,
                     device: str | torch.device = "cpu") -> dict[str, float]:
    """Probe accuracy on `test_images` (M, C, H, W) with a universal delta found on `surrogate_images` only.

    `probe_predict(features (M, D)) -> labels (M,)` is a probe fitted on clean train features; the
    attack never sees it, the test images or any label. Returns "clean", "adversarial", "drop"
    (clean - adversarial, in accuracy points; AdvEncoder's "decline rate" is drop / clean),
    "feature_cosine" (mean cos(f(x + delta), f(x)) over the test set), and for scale the same for
    a random +-eps sign perturbation (seeded by `seed`): "random_sign" and "random_sign_cosine".
    Perturbed images stay float in [0, 1] (not re-quantized to uint8).
    """
    encoder.to(device)  # the attack runs where the encoder is, as extract_features would move it
    delta = universal_perturbation(encoder, surrogate_images, eps, steps, step_size, batch_size, seed, high_frequency)
    random_sign = torch.randint(0, 2, delta.shape, generator=torch.Generator().manual_seed(int(seed) + 1)) * 2.0 - 1
    clean = extract_features(encoder, test_images, device=device)  # (M, D)

    def score(d: torch.Tensor) -> tuple[float, float]:
        feats = extract_features(encoder, apply_perturbation(test_images, d), device=device)
        return probe_accuracy(probe_predict, feats, test_labels), F.cosine_similarity(feats, clean, dim=1).mean().item()

    adversarial, cosine = score(delta)
    random_acc, random_cos = score(eps * random_sign)
    clean_acc = probe_accuracy(probe_predict, clean, test_labels)
    return {"clean": clean_acc, "adversarial": adversarial, "drop": clean_acc - adversarial,
            "feature_cosine": cosine, "random_sign": random_acc, "random_sign_cosine": random_cos}
