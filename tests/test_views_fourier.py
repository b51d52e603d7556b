"""Batch Styles Standardization: the Fourier operation against a slow numpy reference, its amplitude and
phase properties, and its hook in ImageViews (placement, parameters, determinism, probability)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from selfsup.errors import ConfigError
from selfsup.views import ImageViewConfig, ImageViews, byol_views, fmnist_views, multicrop_views
from selfsup.views.fourier import amplitude_transfer, batch_styles_standardization, low_frequency_box

BSS_KEYS = {"bss", "bss_ref", "bss_ratio"}


def rand_images(n, c, h, w, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def numpy_reference(x, reference, ratio, mix):
    """One image and one channel at a time, full complex FFT in float64, the box built with loops."""
    x = x.double().numpy()
    n, c, h, w = x.shape
    out = np.zeros_like(x)
    for i in range(n):
        half = np.sqrt(ratio[i]) / 2
        box = np.zeros((h, w))
        for ky in range(h):
            for kx in range(w):
                fy, fx = min(ky, h - ky) / h, min(kx, w - kx) / w  # |frequency| in cycles per pixel
                box[ky, kx] = float(fy <= half and fx <= half)
        for ch in range(c):
            spectrum = np.fft.fft2(x[i, ch])
            ref_amplitude = np.abs(np.fft.fft2(x[reference[i], ch]))
            amplitude = np.abs(spectrum)
            amplitude = amplitude + mix[i] * box * (ref_amplitude - amplitude)
            out[i, ch] = np.real(np.fft.ifft2(amplitude * np.exp(1j * np.angle(spectrum))))
    return torch.from_numpy(out)


@pytest.mark.parametrize("c,h,w", [(3, 12, 9), (1, 8, 8), (2, 7, 10)])
def test_amplitude_transfer_matches_slow_numpy_reference(c, h, w):
    x = rand_images(5, c, h, w)
    reference = [3, 0, 4, 3, 1]
    ratio = [0.0, 0.05, 0.3, 0.7, 1.0]
    mix = [1.0, 0.5, 1.0, 0.25, 1.0]
    expected = numpy_reference(x, reference, ratio, mix)
    got = amplitude_transfer(x, torch.tensor(reference), torch.tensor(ratio), torch.tensor(mix))
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got.double(), expected, atol=2e-6, rtol=0)
    clamped = batch_styles_standardization(x, torch.tensor(reference), torch.tensor(ratio), torch.tensor(mix))
    torch.testing.assert_close(clamped.double(), expected.clamp(0, 1), atol=2e-6, rtol=0)
    assert clamped.min() >= 0 and clamped.max() <= 1
    assert (expected < 0).any() or (expected > 1).any()  # the clamp is really exercised


def test_box_area_and_symmetry():
    # Area ratio of the box ~ r, the zero frequency always in it, everything at r = 1, symmetric under k -> -k.
    boxes = low_frequency_box(28, 28, torch.tensor([0.0, 0.01, 0.1, 1.0]))
    assert boxes.shape == (4, 28, 28) and boxes[:, 0, 0].all()
    assert boxes.sum(dim=(1, 2)).tolist() == [1, 9, 81, 784]  # 1, 3 x 3, 9 x 9, all
    flipped = boxes.roll((-1, -1), dims=(1, 2)).flip(1, 2)  # index k -> (-k) mod 28
    assert torch.equal(boxes, flipped)
    half = low_frequency_box(28, 28, torch.tensor([0.1]), onesided=True)
    assert half.shape == (1, 28, 15) and torch.equal(half, boxes[2:3, :, :15])


@pytest.mark.parametrize("c", [1, 3])
def test_whole_box_gives_every_image_the_reference_amplitude_and_keeps_its_phase(c):
    x = rand_images(6, c, 10, 11, seed=1)
    k = 4  # one reference for the whole batch, as BSS draws it
    out = amplitude_transfer(x, torch.full((6,), k), torch.ones(6))
    spec_out, spec_in = torch.fft.fft2(out.double()), torch.fft.fft2(x.double())
    ref_amplitude = spec_in[k].abs().expand_as(spec_in)
    torch.testing.assert_close(spec_out.abs(), ref_amplitude, atol=1e-4, rtol=0)  # values up to 110
    # Phase: the unit phasors agree wherever both amplitudes are not tiny (random images: everywhere).
    ok = (spec_in.abs() > 1e-3) & (ref_amplitude > 1e-3)
    assert ok.float().mean() > 0.99
    torch.testing.assert_close((spec_out / spec_out.abs())[ok], (spec_in / spec_in.abs())[ok], atol=1e-4, rtol=0)
    # The reference itself comes back unchanged, and mix = 0 is the identity.
    torch.testing.assert_close(out[k], x[k], atol=1e-5, rtol=0)
    torch.testing.assert_close(amplitude_transfer(x, torch.full((6,), k), torch.ones(6), 0.0), x, atol=1e-5, rtol=0)


def test_partial_box_swaps_inside_and_keeps_outside():
    x = rand_images(4, 3, 16, 16, seed=2)
    ratio = torch.full((4,), 0.2)
    out = amplitude_transfer(x, torch.zeros(4, dtype=torch.long), ratio)
    box = low_frequency_box(16, 16, ratio)[:, None].expand(4, 3, 16, 16)  # (4, 3, 16, 16)
    amp_out, amp_in = torch.fft.fft2(out.double()).abs(), torch.fft.fft2(x.double()).abs()
    assert 0.15 < box[0, 0].float().mean() < 0.25
    torch.testing.assert_close(amp_out[box], amp_in[0].expand(4, 3, 16, 16)[box], atol=1e-4, rtol=0)
    torch.testing.assert_close(amp_out[~box], amp_in[~box], atol=1e-4, rtol=0)
    # The zero frequency carries the mean colour: every image now has image 0's channel means.
    torch.testing.assert_close(out.mean(dim=(2, 3)), x[0].mean(dim=(1, 2)).expand(4, 3), atol=1e-6, rtol=0)


# ---- the hook in ImageViews


def draw(config, x, seed=0):
    c = x.shape[1]
    return ImageViews(config, [0.0] * c, [1.0] * c)(x, torch.Generator().manual_seed(seed))


def uint8_images(b, c, h, w, seed=0):
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("config,c", [(byol_views(12), 3), (fmnist_views(), 1), (multicrop_views(12, n_local=2), 3)])
def test_bss_is_the_last_step_and_its_parameters_are_recorded(config, c):
    # Mean 0 / std 1: views are the [0, 1] images, so BSS can be replayed on the views drawn without it.
    x = uint8_images(6, c, 16, 16)
    off, p_off = draw(config, x, seed=5)
    cfg = dataclasses.replace(config, bss_p=1.0, bss_ratio=(0.02, 0.3))
    on, p_on = draw(cfg, x, seed=5)
    assert len(on) == len(off) == config.n_global + config.n_local
    refs = set()
    for view_on, view_off, pa, pb in zip(on, off, p_on, p_off):
        assert set(pa) == set(pb) and BSS_KEYS <= set(pa)
        assert all(torch.equal(pa[k], pb[k]) for k in pa if k not in BSS_KEYS)  # same crops, colours, ...
        assert (pb["bss"] == 0).all() and (pb["bss_ref"] == -1).all() and (pb["bss_ratio"] == 0).all()
        assert (pa["bss"] == 1).all()
        ref, ratio = pa["bss_ref"], pa["bss_ratio"]
        assert (ref == ref[0]).all() and (ratio == ratio[0]).all()  # one style per view
        assert 0 <= ref[0] < 6 and ref[0] == ref[0].round() and 0.02 <= ratio[0] <= 0.3
        refs.add(int(ref[0]))
        expected = batch_styles_standardization(view_off, ref.long(), ratio)
        torch.testing.assert_close(view_on, expected, atol=1e-6, rtol=0)
        assert not torch.allclose(view_on, view_off, atol=1e-3)
        # Every image of the view now has the reference's mean colour (the zero frequency).
        means = view_on.mean(dim=(2, 3))
        assert torch.allclose(means, view_off[int(ref[0])].mean(dim=(1, 2)).expand_as(means), atol=2e-2)


def test_bss_views_are_deterministic_and_the_generator_moves_on():
    x = uint8_images(5, 3, 12, 12)
    cfg = dataclasses.replace(byol_views(10), bss_p=0.5)
    a, pa = draw(cfg, x, seed=3)
    b, pb = draw(cfg, x, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(p[k], q[k]) for p, q in zip(pa, pb) for k in p)
    views, gen = ImageViews(cfg, [0.0] * 3, [1.0] * 3), torch.Generator().manual_seed(3)
    first, second = views(x, gen), views(x, gen)
    assert all(torch.equal(u, v) for u, v in zip(first[0], a))
    assert not torch.allclose(first[0][0], second[0][0])


def test_bss_probability_per_view_and_untouched_views_are_exact():
    x = uint8_images(4, 1, 8, 8)
    cfg = dataclasses.replace(fmnist_views(), bss_p=0.5)
    applied, refs = [], set()
    for seed in range(60):
        on, p_on = draw(cfg, x, seed=seed)
        off, _ = draw(fmnist_views(), x, seed=seed)
        for view_on, view_off, p in zip(on, off, p_on):
            assert (p["bss"] == p["bss"][0]).all()
            if p["bss"][0] == 0:
                assert torch.equal(view_on, view_off) and (p["bss_ref"] == -1).all() and (p["bss_ratio"] == 0).all()
            else:
                refs.add(int(p["bss_ref"][0]))
            applied.append(float(p["bss"][0]))
    assert 0.35 < np.mean(applied) < 0.65  # 120 views, p = 0.5
    assert refs == {0, 1, 2, 3}  # the reference is drawn over the whole batch


def test_bss_off_by_default_and_config_errors():
    cfg = ImageViewConfig()
    assert cfg.bss_p == 0 and cfg.bss_mix == 1.0 and cfg.bss_ratio == (0.01, 0.1)
    assert ImageViewConfig(bss_ratio=[0.0, 1.0]).bss_ratio == (0.0, 1.0)  # YAML lists
    with pytest.raises(ConfigError, match="bss_p"):
        ImageViewConfig(bss_p=1.5)
    with pytest.raises(ConfigError, match="bss_ratio"):
        ImageViewConfig(bss_ratio=(0.2, 0.1))
    with pytest.raises(ConfigError, match="bss_ratio"):
        ImageViewConfig(bss_ratio=(0.1, 1.2))
    with pytest.raises(ConfigError, match="bss_mix"):
        ImageViewConfig(bss_mix=-0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bss_on_cuda_matches_cpu():
    x = uint8_images(8, 3, 16, 16)
    cfg = dataclasses.replace(byol_views(12), bss_p=1.0)
    gen = torch.Generator(device="cuda").manual_seed(1)
    a, pa = ImageViews(cfg, [0.5] * 3, [0.25] * 3)(x.cuda(), gen)
    b, _ = ImageViews(cfg, [0.5] * 3, [0.25] * 3)(x.cuda(), torch.Generator(device="cuda").manual_seed(1))
    assert a[0].is_cuda and pa[0]["bss_ref"].is_cuda and all(torch.equal(u, v) for u, v in zip(a, b))
    y = rand_images(4, 3, 12, 9)
    args = (torch.tensor([2, 2, 2, 2]), torch.full((4,), 0.3))
    torch.testing.assert_close(amplitude_transfer(y.cuda(), *(t.cuda() for t in args)).cpu(),
                               amplitude_transfer(y, *args), atol=1e-5, rtol=0)
