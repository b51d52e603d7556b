"""Corruption robustness (evaluation/robustness.py) and the universal adversarial perturbation
(evaluation/adversarial.py): corruptions against hand computations, the protocols on real
Fashion-MNIST with a briefly trained convnet6 (width 8) and a linear probe fitted on clean features."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError
from selfsup.evaluation import adversarial as adv
from selfsup.evaluation import robustness as rb

from .conftest import fmnist_arrays


def _images(n=8, c=1, size=28, seed=0):
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.fixture(scope="module")
def fmnist():
    x, y = fmnist_arrays(800)
    xt, yt = fmnist_arrays(300, "test")
    return (torch.from_numpy(x)[:, None], torch.from_numpy(y), torch.from_numpy(xt)[:, None], torch.from_numpy(yt))


@pytest.fixture(scope="module")
def trained(fmnist):
    """convnet6 (w=8) trained 3 supervised epochs on 500 images (a random one barely reacts to
    8/255: its features all point one way), and a linear probe on its clean features."""
    from selfsup.backbones.base import build_backbone
    from selfsup.encoder import Encoder
    from selfsup.evaluation.features import extract_features
    from selfsup.evaluation.linear import linear_probe

    x, y, xt, yt = fmnist
    torch.manual_seed(0)
    encoder = Encoder(build_backbone("convnet6", in_channels=1, image_size=28, width=8), [0.286], [0.353], "image")
    head = nn.Linear(encoder.dim, 10)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        order = torch.randperm(500, generator=generator)
        for start in range(0, 500, 50):
            index = order[start:start + 50]
            loss = F.cross_entropy(head(encoder(x[index])), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    encoder.eval()
    train_f, test_f = extract_features(encoder, x[:500]), extract_features(encoder, xt)
    _, model = linear_probe(train_f, y[:500], test_f, yt, lambdas=(1e-3,), return_model=True)
    return encoder, model.predict


# ---- corruptions -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", rb.CORRUPTIONS)
def test_corrupt_contract(kind):
    for images in (_images(4, 1, 28), _images(3, 3, 32, seed=1)):
        for severity in range(1, 6):
            out = rb.corrupt(images, kind, severity, seed=0)
            assert out.dtype == torch.uint8 and out.shape == images.shape
            assert torch.equal(out, rb.corrupt(images, kind, severity, seed=0))  # deterministic per seed
    random_kind = kind in ("gaussian_noise", "occlusion")
    other_seed = rb.corrupt(images, kind, 3, seed=1)
    assert torch.equal(other_seed, rb.corrupt(images, kind, 3, seed=0)) != random_kind


def test_identity_cases():
    x = _images(4, 2, 12).float() / 255
    g = torch.Generator().manual_seed(0)
    assert torch.equal(rb.gaussian_noise(x, 0.0, g), x)
    assert torch.allclose(rb.contrast(x, 1.0), x, atol=1e-6)
    assert torch.equal(rb.pixelate(x, 1), x)
    assert torch.equal(rb.occlusion(x, 0.0, g), x)
    constant = torch.full((2, 3, 9, 9), 77, dtype=torch.uint8)  # no structure to blur, pixelate, occlude or flatten
    for kind in ("gaussian_blur", "contrast", "pixelate", "occlusion"):
        for severity in range(1, 6):
            assert torch.equal(rb.corrupt(constant, kind, severity), constant), (kind, severity)


@pytest.mark.parametrize("kind", rb.CORRUPTIONS)
def test_severity_is_monotone_on_real_images(fmnist, kind):
    x = fmnist[0][:64]
    change = [(rb.corrupt(x, kind, s).float() - x.float()).abs().mean().item() for s in range(1, 6)]
    assert change[0] > 0 and all(a < b for a, b in zip(change, change[1:])), change


def test_blur_matches_direct_convolution():
    x = torch.rand(1, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    sigma = 1.0
    taps = rb.gaussian_kernel(sigma).double()
    r = len(taps) // 2  # 3 taps each side, wider than the 5 px image: replicate padding must extend the edge
    expected = torch.zeros(1, 2, 5, 6, dtype=torch.float64)
    for c in range(2):
        for i in range(5):
            for j in range(6):
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        pixel = x[0, c, min(max(i + di, 0), 4), min(max(j + dj, 0), 5)].double()
                        expected[0, c, i, j] += taps[di + r] * taps[dj + r] * pixel
    assert torch.allclose(rb.gaussian_blur(x, sigma).double(), expected, atol=1e-6)
    assert abs(taps.sum().item() - 1) < 1e-6 and len(taps) == 7


def test_pixelate_by_hand():
    image = torch.tensor([[0, 2, 4, 6], [2, 4, 6, 8], [10, 10, 20, 20], [30, 30, 40, 40]], dtype=torch.uint8)
    x = image.view(1, 1, 4, 4)
    blocks = torch.tensor([[2, 2, 6, 6], [2, 2, 6, 6], [20, 20, 30, 30], [20, 20, 30, 30]], dtype=torch.uint8)
    assert torch.equal(rb.corrupt(x, "pixelate", 1)[0, 0], blocks)  # severity 1 = 2x2 blocks
    # 3x3 blocks on 4x4: the cells cut by the edge average what they hold (9, 3, 3 and 1 pixels)
    cut = rb.pixelate(x.float(), 3)[0, 0]
    tl, tr, bl, br = 58 / 9, (6 + 8 + 20) / 3, (30 + 30 + 40) / 3, 40.0
    expected = torch.tensor([[tl, tl, tl, tr], [tl, tl, tl, tr], [tl, tl, tl, tr], [bl, bl, bl, br]])
    assert torch.allclose(cut, expected, atol=1e-5)


def test_contrast_formula():
    x = _images(2, 3, 8, seed=3)
    unit = x.double() / 255
    mean = unit.mean(dim=(2, 3), keepdim=True)
    for severity, c in enumerate(rb.SEVERITIES["contrast"], start=1):
        expected = ((unit - mean) * c + mean).clamp(0, 1) * 255
        # the output is that value rounded (float32 arithmetic may round an exact .5 tie either way)
        assert (rb.corrupt(x, "contrast", severity).double() - expected).abs().max() <= 0.5 + 1e-3


def test_occlusion_is_one_square_of_the_mean():
    board = ((torch.arange(28)[:, None] + torch.arange(28)[None, :]) % 2 * 200).to(torch.uint8)  # mean 100
    x = board.expand(6, 1, 28, 28).contiguous()
    for severity, fraction in enumerate(rb.SEVERITIES["occlusion"], start=1):
        out = rb.corrupt(x, "occlusion", severity, seed=severity)
        side = round(fraction * 28)
        for changed, image in zip(out != x, out):
            rows, cols = changed[0].nonzero().unbind(1)
            assert changed.sum() == side * side
            assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
            assert (image[changed] == 100).all()


def test_noise_strength():
    grey = torch.full((4, 1, 28, 28), 128, dtype=torch.uint8)
    change = rb.corrupt(grey, "gaussian_noise", 3, seed=0).float() - 128
    assert abs(change.std().item() - 0.12 * 255) < 1.5 and abs(change.mean().item()) < 1.5


def test_corrupt_rejects_bad_input():
    x = _images(2)
    with pytest.raises(ConfigError, match="Did you mean 'gaussian_blur'"):
        rb.corrupt(x, "gausian_blur", 1)
    for severity in (0, 6, 2.5, True):
        with pytest.raises(ConfigError, match="severity"):
            rb.corrupt(x, "contrast", severity)
    with pytest.raises(ConfigError, match="uint8"):
        rb.corrupt(x.float(), "contrast", 1)


# ---- robustness protocol -----------------------------------------------------------------------

class MeanIntensity(nn.Module):
    """Features (B, 1): the mean pixel, which every corruption here (nearly) preserves."""

    def forward(self, x):
        return x.float().mean(dim=(1, 2, 3))[:, None]


def test_invariant_features_and_perfect_probe_give_no_drop():
    levels = torch.tensor([40.0, 128.0, 210.0])
    labels = torch.arange(30) % 3
    images = levels[labels].view(30, 1, 1, 1).expand(30, 1, 28, 28).to(torch.uint8)

    def nearest_level(features):
        return (features - levels).abs().argmin(dim=1)

    result = rb.robustness(MeanIntensity(), nearest_level, images, labels)
    assert result["clean"] == 1.0 and result["mean_corrupted"] == 1.0 and result["relative_drop"] == 0.0
    expected = {"clean", "mean_corrupted", "relative_drop", *(f"{k}_mean" for k in rb.CORRUPTIONS),
                *(f"{k}@{s}" for k in rb.CORRUPTIONS for s in range(1, 6))}
    assert set(result) == expected


def test_robustness_on_real_data(fmnist, trained):
    # Measured (convnet6 w=8, 3 supervised epochs on 500 images, 300 test images): clean 0.73;
    # gaussian_noise@1..5 0.60 0.42 0.36 0.32 0.23, occlusion@1..5 0.70 0.66 0.57 0.49 0.28;
    # relative drop over these two kinds 0.37.
    encoder, predict = trained
    _, _, xt, yt = fmnist
    result = rb.robustness(encoder, predict, xt, yt, kinds=("gaussian_noise", "occlusion"))
    print({k: round(v, 3) for k, v in result.items()})
    assert result["clean"] > 0.6
    assert result["gaussian_noise@5"] < result["clean"] - 0.05 and result["occlusion@5"] < result["clean"] - 0.05
    assert result["mean_corrupted"] == pytest.approx((result["gaussian_noise_mean"] + result["occlusion_mean"]) / 2)
    assert result["relative_drop"] == pytest.approx(1 - result["mean_corrupted"] / result["clean"])
    from selfsup.evaluation.features import extract_features

    given = rb.robustness(encoder, predict, xt, yt, kinds=("occlusion",), severities=(1,),
                          clean_features=extract_features(encoder, xt))  # the caller's cached features
    assert given["clean"] == result["clean"] and given["occlusion@1"] == result["occlusion@1"]
    with pytest.raises(ConfigError, match="Did you mean 'contrast'"):
        rb.robustness(encoder, predict, xt, yt, kinds=("contrats",))


# ---- universal adversarial perturbation --------------------------------------------------------

def _displacement(encoder, images, delta):
    from selfsup.evaluation.features import extract_features

    clean = extract_features(encoder, images)
    moved = extract_features(encoder, adv.apply_perturbation(images, delta))
    return (1 - F.cosine_similarity(clean, moved, dim=1)).mean().item()


def test_universal_perturbation_budget_and_displacement(fmnist, trained):
    # Measured: 1 - cos on 300 held-out test images 0.059 for the attack, 0.033 for random +-eps signs.
    encoder, _ = trained
    x, _, xt, _ = fmnist
    eps = 8 / 255
    delta = adv.universal_perturbation(encoder, x[500:756], eps=eps, steps=10, batch_size=128, seed=0)
    assert delta.shape == (1, 28, 28) and delta.dtype == torch.float32
    assert delta.abs().max() <= eps + 1e-7 and (delta.abs() > 0.9 * eps).float().mean() > 0.5
    perturbed = adv.apply_perturbation(xt, delta)
    assert perturbed.min() >= 0 and perturbed.max() <= 1
    assert (perturbed - xt.float() / 255).abs().max() <= eps + 1e-6
    random_sign = eps * (torch.randint(0, 2, delta.shape, generator=torch.Generator().manual_seed(5)) * 2.0 - 1)
    attack, noise = _displacement(encoder, xt, delta), _displacement(encoder, xt, random_sign)
    print(f"displacement attack {attack:.4f} random sign {noise:.4f}")
    assert attack > 1.5 * noise


def test_universal_perturbation_leaves_the_encoder_alone():
    from selfsup.backbones.base import build_backbone
    from selfsup.encoder import Encoder

    torch.manual_seed(1)
    encoder = Encoder(build_backbone("convnet6", in_channels=1, image_size=28, width=4), [0.286], [0.353], "image")
    encoder.train()  # a caller's train mode: the attack must still run in eval mode (BN stats untouched)
    first = next(encoder.parameters())
    first.requires_grad_(False)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    flags = [p.requires_grad for p in encoder.parameters()]
    images = _images(40, 1, 28, seed=2)
    a = adv.universal_perturbation(encoder, images, steps=3, batch_size=16, seed=4)
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in encoder.parameters()] == flags and encoder.training
    assert all(p.grad is None for p in encoder.parameters())
    assert torch.equal(a, adv.universal_perturbation(encoder, images, steps=3, batch_size=16, seed=4))
    assert not torch.equal(a, adv.universal_perturbation(encoder, images, steps=3, batch_size=16, seed=5))
    hf = adv.universal_perturbation(encoder, images, steps=3, batch_size=16, seed=4, high_frequency=10.0)
    assert hf.abs().max() <= 8 / 255 + 1e-7 and torch.isfinite(hf).all()


def test_high_pass():
    assert adv.high_pass(torch.full((2, 1, 8, 8), 0.3)).abs().max() < 1e-6
    board = ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2).float().view(1, 1, 8, 8) - 0.5
    assert torch.allclose(adv.high_pass(board), board, atol=1e-6)  # the highest frequency passes whole


def test_adversarial_drop_on_real_data(fmnist, trained):
    # Measured: clean 0.73, random_sign 0.64, adversarial 0.54 (feature cosine 0.94 vs 0.97).
    encoder, predict = trained
    x, _, xt, yt = fmnist
    result = adv.adversarial_drop(encoder, predict, x[500:756], xt, yt, steps=10, batch_size=128)
    print({k: round(v, 3) for k, v in result.items()})
    assert result["adversarial"] < result["random_sign"] - 0.03
    assert result["random_sign"] <= result["clean"] + 0.02
    assert result["drop"] == pytest.approx(result["clean"] - result["adversarial"])
    assert result["feature_cosine"] < result["random_sign_cosine"]


def test_adversarial_rejects_bad_arguments():
    encoder = MeanIntensity()
    for kwargs in ({"eps": 0}, {"eps": 2.0}, {"steps": 0}, {"step_size": -1.0}):
        with pytest.raises(ConfigError):
            adv.universal_perturbation(encoder, _images(4), **kwargs)
    with pytest.raises(ConfigError, match="images"):
        adv.universal_perturbation(encoder, _images(4)[0])
