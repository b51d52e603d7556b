"""The supervised references: the plain cross-entropy baseline and SLA (joint labels, aggregation,
self-distillation), against hand-computed values and slow loops on tiny inputs."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError, DataError
from selfsup.methods.base import Batch, TrainData
from selfsup.methods.sla import aggregate, joint_labels, self_distillation, transform_all


class Flatten(nn.Module):
    """A backbone without weights: the pixels are the features, so every value can be worked out by hand."""

    def __init__(self, c: int, s: int):
        super().__init__()
        self.dim = c * s * s

    def forward(self, x):
        return x.flatten(1)


def build(name, backbone, **options):
    return registry.get("method", name)(backbone, **options)


# ---------------------------------------------------------------- supervised

def test_supervised_loss_by_hand():
    method = build("supervised", Flatten(1, 1), num_classes=3)
    with torch.no_grad():
        method.classifier.weight.copy_(torch.tensor([[1.0], [0.0], [-1.0]]))
        method.classifier.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
    x = torch.tensor([2.0, -1.0]).view(2, 1, 1, 1)
    y = torch.tensor([0, 1])
    out = method(Batch([x], labels=y))
    # logits: image 0 -> (2, 0.5, -2), label 0; image 1 -> (-1, 0.5, 1), label 1
    ce0 = -2 + math.log(math.exp(2) + math.exp(0.5) + math.exp(-2))
    ce1 = -0.5 + math.log(math.exp(-1) + math.exp(0.5) + math.exp(1))
    assert out["loss"].item() == pytest.approx((ce0 + ce1) / 2, rel=1e-6)
    assert out["accuracy"].item() == 0.5  # image 0 right (2 is the largest), image 1 wrong (1 > 0.5)
    assert torch.equal(out["features"], x.flatten(1))
    assert set(out) == {"loss", "accuracy", "features"}


def test_supervised_refuses_missing_or_out_of_range_labels():
    method = build("supervised", Flatten(1, 2), num_classes=3)
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(DataError, match="label"):
        method.prepare(TrainData(images, None, [0.5], [0.5]))
    with pytest.raises(ConfigError, match="num_classes=4"):
        method.prepare(TrainData(images, torch.tensor([0, 1, 3, 2]), [0.5], [0.5]))
    method.prepare(TrainData(images, torch.tensor([0, 1, 2, 2]), [0.5], [0.5]))  # fits
    with pytest.raises(DataError, match="label"):
        method(Batch([torch.zeros(2, 1, 2, 2)]))


# ---------------------------------------------------------------- SLA: the pieces

def test_rotations_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    x = torch.cat([x, x + 10])  # B = 2
    t = transform_all(x, "rotation")  # (4 B, 1, 2, 2), transformation-major
    assert t.shape == (8, 1, 2, 2)
    expected = [[[1, 2], [3, 4]],  # 0 degrees
                [[2, 4], [1, 3]],  # 90 degrees counter-clockwise
                [[4, 3], [2, 1]],  # 180
                [[3, 1], [4, 2]]]  # 270
    for m in range(4):
        assert torch.equal(t[2 * m, 0], torch.tensor(expected[m], dtype=torch.float))
        assert torch.equal(t[2 * m + 1, 0], torch.tensor(expected[m], dtype=torch.float) + 10)


def test_color_permutations():
    x = torch.arange(3.0).view(1, 3, 1, 1)  # channel c has value c
    t = transform_all(x, "color_permutation")
    orders = [tuple(int(v) for v in t[m, :, 0, 0]) for m in range(6)]
    assert orders[0] == (0, 1, 2) and sorted(orders) == sorted(set(orders)) and len(orders) == 6


def test_transformations_refuse_unsuitable_images():
    with pytest.raises(ConfigError, match="square"):
        transform_all(torch.zeros(2, 1, 4, 6), "rotation")
    with pytest.raises(ConfigError, match="3 colour channels"):
        transform_all(torch.zeros(2, 1, 4, 4), "color_permutation")
    with pytest.raises(ConfigError, match="transformations"):
        build("sla", Flatten(1, 2), transformations="jigsaw")


def test_joint_labels_index_class_times_m_plus_transformation():
    y = torch.tensor([0, 2, 1])
    # rows m B + b of transform_all, joint label y_b * 4 + m
    assert joint_labels(y, 4).tolist() == [0, 8, 4, 1, 9, 5, 2, 10, 6, 3, 11, 7]


def test_aggregation_matches_a_slow_loop():
    torch.manual_seed(0)
    M, B, N = 4, 3, 5
    z = torch.randn(M * B, N * M)
    slow = torch.zeros(B, N)
    for b in range(B):
        for n in range(N):
            slow[b, n] = sum(z[m * B + b, n * M + m] for m in range(M)) / M
    torch.testing.assert_close(aggregate(z, M), slow, rtol=0, atol=1e-6)


def test_self_distillation_by_hand():
    single = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    agg = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    T = 2.0

    def softmax(row):
        e = [math.exp(v / T) for v in row]
        return [v / sum(e) for v in e]

    kl = 0.0
    for s_row, a_row in zip(single.tolist(), agg.tolist()):
        p, q = softmax(a_row), softmax(s_row)
        kl += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    expected = T ** 2 * kl / 2  # batch mean
    single.requires_grad_(True)
    agg.requires_grad_(True)
    loss = self_distillation(single, agg, T)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert agg.grad is None and single.grad.abs().sum() > 0  # the aggregated prediction is the teacher


# ---------------------------------------------------------------- SLA: the method

def tiny_sla(**options):
    torch.manual_seed(0)
    method = build("sla", Flatten(1, 2), num_classes=3, **options)  # D = 4, joint head 4 -> 12
    x = torch.randn(5, 1, 2, 2)
    y = torch.tensor([0, 1, 2, 1, 0])
    return method, x, y


def test_sla_loss_is_the_sum_of_the_papers_terms():
    method, x, y = tiny_sla(temperature=2.0)
    out = method(Batch([x], labels=y))
    M, T = 4, 2.0
    # Slow: each rotated copy separately, the joint head's CE for (y, m), averaged over m and images.
    joint, agg = 0.0, torch.zeros(5, 3)
    for m in range(M):
        z = method.joint(torch.rot90(x, m, dims=(2, 3)).flatten(1))  # (B, 12)
        joint = joint + F.cross_entropy(z, y * M + m) / M
        agg = agg + z[:, m::M] / M  # the logits of (class n, transformation m): columns n M + m
    u = method.single(x.flatten(1))
    kl = (F.softmax(agg / T, 1) * (F.log_softmax(agg / T, 1) - F.log_softmax(u / T, 1))).sum(1).mean() * T ** 2
    expected = joint + kl + F.cross_entropy(u, y)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["joint_loss"].item() == pytest.approx(joint.item(), rel=1e-5)
    assert out["distill_loss"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert torch.equal(out["features"], x.flatten(1))  # the untransformed view's features


def test_sla_without_self_distillation_is_the_joint_loss():
    method, x, y = tiny_sla(self_distillation=False)
    out = method(Batch([x], labels=y))
    joint = sum(F.cross_entropy(method.joint(torch.rot90(x, m, dims=(2, 3)).flatten(1)), y * 4 + m) for m in range(4)) / 4
    assert out["loss"].item() == pytest.approx(joint.item(), rel=1e-6)
    assert "distill_loss" not in out and not any("single" in k for k, _ in method.named_parameters())


def test_sla_predict_aggregates_over_rotations():
    method, x, _ = tiny_sla()
    method.eval()
    pred = method.predict(x)
    for b in range(len(x)):  # one image, one rotation at a time
        agg = sum(method.joint(torch.rot90(x[b:b + 1], m, dims=(2, 3)).flatten(1))[0, m::4] for m in range(4)) / 4
        torch.testing.assert_close(pred["aggregated"][b], agg.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(pred["single"], method.single(x.flatten(1)).detach())
    plain, _, _ = tiny_sla(self_distillation=False)
    # Without the self-distilled head the single-pass prediction is the joint head's identity-rotation block.
    torch.testing.assert_close(plain.predict(x)["single"], plain.joint(x.flatten(1))[:, 0::4].detach())


def test_sla_aggregation_helps_a_rotation_equivariant_classifier():
    # A joint head that is right only for the copy rotated by 180 degrees: its aggregated prediction
    # is still right, the unrotated single pass is not. Shows what AG adds over one pass, exactly.
    method = build("sla", Flatten(1, 2), num_classes=2, self_distillation=False)
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)  # a bright top-left pixel; class 0
    with torch.no_grad():
        method.joint.weight.zero_()
        method.joint.bias.zero_()
        # joint class (n=0, m=2) reads the bottom-right pixel (where 180 degrees puts it) with weight 4;
        # joint class (n=1, m=0) reads the top-left pixel with weight 1
        method.joint.weight[0 * 4 + 2, 3] = 4.0
        method.joint.weight[1 * 4 + 0, 0] = 1.0
    pred = method.predict(x)
    assert pred["single"].argmax(1).item() == 1  # copy 0: class 1 logit 1 > class 0 logit 0
    torch.testing.assert_close(pred["aggregated"], torch.tensor([[4.0 / 4, 1.0 / 4]]))  # class 0 wins after averaging


def test_sla_on_real_backbone_trains_and_refuses_bad_input():
    torch.manual_seed(0)
    backbone = build_backbone("convnet6", in_channels=1, image_size=28, width=8)
    method = build("sla", backbone, num_classes=10)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    out = method(Batch([x], labels=y))
    out["loss"].backward()
    assert out["features"].shape == (8, backbone.dim)
    assert method.joint.weight.grad.shape == (40, backbone.dim) and method.single.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="square"):
        method(Batch([torch.randn(2, 1, 28, 24)], labels=torch.tensor([0, 1])))
    with pytest.raises(ConfigError, match="num_classes=12"):
        method.prepare(TrainData(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 11]), [0.5], [0.5]))
    rgb = build("sla", build_backbone("convnet6", in_channels=1, image_size=28, width=8), transformations="color_permutation")
    with pytest.raises(ConfigError, match="colour channels"):
        rgb.prepare(TrainData(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1]), [0.5], [0.5]))
