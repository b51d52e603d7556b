"""OBoW: BoW targets against a slow loop, the vocabulary queue by hand, the dynamic head and the loss,
the method's composition, state round trip and exact resume."""
from __future__ import annotations

import math

import pytest
import torch

from selfsup import config as C
from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError
from selfsup.methods.base import Batch, TrainData
from selfsup.losses.bow import bow_loss, perplexities, trim_border
from selfsup.methods.obow import BoWPredictor, Vocabulary
from selfsup.views import ImageViews, multicrop_views
from tests.conftest import assert_resume_bit_identical

MEAN, STD = [0.286], [0.353]


def obow(**options):
    torch.manual_seed(0)
    backbone = build_backbone("convnet6", in_channels=1, image_size=28, width=8)
    return registry.get("method", "obow")(backbone, **{"num_words": 32, **options})


def multicrop_batch(n=8, n_local=2, seed=0, progress=0.5) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    views, params = ImageViews(multicrop_views(28, n_local), MEAN, STD)(images, g)
    return Batch(views, params, images, None, torch.arange(n), progress, n_global=2, n_local=n_local)


# ---------------------------------------------------------------- targets

def slow_bow(maps, words, inv_delta, mu):
    """Plain loops: trim the border ring, softmax of -inv_delta * squared distance / mu per location,
    max over locations, divide by the sum."""
    B, C, H, W = maps.shape
    K = words.shape[0]
    out = torch.zeros(B, K, dtype=torch.float64)
    for b in range(B):
        best = [0.0] * K
        for h in range(1, H - 1):
            for w in range(1, W - 1):
                d = [sum((maps[b, c, h, w].item() - words[k, c].item()) ** 2 for c in range(C)) for k in range(K)]
                e = [math.exp(-inv_delta * dk / mu) for dk in d]
                for k in range(K):
                    best[k] = max(best[k], e[k] / sum(e))
        out[b] = torch.tensor(best) / sum(best)
    return out


def slow_mean_min_distance(maps, words):
    d = []
    for b in range(maps.shape[0]):
        for h in range(1, maps.shape[2] - 1):
            for w in range(1, maps.shape[3] - 1):
                d.append(min(((maps[b, :, h, w] - words[k]) ** 2).sum().item() for k in range(words.shape[0])))
    return sum(d) / len(d)


def test_bow_targets_match_slow_loop():
    torch.manual_seed(0)
    maps = torch.rand(2, 3, 5, 4) * 2  # trimmed to 3 x 2 locations
    vocab = Vocabulary(num_words=6, dim=3)
    vocab.words.copy_(torch.rand(6, 3) * 2)
    words = vocab.words.clone()
    # Evaluation with a stored running mean: no update, the stored value is the temperature's scale.
    vocab.mean_min_distance.fill_(0.3)
    got = vocab.encode(maps, inv_delta=2.0, update=False)
    torch.testing.assert_close(got.double(), slow_bow(maps, words, 2.0, 0.3), rtol=1e-5, atol=1e-6)
    assert torch.equal(vocab.words, words) and vocab.mean_min_distance.item() == pytest.approx(0.3)
    # Training: the running mean moves first (0.99 old + 0.01 batch), then the targets use it.
    batch_mean = slow_mean_min_distance(maps, words)
    mu = 0.99 * 0.3 + 0.01 * batch_mean
    got = vocab.encode(maps, inv_delta=2.0, update=True)
    torch.testing.assert_close(got.double(), slow_bow(maps, words, 2.0, mu), rtol=1e-5, atol=1e-6)
    assert vocab.mean_min_distance.item() == pytest.approx(mu, rel=1e-6)
    # A fresh vocabulary starts its running mean at 0.5, as the official code.
    fresh = Vocabulary(num_words=6, dim=3)
    fresh.words.copy_(words)
    got = fresh.encode(maps, inv_delta=2.0, update=True)
    mu = 0.99 * 0.5 + 0.01 * batch_mean
    assert fresh.mean_min_distance.item() == pytest.approx(mu, rel=1e-6)
    torch.testing.assert_close(got.double(), slow_bow(maps, words, 2.0, mu), rtol=1e-5, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(2)) and (got > 0).all()


def test_trim_border_keeps_small_maps():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert torch.equal(trim_border(x), x[:, :, 1:4, 1:4])
    assert torch.equal(trim_border(x[:, :, :2, :]), x[:, :, :2, :])


