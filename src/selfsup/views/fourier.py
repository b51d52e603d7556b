"""Fourier-domain style transfer between the images of a batch: Batch Styles Standardization.

Batch Styles Standardization (BSS) is from Scalbert, Vakalopoulou and Couzinié-Devy, "Towards
domain-invariant Self-Supervised Learning with Batch Styles Standardization", ICLR 2024,
arXiv:2303.06088. The 2-D Fourier transform of an image splits it into an amplitude spectrum, which
carries its "style" at low frequencies (mean colour, contrast, illumination, coarse texture), and a
phase spectrum, which carries its content (where the edges and shapes are). BSS gives every image of
a batch the low-frequency amplitude of ONE image of that batch, drawn at random, and keeps each
image's own phase: the batch then shares one style, so a contrastive loss can no longer tell the
negatives apart by their style (domain) and has to use their content.

Per channel, with F the 2-D DFT, A = |F(x)|, P = angle(F(x)), ``ref`` the reference image and M_r the
centred low-frequency box of area fraction r of the spectrum (Algorithm 1 in the paper's appendix
takes a range (r_min, r_max) of such area ratios; the caller draws r in it per batch):

    A'_i = A_i + mix * M_r * (A_ref - A_i)      mix = 1: the paper's substitution M_r A_ref + (1 - M_r) A_i
    x'_i = F^-1(A'_i exp(i P_i)), clamped to [0, 1]

``mix`` < 1 interpolates the amplitudes instead (the amplitude mix of FACT, Xu et al. 2021); the
paper's BSS substitutes (mix = 1).

M_r holds the frequencies with |f_y| <= sqrt(r) / 2 and |f_x| <= sqrt(r) / 2 in cycles per pixel
(f = k / size for the FFT index k, |k| <= size / 2): a box of area r in the [-1/2, 1/2]^2 frequency
square, always containing the zero frequency (so even r = 0 transfers the mean colour), and all of
it at r = 1. The box is symmetric under f -> -f, so the new spectrum stays Hermitian and the image
real; the functions use the real FFT (``rfft2``/``irfft2``), half the work of a complex one, which
is exact for that reason.

Everything is batched, per-sample parameters, no loop over samples; images are float (N, C, H, W)
in [0, 1], any channel count.
"""
from __future__ import annotations

import torch


def low_frequency_box(height: int, width: int, ratio: torch.Tensor, *, onesided: bool = False) -> torch.Tensor:
    """(N,) area ratios -> (N, H, W) bool masks in unshifted FFT layout (zero frequency at [0, 0]);
    (N, H, W // 2 + 1) with ``onesided`` (the layout of ``rfft2``)."""
    # |k| of each FFT index k (frequency k / size cycles per pixel); integers, so r = 1 reaches the
    # Nyquist frequency k = size / 2 exactly instead of through a rounded fftfreq.
    ky = torch.arange(height, device=ratio.device)
    ky = torch.minimum(ky, height - ky)  # (H,)
    kx = torch.arange(width // 2 + 1 if onesided else width, device=ratio.device)
    kx = torch.minimum(kx, width - kx)  # (W',)
    half = ratio.float().clamp(0, 1).sqrt().view(-1, 1, 1) / 2  # (N, 1, 1) half side, in cycles per pixel
    return (ky.view(1, -1, 1) <= half * height) & (kx.view(1, 1, -1) <= half * width)


def amplitude_transfer(images: torch.Tensor, reference: torch.Tensor, ratio: torch.Tensor,
                       mix: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Image i gets the low-frequency amplitude of image ``reference[i]`` of the same batch, before clamping.

    images (N, C, H, W) float; reference (N,) long indices into the batch; ratio (N,) box area in
    [0, 1]; mix a float or (N,) in [0, 1]. Returns float32 (N, C, H, W), NOT clamped: with ratio = 1
    and mix = 1 its amplitude spectrum is exactly the reference's (up to float rounding) and its
    phase is the image's own.
    """
    height, width = images.shape[-2:]
    spectrum = torch.fft.rfft2(images.float())  # (N, C, H, W//2+1) complex64
    amplitude, phase = spectrum.abs(), spectrum.angle()
    target = amplitude.index_select(0, reference)  # (N, C, H, W//2+1): the reference of each row
    weight = low_frequency_box(height, width, ratio.to(images.device), onesided=True).unsqueeze(1).float()
    weight = weight * torch.as_tensor(mix, dtype=torch.float32, device=images.device).reshape(-1, 1, 1, 1)
    amplitude = torch.lerp(amplitude, target, weight)  # A + w (A_ref - A), w = mix inside the box, 0 outside
    return torch.fft.irfft2(torch.polar(amplitude, phase), s=(height, width))  # (N, C, H, W)


def batch_styles_standardization(images: torch.Tensor, reference: torch.Tensor, ratio: torch.Tensor,
                                 mix: float | torch.Tensor = 1.0) -> torch.Tensor:
    """BSS: ``amplitude_transfer`` clamped to [0, 1]. For one batch of views, ``reference`` is the same
    index for every row and ``ratio`` the same value (one style per batch, as in the paper)."""
    return amplitude_transfer(images, reference, ratio, mix).clamp_(0, 1)
