"""Time-series parts against hand-written references: TS2Vec's hierarchical loss, TS-TCC's future
prediction loss, the series views (each transformation's defining property) and the backbones'
masking of missing steps."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.losses.temporal import (future_prediction_loss, hierarchical_contrastive_loss, instance_contrastive_loss,
                                     temporal_contrastive_loss)
from selfsup.views.series import SeriesViewConfig, SeriesViews, ts2vec_views, tstcc_views


def slow_pair_loss(groups):
    """groups: list of (2n, D) tensors; rows i and n + i positives; -log softmax over the other rows."""
    total, count = 0.0, 0
    for z in groups:
        n = len(z) // 2
        for a in range(2 * n):
            b = (a + n) % (2 * n)
            logits = [float(z[a] @ z[c]) for c in range(2 * n) if c != a]
            pos = float(z[a] @ z[b])
            total += -(pos - math.log(sum(math.exp(v) for v in logits)))
            count += 1
    return total / count


def test_instance_and_temporal_losses_match_a_loop():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(3, 4, 5, generator=g) * 0.5, torch.randn(3, 4, 5, generator=g) * 0.5
    inst = slow_pair_loss([torch.cat([z1[:, t], z2[:, t]]) for t in range(4)])  # at each step, over series
    temp = slow_pair_loss([torch.cat([z1[i], z2[i]]) for i in range(3)])  # in each series, over steps
    assert float(instance_contrastive_loss(z1, z2)) == pytest.approx(inst, rel=1e-5)
    assert float(temporal_contrastive_loss(z1, z2)) == pytest.approx(temp, rel=1e-5)
    assert float(instance_contrastive_loss(z1[:1], z2[:1])) == 0.0  # one series: no negatives
    assert float(temporal_contrastive_loss(z1[:, :1], z2[:, :1])) == 0.0


def test_hierarchical_loss_is_the_mean_over_scales():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    pool = lambda z: torch.nn.functional.max_pool1d(z.transpose(1, 2), 2).transpose(1, 2)  # noqa: E731
    a1, a2 = pool(z1), pool(z2)  # T = 2
    b1, b2 = pool(a1), pool(a2)  # T = 1
    expected = (0.5 * (instance_contrastive_loss(z1, z2) + temporal_contrastive_loss(z1, z2))
                + 0.5 * (instance_contrastive_loss(a1, a2) + temporal_contrastive_loss(a1, a2))
                + 0.5 * instance_contrastive_loss(b1, b2)) / 3
    assert float(hierarchical_contrastive_loss(z1, z2)) == pytest.approx(float(expected), rel=1e-6)
    # temporal_unit=1 skips the temporal term at the finest scale
    later = (0.5 * instance_contrastive_loss(z1, z2) + 0.5 * (instance_contrastive_loss(a1, a2)
             + temporal_contrastive_loss(a1, a2)) + 0.5 * instance_contrastive_loss(b1, b2)) / 3
    assert float(hierarchical_contrastive_loss(z1, z2, temporal_unit=1)) == pytest.approx(float(later), rel=1e-6)


def test_future_prediction_loss_matches_a_loop():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)  # (K, B, D)
    total = 0.0
    for k in range(2):
        for i in range(3):
            scores = [float(pred[k, i] @ target[k, j]) for j in range(3)]
            total += -(scores[i] - math.log(sum(math.exp(s) for s in scores)))
    assert float(future_prediction_loss(pred, target)) == pytest.approx(total / 6, rel=1e-6)


def series_batch(n=6, c=2, t=40, seed=0, pad=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, t, generator=g)
    if pad:
        x[0, :, t - pad:] = float("nan")
    return x


def test_ts2vec_crops_overlap_on_the_same_values():
    x = series_batch()
    views, params = SeriesViews(ts2vec_views(mask_p=0.0), [0.0, 0.0], [1.0, 1.0])(x, torch.Generator().manual_seed(3))
    start, length = int(params[0]["overlap_start"][0]), int(params[0]["overlap_length"][0])
    assert 2 <= length <= 40 and views[0].shape[2] >= start + length
    torch.testing.assert_close(views[0][:, :, start:start + length], views[1][:, :, :length])
    # each crop is a contiguous window of its own series
    for i in range(6):
        row = x[i, 0]
        window = views[1][i, 0, :length]
        assert any(torch.equal(row[s:s + length], window) for s in range(41 - length))


def test_timestamp_masking_hides_about_p_of_the_steps():
    x = series_batch(n=64, t=200)
    views, params = SeriesViews(ts2vec_views(), [0.0, 0.0], [1.0, 1.0])(x, torch.Generator().manual_seed(4))
    hidden = torch.isnan(views[0]).all(1).float().mean()
    assert 0.45 < float(hidden) < 0.55 and params[0]["masked"].shape == (64,)


def test_tstcc_views_weak_scales_and_strong_permutes():
    x = series_batch(n=8, c=1, t=50)
    views, params = SeriesViews(tstcc_views(), [0.0], [1.0])(x, torch.Generator().manual_seed(5))
    weak, strong = views
    torch.testing.assert_close(weak, x * params[0]["scale"][:, :, None])  # scaling only, factor ~ N(2, 1.1)
    assert 0.5 < float(params[0]["scale"].mean()) < 3.5
    # strong: a permutation of the values plus jitter 0.8: without the jitter, the same multiset
    cfg = dataclasses.replace(tstcc_views(), jitter=(0.0, 0.0))
    _, strong_params = SeriesViews(cfg, [0.0], [1.0])(x, torch.Generator().manual_seed(5))
    plain, _ = SeriesViews(cfg, [0.0], [1.0])(x, torch.Generator().manual_seed(5))
    for i in range(8):
        assert torch.equal(plain[1][i, 0].sort().values, x[i, 0].sort().values)
    assert (strong_params[1]["segments"] > 1).any()


def test_views_keep_the_padding_and_normalize():
    x = series_batch(pad=10) * 3 + 1
    cfg = SeriesViewConfig(jitter=0.1, scale=0.2, magnitude_warp=0.2, time_warp=0.2, crop_scale=(0.5, 1.0))
    views, params = SeriesViews(cfg, [1.0, 1.0], [3.0, 3.0])(x, torch.Generator().manual_seed(6))
    for v in views:
        assert torch.isnan(v[0, :, 30:]).all() and not torch.isnan(v[0, :, :30]).any() and not torch.isnan(v[1:]).any()
        assert abs(float(v[1:].mean())) < 0.5 and 0.5 < float(v[1:].std()) < 2.0  # about standardized
    assert params[0]["crop"].shape == (6, 2) and params[0]["scale"].shape == (6, 2)


def test_dilated_cnn_masks_missing_and_hidden_steps():
    """What a missing (NaN) or hidden (mask) step held never reaches the encoder: it enters as zeros,
    as the convolutions' own padding does; pooling takes the observed steps only."""
    torch.manual_seed(0)
    net = build_backbone("ts2vec_cnn", in_channels=2, length=60, hidden_dim=8, dim=16, depth=3).eval()
    x = torch.randn(1, 2, 60)
    missing, huge = x.clone(), x.clone()
    missing[:, :, 20] = float("nan")
    huge[:, :, 20] = 1e6
    hide = torch.ones(1, 60, dtype=torch.bool)
    hide[0, 20] = False
    torch.testing.assert_close(net.forward_steps(missing), net.forward_steps(huge, hide))
    padded = x.clone()
    padded[:, :, 40:] = float("nan")
    steps = net.forward_steps(padded)
    torch.testing.assert_close(net(padded), steps[:, :40].amax(1))  # the max over the 40 observed steps