# ---------------------------------------------------------------- vocabulary queue

def test_vocabulary_queue_update_hand_checked():
    vocab = Vocabulary(num_words=4, dim=2)
    w = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
    vocab.words.copy_(w)
    # Two 5 x 5 maps; the trimmed 3 x 3 inner block averaged over 3 x 3 leaves one location:
    # channel 0 = arange(25) has inner values 6 7 8 / 11 12 13 / 16 17 18, mean 12; channel 1 = 2x -> 24;
    # image 1 is image 0 + 1 -> (13, 26).
    base = torch.arange(25.0).view(5, 5)
    maps = torch.stack([torch.stack([base, 2 * base]), torch.stack([base + 1, 2 * base + 2])])  # (2, 2, 5, 5)
    vocab.encode(maps, inv_delta=1.0, update=True)
    assert torch.equal(vocab.words, torch.tensor([[12.0, 24.0], [13.0, 26.0], [1.0, 1.0], [2.0, 2.0]]))
    # Newest first, the oldest leave; more rows than words keeps the first K of the new ones.
    vocab.push(torch.tensor([[7.0, 0.0]]))
    assert torch.equal(vocab.words, torch.tensor([[7.0, 0.0], [12.0, 24.0], [13.0, 26.0], [1.0, 1.0]]))
    vocab.push(torch.arange(10.0).view(5, 2))
    assert torch.equal(vocab.words, torch.arange(8.0).view(4, 2))


def test_vocabulary_samples_local_averages_at_random_locations():
    torch.manual_seed(0)
    vocab = Vocabulary(num_words=8, dim=1, samples_per_image=6)
    x = torch.arange(16.0).view(1, 1, 4, 4)  # 3 x 3 averages: centres 5, 6, 9, 10 -> 5, 6, 9, 10
    picked = vocab.sample(torch.cat([x, x + 100]))
    assert picked.shape == (12, 1)
    assert set(picked[:6, 0].tolist()) <= {5.0, 6.0, 9.0, 10.0}
    assert set(picked[6:, 0].tolist()) <= {105.0, 106.0, 109.0, 110.0}  # image-major rows
    assert len(set(picked[:, 0].tolist())) > 2  # several locations drawn


# ---------------------------------------------------------------- head and loss

def test_dynamic_head_shapes_and_logits():
    torch.manual_seed(0)
    head = BoWPredictor(word_dim=3, feature_dim=4, hidden_dim=8, kappa=5.0)
    words, features = torch.rand(6, 3), torch.randn(10, 4, requires_grad=True)
    w = head.weights(words)
    assert w.shape == (6, 4)
    torch.testing.assert_close(w.norm(dim=1), torch.ones(6))
    logits = head(features, words)
    assert logits.shape == (10, 6) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, 5.0 * features @ w.T)
    # Scaling a word does not change its weight: the generator sees unit words.
    torch.testing.assert_close(head.weights(words * torch.tensor([[2.0], [1], [3], [1], [1], [0.5]])), w)
    logits.sum().backward()
    assert features.grad is not None and all(p.grad is not None for p in head.generator.parameters())
    assert not head.kappa.requires_grad and head.kappa.grad is None
    assert BoWPredictor(3, 4, 8, kappa=5.0, learn_kappa=True).kappa.requires_grad


def test_bow_loss_hand_computed():
    # view 0: softmax(ln 2, 0, 0) = (1/2, 1/4, 1/4) against y = (1/2, 1/2, 0): -(ln(1/2) + ln(1/4)) / 2 = 1.5 ln 2
    # view 1: uniform logits: ln 3. Mean over the 2 views of the 1 image: (1.5 ln 2 + ln 3) / 2.
    logits = torch.tensor([[[math.log(2), 0.0, 0.0]], [[1.0, 1.0, 1.0]]])  # (V=2, B=1, K=3)
    targets = torch.tensor([[0.5, 0.5, 0.0]])
    assert bow_loss(logits, targets).item() == pytest.approx((1.5 * math.log(2) + math.log(3)) / 2, abs=1e-6)
    image, batch = perplexities(torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]))
    assert image.item() == pytest.approx(2.0) and batch.item() == pytest.approx(4.0)


