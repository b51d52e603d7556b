"""Evaluation protocols on features: kNN, linear probe, label-free metrics, feature cache, registry."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data.dataset import ImageDataset
from selfsup.encoder import Encoder
from selfsup.errors import ConfigError, DataError
from selfsup.evaluation import EvalContext, evaluate
from selfsup.evaluation.features import FeatureCache, cached_features, extract_features, weights_hash
from selfsup.evaluation.knn import knn_accuracy, knn_predict
from selfsup.evaluation.labelfree import alignment, alignment_uniformity, rankme, uniformity
from selfsup.evaluation.linear import REDUCE_CHUNK, linear_probe, loss_and_grad, objective, stratified_split


# ---------------------------------------------------------------- kNN

def knn_reference(train_x, train_y, test_x, k, temperature):
    """The rule written out with explicit loops: cosine, top k, votes exp(sim / T), ties to the smallest label."""
    preds = []
    for q in test_x.tolist():
        sims = []
        for j, t in enumerate(train_x.tolist()):
            dot = sum(a * b for a, b in zip(q, t))
            sims.append((dot / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in t))), j))
        sims.sort(key=lambda s: -s[0])
        votes = {}
        for sim, j in sims[:k]:
            label = int(train_y[j])
            votes[label] = votes.get(label, 0.0) + math.exp(sim / temperature)
        best = max(votes.values())
        preds.append(min(label for label, v in votes.items() if v == best))
    return torch.tensor(preds)


@pytest.mark.parametrize("fast", [True, False])
def test_knn_matches_loop_reference_with_arbitrary_labels(fast):
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(120, 6, generator=g), torch.randn(30, 6, generator=g)
    label_values = torch.tensor([3, 7, 42, -1])  # not 0..K-1
    train_y = label_values[torch.randint(0, 4, (120,), generator=g)]
    expected = knn_reference(train_x, train_y, test_x, k=5, temperature=0.1)
    got = knn_predict(train_x, train_y, test_x, k=5, temperature=0.1, chunk_size=7, fast=fast)
    assert torch.equal(got, expected)
    # Large k: most votes come from all classes, so the weighting decides.
    expected = knn_reference(train_x, train_y, test_x, k=40, temperature=0.07)
    assert torch.equal(knn_predict(train_x, train_y, test_x, k=40, chunk_size=11, fast=fast), expected)


def test_knn_weighting_beats_majority():
    # Neighbours of q=(1,0): one very close point of label 0, two farther points of label 1.
    train_x = torch.tensor([[1.0, 0.01], [0.5, 0.866], [0.5, -0.866]])
    train_y = torch.tensor([0, 1, 1])
    q = torch.tensor([[1.0, 0.0]])
    # exp(~1/0.07) = 1.6e6 against 2 exp(0.5/0.07) = 2.5e3: the close point wins.
    assert knn_predict(train_x, train_y, q, k=3, temperature=0.07).tolist() == [0]
    # With a huge temperature the weights are ~equal and the majority wins.
    assert knn_predict(train_x, train_y, q, k=3, temperature=1e6).tolist() == [1]


def test_knn_separable_features_score_one_and_random_scores_chance():
    g = torch.Generator().manual_seed(1)
    y_train, y_test = torch.randint(0, 10, (500,), generator=g), torch.randint(0, 10, (200,), generator=g)
    one_hot = lambda y: F.one_hot(y, 10).float() + 0.05 * torch.randn(len(y), 10, generator=g)  # noqa: E731
    assert knn_accuracy(one_hot(y_train), y_train, one_hot(y_test), y_test) == 1.0
    acc = knn_accuracy(torch.randn(2000, 32, generator=g), torch.randint(0, 10, (2000,), generator=g),
                       torch.randn(1000, 32, generator=g), torch.randint(0, 10, (1000,), generator=g))
    assert 0.06 < acc < 0.14  # chance is 0.1; the std of an accuracy over 1000 samples is ~0.01


def test_knn_k_larger_than_train_set_uses_all_samples():
    g = torch.Generator().manual_seed(2)
    train_x, train_y, test_x = torch.randn(9, 4, generator=g), torch.randint(0, 3, (9,), generator=g), torch.randn(5, 4, generator=g)
    expected = knn_reference(train_x, train_y, test_x, 9, 0.07)
    assert torch.equal(knn_predict(train_x, train_y, test_x, k=1000), expected)
    acc, preds = knn_accuracy(train_x, train_y, test_x, expected, k=50, return_predictions=True)
    assert acc == 1.0 and torch.equal(preds, expected)


# ---------------------------------------------------------------- linear probe

def test_linear_probe_matches_sklearn_logistic_regression(digits):
    from sklearn.linear_model import LogisticRegression

    train_x, train_y, test_x, test_y = digits
    lam = 1e-3
    result, model = linear_probe(train_x, train_y, test_x, test_y, lambdas=(lam,), return_model=True)
    xs = (train_x - model.mean) / model.std
    # Our objective mean CE + lam ||W||^2 is scikit-learn's with C = 1 / (2 lam N).
    sk = LogisticRegression(C=1 / (2 * lam * len(xs)), tol=1e-8, max_iter=5000).fit(xs.double().numpy(), train_y.numpy())
    sk_acc = float((sk.predict(((test_x - model.mean) / model.std).numpy()) == test_y.numpy()).mean())
    sk_loss = objective(torch.tensor(sk.coef_, dtype=torch.float32), torch.tensor(sk.intercept_, dtype=torch.float32),
                        xs, train_y, lam).item()
    assert abs(result["accuracy"] - sk_acc) <= 0.005
    assert result["train_loss"] == pytest.approx(sk_loss, rel=1e-3)
    assert result["train_loss"] <= sk_loss * (1 + 1e-4)  # L-BFGS reaches scikit-learn's optimum


def test_blocked_loss_and_gradient_equal_autograd():
    # N not a multiple of the block, so the zero rows appended to the last block are exercised too.
    g = torch.Generator().manual_seed(0)
    n = 3 * REDUCE_CHUNK + 17
    x, y = torch.randn(n, 12, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)
    w = (0.3 * torch.randn(5, 12, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(5, generator=g, dtype=torch.float64).requires_grad_()
    reference = objective(w, b, x, y, 1e-2)
    reference.backward()
    loss, grad_w, grad_b = loss_and_grad(w.detach(), b.detach(), x, y, 1e-2)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(grad_w, w.grad, rtol=1e-10, atol=1e-14)
    assert torch.allclose(grad_b, b.grad, rtol=1e-10, atol=1e-14)


def test_linear_probe_selects_lambda_on_holdout(digits):
    train_x, train_y, test_x, test_y = digits
    labels = torch.tensor([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])[train_y]  # arbitrary label values
    result = linear_probe(train_x, labels, test_x, labels.new_tensor([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])[test_y])
    assert result["lambda"] in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    assert result["accuracy"] > 0.94 and result["val_accuracy"] > 0.94


def test_stratified_split_holds_out_ten_percent_of_each_class():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    fit, val = stratified_split(labels, 0.1, seed=3)
    assert torch.bincount(labels[val]).tolist() == [5, 3, 2]
    assert sorted(torch.cat([fit, val]).tolist()) == list(range(100))
    assert torch.equal(val, stratified_split(labels, 0.1, seed=3)[1])  # seeded


# ---------------------------------------------------------------- label-free metrics

def test_rankme_hand_values():
    assert rankme(torch.eye(16)) == pytest.approx(16, rel=1e-4)
    u, v = torch.randn(50, 1, generator=torch.Generator().manual_seed(0)), torch.arange(1.0, 9.0).view(1, 8)
    assert rankme(u @ v) == pytest.approx(1.0, abs=1e-3)  # rank one
    # Singular values (3, 1): p = (3/4, 1/4), rank = exp(H(p)).
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert rankme(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(expected, rel=1e-5)


def test_alignment_and_uniformity_hand_values():
    assert uniformity(torch.tensor([[1.0, 0.0], [-3.0, 0.0]])) == pytest.approx(-8.0)  # antipodal: |x-y|^2 = 4
    # Three points 120 degrees apart: every squared distance is 3.
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    tri = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert uniformity(tri, t=2) == pytest.approx(-6.0, abs=1e-5)
    assert uniformity(torch.ones(4, 3)) == pytest.approx(0.0, abs=1e-6)  # collapse
    z1, z2 = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 5.0], [0.0, 1.0]])
    assert alignment(z1, z2) == pytest.approx(1.0)  # squared distances 2 and 0
    assert alignment(z1, z2, alpha=1) == pytest.approx(math.sqrt(2) / 2)


def tiny_encoder(seed: int = 0, channels: int = 1) -> Encoder:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(channels, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net.dim = 16
    return Encoder(net, [0.5] * channels, [0.25] * channels, "image")


def identical_views(mean=0.5, std=0.25):
    def views(images, generator):
        x = (images.float() / 255 - mean) / std
        return [x, x.clone()], [{}, {}]
    return views


def test_alignment_uniformity_draws_views_through_the_backbone():
    encoder = tiny_encoder()
    images = torch.randint(0, 256, (40, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = alignment_uniformity(encoder, images, identical_views(), n=32, generator=torch.Generator().manual_seed(1),
                               batch_size=10)
    assert out["alignment"] == pytest.approx(0.0, abs=1e-10)
    index = torch.randperm(40, generator=torch.Generator().manual_seed(1))[:32]
    assert out["uniformity"] == pytest.approx(uniformity(encoder(images[index]).detach()), rel=1e-5)


# ---------------------------------------------------------------- features and cache

class CountingEncoder(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.inner, self.calls, self.dim = encoder, 0, encoder.dim

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def image_set(n=64, labels=True, seed=0, name="toy"):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (n,), generator=g) if labels else None
    return ImageDataset(images, y, [str(i) for i in range(n)], name, "memory")


def test_extract_features_matches_forward_and_restores_mode():
    encoder = tiny_encoder().train()
    data = image_set(50)
    feats = extract_features(encoder, data.images, batch_size=16)
    assert feats.dtype == torch.float32 and feats.shape == (50, 16) and encoder.training
    torch.testing.assert_close(feats, encoder.eval()(data.images).detach())
    bf16 = extract_features(encoder, data.images, batch_size=16, amp=True)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, feats, atol=0.05, rtol=0.05)
    assert not feats.is_inference()  # an ordinary tensor, usable by autograd (the linear probe)


def test_feature_cache_hit_and_invalidation(tmp_path):
    encoder = CountingEncoder(tiny_encoder())
    data = image_set(40)
    first = cached_features(encoder, data, "train", tmp_path, batch_size=16)
    calls = encoder.calls
    assert calls == 1  # the forward runs in fixed chunks of FORWARD_CHUNK (64) rows, whatever batch_size
    second = cached_features(encoder, data, "train", tmp_path, batch_size=16)
    assert encoder.calls == calls and torch.equal(first, second)  # hit: the encoder was not called
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].endswith(".npy")  # no temporary file left behind
    assert np.load(tmp_path / files[0]).dtype == np.float32
    old_hash = weights_hash(encoder)
    with torch.no_grad():
        encoder.inner.backbone[0].weight.add_(0.1)
    assert weights_hash(encoder) != old_hash
    third = cached_features(encoder, data, "train", tmp_path, batch_size=16)
    assert encoder.calls == calls + 1 and not torch.equal(first, third)  # new weights: extracted again
    other = image_set(40, seed=1)  # same name and length, other pixels: a different key
    assert FeatureCache(tmp_path).key(encoder, other, "train") != FeatureCache(tmp_path).key(encoder, data, "train")


# ---------------------------------------------------------------- registry and evaluate()

def test_evaluate_runs_protocols_on_shared_cached_features(tmp_path):
    encoder = CountingEncoder(tiny_encoder())
    train, test = image_set(90, seed=0), image_set(30, seed=1)
    results = evaluate(encoder, train, test, protocols=("knn", "linear", "rankme"), cache_dir=tmp_path,
                       options={"linear": {"lambdas": (1e-3,)}}, knn_k=7)
    assert encoder.calls == 3  # one extraction per split (2 + 1 chunks of 64 rows), shared by all protocols
    train_f, test_f = extract_features(encoder, train.images), extract_features(encoder, test.images)
    assert results["knn"]["accuracy"] == knn_accuracy(train_f, train.labels, test_f, test.labels, k=7)
    assert results["knn"]["k"] == 7
    assert results["linear"]["accuracy"] == linear_probe(train_f, train.labels, test_f, test.labels, lambdas=(1e-3,))["accuracy"]
    assert results["rankme"]["rank"] == pytest.approx(rankme(train_f))
    evaluate(encoder, train, test, protocols=("knn",), cache_dir=tmp_path)
    assert encoder.calls == 6  # both splits came from the disk cache (3 more = the reference extraction above)


def test_evaluate_skips_supervised_protocols_without_labels(monkeypatch):
    import selfsup.evaluation.protocols.alignment_uniformity as au

    monkeypatch.setattr(au, "default_views", lambda encoder, data: identical_views())
    encoder, train = tiny_encoder(), image_set(40, labels=False)
    results = evaluate(encoder, train, image_set(20))
    assert set(results) == {"knn", "linear", "rankme", "alignment_uniformity"}
    assert "no labels" in results["knn"]["skipped"] and "no labels" in results["linear"]["skipped"]
    assert results["rankme"]["rank"] > 1 and results["alignment_uniformity"]["alignment"] == pytest.approx(0, abs=1e-10)
    with pytest.raises(DataError, match="needs labels"):
        evaluate(encoder, train, image_set(20), protocols=("knn",))
    with pytest.raises(DataError, match="no test split"):
        evaluate(encoder, image_set(40), None, protocols=("linear",))


def test_evaluate_rejects_unknown_protocols_and_options():
    encoder, data = tiny_encoder(), image_set(20)
    with pytest.raises(ConfigError, match="unknown protocol 'knnn'.*'knn'"):
        evaluate(encoder, data, data, protocols=("knnn",))
    with pytest.raises(ConfigError, match="no option 'kk'"):
        evaluate(encoder, data, data, protocols=("knn",), options={"knn": {"kk": 3}})
    assert EvalContext(encoder, data).missing_labels() == "no test split was given"
