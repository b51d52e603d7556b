"""Image views: shapes, determinism, exact parameters, and each operation against a hand computation."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError, DataError
from selfsup.views import (ImageViewConfig, ImageViews, byol_views, fmnist_views, mae_views, multicrop_views,
                           normalize, simclr_views)
from selfsup.views.blur import gaussian_blur, kernel_size
from selfsup.views.color import LUMA, hue
from selfsup.views.crop import sample_boxes

# Crop = the whole image, nothing else: the starting point for exact checks of single operations.
IDENTITY = ImageViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                           n_global=1)
KEYS = {"crop", "flip", "brightness", "contrast", "saturation", "hue", "jitter", "grayscale", "blur_sigma", "solarize",
        "bss", "bss_ref", "bss_ratio"}  # Batch Styles Standardization: identity (0, -1, 0) unless views.bss_p > 0


def images(b=4, c=3, h=12, w=12, seed=0):
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def draw(config, x, seed=0, mean=None, std=None):
    c = x.shape[1]
    views = ImageViews(config, mean or [0.0] * c, std or [1.0] * c)
    return views(x, torch.Generator().manual_seed(seed))


def test_shapes_and_dtypes_global_then_local():
    x = images(b=5, c=3, h=20, w=20)
    out, params = draw(multicrop_views(16, n_local=3), x)
    assert [tuple(v.shape) for v in out] == [(5, 3, 16, 16)] * 2 + [(5, 3, 8, 8)] * 3  # local: max(8, 16*3/7)
    assert all(v.dtype == torch.float32 for v in out)
    assert len(params) == 5 and all(set(p) == KEYS for p in params)
    assert all(p["crop"].shape == (5, 4) and p["flip"].shape == (5,) and p["crop"].dtype == torch.float32 for p in params)
    out, _ = draw(dataclasses.replace(fmnist_views(), local_size=10, n_local=1), images(c=1, h=28, w=28))
    assert [tuple(v.shape) for v in out] == [(4, 1, 28, 28)] * 2 + [(4, 1, 10, 10)]  # size None = input size


def test_same_seed_same_views_other_seed_other_views():
    x = images(b=6)
    a, pa = draw(byol_views(10), x, seed=3)
    b, pb = draw(byol_views(10), x, seed=3)
    c, _ = draw(byol_views(10), x, seed=4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(pa[i][k], pb[i][k]) for i in range(2) for k in KEYS)
    assert not torch.allclose(a[0], c[0])
    # A generator moves on: the next batch from the same generator differs (no accidental reseeding).
    views, gen = ImageViews(byol_views(10), [0.0] * 3, [1.0] * 3), torch.Generator().manual_seed(3)
    first, second = views(x, gen)[0], views(x, gen)[0]
    assert torch.equal(first[0], a[0]) and not torch.allclose(first[0], second[0])


def test_parameters_in_range_and_identity_where_not_applied():
    x = images(b=400, h=16, w=16)
    cfg = dataclasses.replace(simclr_views(16), blur_p=0.5, solarize_p=0.3)
    _, params = draw(cfg, x)
    for p in params:
        cy, cx, h, w = p["crop"].unbind(1)
        assert ((h * w >= 0.08 - 1e-6) & (h * w <= 1 + 1e-6)).all()
        assert ((w / h >= 3 / 4 - 1e-5) & (w / h <= 4 / 3 + 1e-5)).all()
        assert ((cy - h / 2 >= -1e-6) & (cy + h / 2 <= 1 + 1e-6) & (cx - w / 2 >= -1e-6) & (cx + w / 2 <= 1 + 1e-6)).all()
        on = p["jitter"] == 1
        assert 0.7 < on.float().mean() < 0.9  # jitter_p = 0.8
        for key, (lo, hi) in {"brightness": (0.6, 1.4), "contrast": (0.6, 1.4), "saturation": (0.6, 1.4)}.items():
            assert ((p[key][on] >= lo) & (p[key][on] <= hi)).all() and (p[key][~on] == 1).all()
        assert (p["hue"][on].abs() <= 0.1).all() and (p["hue"][~on] == 0).all()
        blurred = p["blur_sigma"] > 0
        assert 0.4 < blurred.float().mean() < 0.6
        assert ((p["blur_sigma"][blurred] >= 0.1) & (p["blur_sigma"][blurred] <= 2.0)).all()
        for key in ("flip", "jitter", "grayscale", "solarize"):
            assert set(p[key].unique().tolist()) == {0.0, 1.0}


def test_grayscale_input_has_identity_colour_parameters():
    _, params = draw(simclr_views(12), images(b=50, c=1))
    for p in params:
        assert (p["saturation"] == 1).all() and (p["hue"] == 0).all() and (p["grayscale"] == 0).all()
        assert (p["brightness"][p["jitter"] == 1] != 1).all()


def test_byol_views_are_asymmetric():
    _, (p1, p2) = draw(byol_views(12), images(b=300))
    assert (p1["blur_sigma"] > 0).all() and (p1["solarize"] == 0).all()  # view 1: blur 1.0, solarize 0.0
    assert 0.03 < (p2["blur_sigma"] > 0).float().mean() < 0.2  # view 2: blur 0.1
    assert 0.12 < p2["solarize"].mean() < 0.28  # view 2: solarize 0.2


def test_identity_crop_returns_the_normalized_input():
    x = images(b=3, h=9, w=11)
    mean, std = [0.2, 0.4, 0.6], [0.3, 0.5, 0.7]
    # The whole of a 9 x 11 image has aspect ratio 11/9; ratio (1, 1) would take a centred square.
    (out,), (p,) = draw(dataclasses.replace(IDENTITY, crop_ratio=(11 / 9, 11 / 9)), x, mean=mean, std=std)
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(normalize(x, mean, std), expected, atol=1e-5)
    assert torch.equal(p["crop"], torch.tensor([[0.5, 0.5, 1.0, 1.0]] * 3))
    (out,), (p,) = draw(dataclasses.replace(IDENTITY, size=9), x)
    assert torch.allclose(p["crop"], torch.tensor([[0.5, 0.5, 1.0, 9 / 11]] * 3))  # the centred square
    assert torch.allclose(out, x[..., 1:10].float() / 255, atol=1e-5)


def test_flip_mirrors_exactly():
    x = images(b=3, h=7, w=10)
    (out,), (p,) = draw(dataclasses.replace(IDENTITY, flip_p=1.0, crop_ratio=(10 / 7, 10 / 7)), x)
    assert torch.allclose(out, x.float().flip(-1) / 255, atol=1e-6)
    assert (p["flip"] == 1).all()


def test_crop_box_matches_the_content_sampled():
    # Channel 0 rises with x, channel 1 with y: pixel j has value 4 j + 2, i.e. 256 * its centre
    # fraction. Bilinear sampling of a linear ramp is exact, so each view's pixels must equal
    # 256 * (the box position they claim) / 255. Output 8 px from boxes >= 27 px never touches the border.
    col = torch.arange(64) * 4 + 2
    x = torch.stack([col.view(1, 64).expand(64, 64), col.view(64, 1).expand(64, 64)]).to(torch.uint8)
    x = x.unsqueeze(0).repeat(6, 1, 1, 1)
    cfg = dataclasses.replace(IDENTITY, size=8, crop_scale=(0.25, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, n_global=2)
    out, params = draw(cfg, x)
    centers = (torch.arange(8) + 0.5) / 8 - 0.5  # output pixel centres, relative to the box, in box widths
    for view, p in zip(out, params):
        cy, cx, h, w = p["crop"].unbind(1)
        sign = 1 - 2 * p["flip"]
        expect_x = 256 * (cx[:, None] + sign[:, None] * w[:, None] * centers) / 255  # (B, 8)
        expect_y = 256 * (cy[:, None] + h[:, None] * centers) / 255
        assert torch.allclose(view[:, 0], expect_x[:, None, :].expand(6, 8, 8), atol=1e-4)
        assert torch.allclose(view[:, 1], expect_y[:, :, None].expand(6, 8, 8), atol=1e-4)
        assert torch.allclose(view[:, 0].mean(dim=(1, 2)), 256 * cx / 255, atol=1e-4)
    assert {0.0, 1.0} <= set(torch.cat([p["flip"] for p in params]).tolist())


def test_fallback_box_is_centred_with_clamped_ratio():
    # No box of area 1 with aspect >= 2 fits a square image: torchvision falls back to the
    # full width and height = width / 2, centred.
    u = torch.rand(3, 10)
    boxes = sample_boxes(u, u, torch.rand(3, 2), (1.0, 1.0), (2.0, 3.0), 10, 10)
    assert torch.allclose(boxes, torch.tensor([[0.5, 0.5, 0.5, 1.0]] * 3))
    # On a 10 x 40 image (ratio 4) a (1, 1) crop falls back to the full height and width = 1.5 * height.
    boxes = sample_boxes(u, torch.ones(3, 10) * 0.5, torch.rand(3, 2), (1.0, 1.0), (1.5, 1.5), 10, 40)
    assert torch.allclose(boxes, torch.tensor([[0.5, 0.5, 1.0, 1.5 / 4]] * 3))


def test_brightness_and_contrast_against_hand_computation():
    x = torch.tensor([[[[0, 64], [128, 255]]], [[[10, 20], [30, 250]]]], dtype=torch.uint8)  # (2, 1, 2, 2)
    cfg = dataclasses.replace(IDENTITY, jitter_p=1.0, brightness=0.5, contrast=0.0)
    (out,), (p,) = draw(cfg, x)
    assert (p["contrast"] == 1).all() and ((p["brightness"] >= 0.5) & (p["brightness"] <= 1.5)).all()
    for i in range(2):
        f = p["brightness"][i].item()
        for pos, v in enumerate(x[i].flatten().tolist()):
            assert out[i].flatten()[pos].item() == pytest.approx(min(1.0, v / 255 * f), abs=1e-6)
    # Brightness then contrast (the fixed order), each clamped, contrast blends with the image mean.
    cfg = dataclasses.replace(IDENTITY, jitter_p=1.0, brightness=0.8, contrast=0.8)
    (out,), (p,) = draw(cfg, x, seed=1)
    for i in range(2):
        b, c = p["brightness"][i].item(), p["contrast"][i].item()
        bright = [min(1.0, v / 255 * b) for v in x[i].flatten().tolist()]
        mean = sum(bright) / 4
        expected = [min(1.0, max(0.0, c * v + (1 - c) * mean)) for v in bright]
        assert out[i].flatten().tolist() == pytest.approx(expected, abs=1e-6)
    # Strength 0 is a degenerate range: factor exactly 1, output exactly the input.
    cfg = dataclasses.replace(IDENTITY, jitter_p=1.0, brightness=0.0, contrast=0.0)
    (out,), (p,) = draw(cfg, x)
    assert (p["brightness"] == 1).all() and (p["jitter"] == 1).all() and torch.allclose(out, x.float() / 255)


def test_saturation_zero_and_grayscale_give_equal_channels():
    x = images(b=3, h=5, w=5)
    luma = torch.einsum("bchw,c->bhw", x.float() / 255, torch.tensor(LUMA))
    (out,), (p,) = draw(dataclasses.replace(IDENTITY, grayscale_p=1.0), x)
    assert (p["grayscale"] == 1).all()
    for ch in range(3):
        assert torch.allclose(out[:, ch], luma, atol=1e-6)
    # Through the pipeline: the returned factors are the ones applied (saturation, then hue).
    cfg = dataclasses.replace(IDENTITY, jitter_p=1.0, brightness=0.0, contrast=0.0, saturation=0.9, hue=0.3)
    (out,), (p,) = draw(cfg, x)
    f = p["saturation"].view(3, 1, 1, 1)
    saturated = (f * x.float() / 255 + (1 - f) * luma[:, None]).clamp(0, 1)
    assert ((p["saturation"] >= 0.1) & (p["saturation"] <= 1.9)).all() and (p["hue"].abs() <= 0.3).all()
    assert torch.allclose(out, hue(saturated, p["hue"]), atol=1e-6)


def test_hue_rotation_identity_and_luma_preserving():
    x = torch.rand(4, 3, 6, 6) * 0.4 + 0.3  # mid-range colours: no clamping after a rotation
    assert torch.allclose(hue(x, torch.zeros(4)), x, atol=1e-6)
    shifted = hue(x, torch.tensor([0.1, -0.1, 0.25, 0.5]))
    assert torch.allclose(torch.einsum("bchw,c->bhw", shifted, torch.tensor(LUMA)),
                          torch.einsum("bchw,c->bhw", x, torch.tensor(LUMA)), atol=1e-5)
    assert not torch.allclose(shifted, x, atol=1e-2)
    assert torch.allclose(hue(hue(x, torch.full((4,), 0.2)), torch.full((4,), -0.2)), x, atol=1e-5)


def test_blur_against_direct_per_sample_convolution():
    x = torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.0, 0.7, 2.0])
    out = gaussian_blur(x, sigma)
    assert kernel_size(9) == 3 and kernel_size(28) == 3 and kernel_size(96) == 9 and kernel_size(224) == 23
    for i, s in enumerate(sigma.tolist()):
        if s == 0:
            assert torch.equal(out[i], x[i])
            continue
        k = torch.tensor([torch.exp(torch.tensor(-(t * t) / (2 * s * s))).item() for t in (-1, 0, 1)])
        k = k / k.sum()
        padded = F.pad(x[i:i + 1], (1, 1, 1, 1), mode="reflect")[0]  # (2, 11, 11)
        ref = torch.zeros(2, 9, 9)
        for dy in range(3):
            for dx in range(3):
                ref += k[dy] * k[dx] * padded[:, dy:dy + 9, dx:dx + 9]
        assert torch.allclose(out[i], ref, atol=1e-6)


def test_blur_tiny_sigma_is_identity_and_constant_stays_constant():
    x = images(b=2, h=30, w=30)
    (out,), (p,) = draw(dataclasses.replace(IDENTITY, blur_p=1.0, blur_sigma=(0.05, 0.05)), x)
    assert torch.allclose(p["blur_sigma"], torch.full((2,), 0.05)) and torch.allclose(out, x.float() / 255, atol=1e-6)
    const = torch.full((2, 3, 30, 30), 77, dtype=torch.uint8)
    (out,), _ = draw(dataclasses.replace(IDENTITY, blur_p=1.0, blur_sigma=(2.0, 2.0)), const)
    assert torch.allclose(out, torch.full_like(out, 77 / 255), atol=1e-6)


def test_solarize_is_exact():
    x = torch.tensor([[[[0, 127], [128, 255]]]], dtype=torch.uint8)
    (out,), (p,) = draw(dataclasses.replace(IDENTITY, solarize_p=1.0), x)
    assert p["solarize"].item() == 1
    assert out.flatten().tolist() == pytest.approx([0, 127 / 255, 1 - 128 / 255, 0], abs=1e-6)


def test_presets_match_their_recipes():
    fm = fmnist_views()
    assert (fm.size, fm.crop_scale, fm.flip_p, fm.jitter_p, fm.brightness, fm.contrast) == (None, (0.08, 1.0), 0.5, 0.8, 0.8, 0.8)
    assert fm.saturation == fm.hue == fm.grayscale_p == fm.blur_p == fm.solarize_p == 0
    assert mae_views(32).crop_scale == (0.2, 1.0) and mae_views(32).jitter_p == 0 and mae_views(32).n_global == 1
    assert byol_views(224).per_view("blur_p") == (1.0, 0.1) and byol_views(224).per_view("solarize_p") == (0.0, 0.2)
    assert simclr_views(224).brightness == 0.8 and simclr_views(224).blur_p == 0.5
    assert simclr_views(32).brightness == 0.4 and simclr_views(32).blur_p == 0.0


def test_config_errors_name_the_value():
    with pytest.raises(ConfigError, match="blur_p"):
        ImageViewConfig(blur_p=(1.0, 0.1, 0.5))
    with pytest.raises(ConfigError, match="crop_scale"):
        ImageViewConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match="hue"):
        ImageViewConfig(hue=0.7)
    assert ImageViewConfig(crop_scale=[0.2, 1.0], blur_p=[0.5, 0.5]).crop_scale == (0.2, 1.0)  # YAML lists
    with pytest.raises(DataError, match="uint8"):
        ImageViews(IDENTITY, [0.0], [1.0])(torch.zeros(1, 1, 4, 4))
    with pytest.raises(DataError, match="channels"):
        ImageViews(IDENTITY, [0.0], [1.0])(images(c=3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_generator_draws_on_the_device_and_matches_itself():
    x = images(b=8, h=16, w=16).cuda()
    views = ImageViews(byol_views(12), [0.5] * 3, [0.25] * 3)
    a, pa = views(x, torch.Generator(device="cuda").manual_seed(1))
    b, _ = views(x, torch.Generator(device="cuda").manual_seed(1))
    assert a[0].is_cuda and pa[1]["crop"].is_cuda
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_cpu_threads_are_restored_and_do_not_change_the_views():
    before = torch.get_num_threads()
    x = images(b=4)
    one, _ = ImageViews(byol_views(10), [0.0] * 3, [1.0] * 3, cpu_threads=1)(x, torch.Generator().manual_seed(0))
    assert torch.get_num_threads() == before
    default, _ = ImageViews(byol_views(10), [0.0] * 3, [1.0] * 3, cpu_threads=None)(x, torch.Generator().manual_seed(0))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(one, default))