def test_method_loss_is_the_composition_of_its_parts():
    m = obow(levels=2).eval()  # eval: running BatchNorm statistics and no vocabulary update, so it can be replayed
    batch = multicrop_batch(n=6, n_local=2)
    torch.manual_seed(5)
    out = m(batch)
    assert out["features"].shape == (12, m.backbone.dim) and out["features"].requires_grad
    with torch.no_grad():
        torch.manual_seed(5)
        maps = m.teacher.forward_maps(m.teacher_input(batch))
        assert [t.shape[1] for t in maps[-2:]] == [16, 32]
        expected = []
        for vocab, head, fmap in zip(m.vocabularies, m.predictors, maps[-2:]):
            y = vocab.encode(fmap, m.inv_delta, update=False)  # (6, 32)
            g = head(m.backbone(torch.cat(batch.views[:2])), vocab.words).view(2, 6, -1)
            loc = head(m.backbone(torch.cat(batch.views[2:])), vocab.words).view(2, 6, -1)
            expected.append(bow_loss(g, y) + bow_loss(loc, y))
    assert out["loss"].item() == pytest.approx(sum(expected).item() / 2, rel=1e-6)


def test_teacher_input_is_the_flipped_normalized_image():
    m = obow()
    m.prepare(TrainData(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), None, MEAN, STD))
    batch = multicrop_batch(n=16)
    torch.manual_seed(0)
    x = m.teacher_input(batch)
    plain = (batch.samples.float() / 255 - MEAN[0]) / STD[0]
    flipped = [torch.allclose(x[i], plain[i].flip(2)) for i in range(16)]
    kept = [torch.allclose(x[i], plain[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 16


# ---------------------------------------------------------------- errors, precision

def test_rejects_backbones_without_maps_and_bad_levels():
    vit = build_backbone("vit_tiny", in_channels=1, image_size=28, patch_size=7, dim=32, depth=1, heads=2)
    with pytest.raises(ConfigError, match="forward_maps"):
        registry.get("method", "obow")(vit)
    with pytest.raises(ConfigError, match="levels=4"):
        obow(levels=4)
    with pytest.raises(ConfigError, match="inv_delta"):
        obow(inv_delta=0.0)


def test_float32_loss_under_bf16_autocast():
    m = obow()
    batch = multicrop_batch(n=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m.predictors[0](m.backbone(batch.views[0]), m.vocabularies[0].words).dtype == torch.float32
        out = m(batch)
    assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32
    out["loss"].backward()
    assert all(p.grad is not None for p in m.backbone.parameters())
    assert m.vocabularies[0].words.dtype == torch.float32


# ---------------------------------------------------------------- state

def test_state_dict_round_trip_reproduces_the_next_loss():
    a = obow()
    opt = torch.optim.SGD([p for p in a.parameters() if p.requires_grad], lr=0.1)
    initial_words = a.vocabularies[0].words.clone()
    for step in range(3):
        torch.manual_seed(step)
        opt.zero_grad()
        a(multicrop_batch(seed=step))["loss"].backward()
        opt.step()
        a.on_step_end((step + 1) / 10)
    state = a.state_dict()
    assert {"vocabularies.0.words", "vocabularies.0.mean_min_distance"} <= state.keys()
    assert not torch.equal(state["vocabularies.0.words"][:24], initial_words[:24])  # 3 pushes of 8 words
    assert torch.equal(state["vocabularies.0.words"][24:], initial_words[:8])
    torch.manual_seed(123)
    b = obow()
    b.load_state_dict(state)
    batch = multicrop_batch(seed=9)
    torch.manual_seed(9)
    loss_a = a(batch)["loss"].item()
    torch.manual_seed(9)
    loss_b = b(batch)["loss"].item()
    assert loss_a == loss_b
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), key  # the same vocabulary and running mean afterwards too


def tiny(data, out, steps=6):
    return C.load(overrides=[f"data.name={data}", f"out={out}", "method.name=obow", f"train.steps={steps}",
                             "train.batch_size=64", "train.checkpoint_every=3", "train.progress=false",
                             "backbone.width=8", "method.num_words=96", "views.n_local=2", "optim.warmup_steps=2"])


def test_resume_is_bit_identical(fmnist_npz, tmp_path):
    sa = assert_resume_bit_identical(lambda out: tiny(fmnist_npz, out), tmp_path)
    assert sa["vocabularies.0.mean_min_distance"] != 0.5  # the running mean moved
    assert sa["vocabularies.0.words"].shape == (96, 32)