@pytest.mark.parametrize("name", ["ts2vec_cnn", "resnet1d", "patchtst"])
def test_series_backbones_give_steps_and_pooled_features(name):
    net = build_backbone(name, in_channels=3, length=50).eval()
    x = series_batch(n=4, c=3, t=50, pad=7)
    x[2, 1, 5] = float("nan")  # a missing value inside a series
    with torch.no_grad():
        pooled, steps = net(x), net.forward_steps(x)
    assert pooled.shape == (4, net.dim) and steps.shape == (4, 50, net.dim)
    assert torch.isfinite(pooled).all() and torch.isfinite(steps).all()


@pytest.mark.parametrize("name", ["ts2vec_cnn", "resnet1d", "patchtst"])
def test_features_do_not_depend_on_how_far_a_series_is_padded(name):
    """A series of 37 steps gives the same features alone (padded to 48), in a tensor padded to 100
    and in one padded to 333 (a test split padded to a longer train split's length): steps past its
    end stay zero through every layer and are no attention keys. Before, the dilated CNN's biases
    filled the padding after the first block and the later blocks read it back (PLAID: the same test
    series differed by up to 1.1 in a feature between lengths 1,000 and 1,344)."""
    torch.manual_seed(0)
    net = build_backbone(name, in_channels=2, length=48).eval()
    x = torch.randn(3, 2, 37)
    x[1, :, 30:] = float("nan")  # a shorter series in the same batch
    x[2, 0, 10] = float("nan")  # a missing value inside a series

    def padded(t: int) -> torch.Tensor:
        return torch.cat([x, torch.full((3, 2, t - 37), float("nan"))], dim=2)

    with torch.no_grad():
        base, base_steps = net(padded(48)), net.forward_steps(padded(48))
        for t in (100, 333):
            torch.testing.assert_close(net(padded(t)), base, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(net.forward_steps(padded(t))[:, :37], base_steps[:, :37], rtol=1e-5, atol=1e-5)
