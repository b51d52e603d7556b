"""Mixed Barlow Twins: the mixup regularizer against a slow reference written from the paper's
formulas, and the method against Barlow Twins plus that reference with the same draws."""
from __future__ import annotations

import pytest
import torch

from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError
from selfsup.losses import barlow_twins
from selfsup.methods.base import Batch
from selfsup.methods.mixed_barlow_twins import mixup_regularizer


def slow_regularizer(z1, z2, zm, perm, lam, eps=1e-5):
    """The six cross-correlations of the paper, entry by entry, in float64."""
    z1, z2, zm = z1.double(), z2.double(), zm.double()
    B, D = z1.shape

    def standardized(z):
        out = torch.empty_like(z)
        for d in range(D):
            mean = sum(z[b, d] for b in range(B)) / B
            var = sum((z[b, d] - mean) ** 2 for b in range(B)) / B
            for b in range(B):
                out[b, d] = (z[b, d] - mean) / (var + eps).sqrt()
        return out

    def corr(a, b_):
        c = torch.empty(D, D, dtype=torch.float64)
        for i in range(D):
            for j in range(D):
                c[i, j] = sum(a[b, i] * b_[b, j] for b in range(B)) / B
        return c

    s1, s2, sm = standardized(z1), standardized(z2), standardized(zm)
    s2p = s2[perm]
    c_m1, c_m2 = corr(sm, s1), corr(sm, s2)
    gt_m1 = lam * corr(s1, s1) + (1 - lam) * corr(s2p, s1)
    gt_m2 = lam * corr(s1, s2) + (1 - lam) * corr(s2p, s2)
    return ((c_m1 - gt_m1) ** 2).sum() + ((c_m2 - gt_m2) ** 2).sum()


def test_regularizer_matches_slow_reference():
    torch.manual_seed(0)
    B, D = 6, 3
    z1, z2, zm = torch.randn(B, D), torch.randn(B, D), torch.randn(B, D)
    perm, lam = torch.tensor([3, 0, 5, 1, 4, 2]), 0.3
    fast = mixup_regularizer(z1, z2, zm, perm, lam)
    assert fast.item() == pytest.approx(slow_regularizer(z1, z2, zm, perm, lam).item(), rel=1e-5)
    assert fast.item() > 0


def test_regularizer_is_zero_for_an_unmixed_batch_and_keeps_gradients():
    torch.manual_seed(1)
    z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
    perm, lam = torch.randperm(8), 1.0  # lam = 1: the mixed images are view 1, so C^{M1} = C(z1, z1)
    assert mixup_regularizer(z1, z2, z1.clone(), perm, lam).item() == pytest.approx(0.0, abs=1e-10)
    # gradients flow into all three embeddings (the targets are not detached, as in the authors' code)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    zm = torch.randn(8, 4, requires_grad=True)
    mixup_regularizer(z1, z2, zm, perm, 0.4).backward()
    assert all(t.grad.abs().sum() > 0 for t in (z1, z2, zm))


def build(**options):
    torch.manual_seed(0)
    backbone = build_backbone("convnet6", in_channels=1, image_size=28, width=8)
    return registry.get("method", "mixed_barlow_twins")(backbone, hidden_dim=32, out_dim=16, **options)


def views(B=12):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(B, 1, 28, 28, generator=g), torch.randn(B, 1, 28, 28, generator=g)]


def test_method_is_barlow_twins_plus_weighted_regularizer():
    method = build(reg_scale=4.0, alpha=1.0, lambda_offdiag=0.01)
    x1, x2 = views()
    torch.manual_seed(7)
    out = method(Batch([x1, x2]))
    torch.manual_seed(7)
    lam, perm = method.draw_mix(len(x1))  # the same draws the forward made
    assert out["mix_lambda"].item() == pytest.approx(lam)
    with torch.no_grad():  # train-mode BatchNorm: the same inputs give the same outputs again
        z1, z2 = method.projector(method.backbone(torch.cat([x1, x2]))).chunk(2)
        zm = method.projector(method.backbone(lam * x1 + (1 - lam) * x2[perm]))  # view 1 mixed with shuffled view 2
    reg = slow_regularizer(z1, z2, zm, perm, lam)
    expected = barlow_twins(z1, z2, lambda_offdiag=0.01).double() + 4.0 * 0.01 * reg
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["mix_reg"].item() == pytest.approx(reg.item(), rel=1e-4)
    assert out["features"].shape == (24, method.backbone.dim) and out["embeddings"].shape == (24, 16)
    assert method.embedding_dim == 16


def test_reg_scale_zero_is_barlow_twins():
    method = build(reg_scale=0.0)
    x1, x2 = views()
    out = method(Batch([x1, x2]))
    with torch.no_grad():
        z1, z2 = method.projector(method.backbone(torch.cat([x1, x2]))).chunk(2)
    assert out["loss"].item() == pytest.approx(barlow_twins(z1, z2).item(), rel=1e-6)
    assert "mix_reg" not in out


def test_draws_come_from_the_global_rng():
    method = build(alpha=1000.0)
    torch.manual_seed(0)
    a = method.draw_mix(10)
    torch.manual_seed(0)
    b = method.draw_mix(10)
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert sorted(a[1].tolist()) == list(range(10))
    assert abs(a[0] - 0.5) < 0.05  # Beta(1000, 1000) is concentrated at 1/2
    with pytest.raises(ConfigError, match="alpha"):
        build(alpha=0.0)
    with pytest.raises(ConfigError, match="reg_scale"):
        build(reg_scale=-1.0)
