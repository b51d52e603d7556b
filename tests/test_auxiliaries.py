"""Auxiliary objectives: the framework (attach, weights, logs, state, trainer + resume) and the two
auxiliaries, ScatSimCLR's pretext tasks and augmentation-aware prediction, on real images."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import yaml

from selfsup import auxiliaries, registry
from selfsup import config as C
from selfsup.auxiliaries import Auxiliary
from selfsup.auxiliaries.augaware import GROUPS, column_losses, standardize, targets
from selfsup.auxiliaries.pretext import max_hamming_permutations, rotate, shuffle_tiles
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError
from selfsup.methods.base import Batch
from selfsup.views import ImageViews, fmnist_views, simclr_views
from tests.conftest import assert_resume_bit_identical, fmnist_arrays

MEAN, STD = [0.286], [0.353]
SMALL = {"simclr": {"hidden_dim": 128, "out_dim": 64}, "byol": {"hidden_dim": 128, "pred_hidden_dim": 128, "out_dim": 64}}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """The first 64 Fashion-MNIST train images, uint8 (64, 1, 28, 28)."""
    return torch.from_numpy(fmnist_arrays(64)[0]).unsqueeze(1)


def build(name: str = "simclr", aux=(), seed: int = 0):
    torch.manual_seed(seed)
    method = registry.get("method", name)(build_backbone("convnet6", in_channels=1, image_size=28, width=8),
                                          **SMALL.get(name, {}))
    return auxiliaries.attach(method, list(aux))


def draw(images: torch.Tensor, n: int = 32, seed: int = 0):
    """Two real fmnist-protocol views of the first n images and their parameters."""
    return ImageViews(fmnist_views(), MEAN, STD)(images[:n], torch.Generator().manual_seed(seed))


def fresh(views, params, images) -> Batch:
    """A new Batch of copies (auxiliaries change views and params in place)."""
    return Batch([v.clone() for v in views], [dict(p) for p in params], images[:len(views[0])], None,
                 torch.arange(len(views[0])), 0.0)


def step(method, batch: Batch) -> dict:
    auxiliaries.before(method, batch)
    return auxiliaries.add_losses(method, batch, method(batch))


# ---------------------------------------------------------------- registry and framework

@pytest.mark.parametrize("name, weight", [("pretext", 0.3), ("augaware", 1.0)])
def test_registered_with_paper_and_weight(name, weight):
    cls = registry.get("auxiliary", name)
    assert issubclass(cls, Auxiliary) and "arXiv:" in cls.paper and len(cls.__doc__) > 500
    assert cls.default_weight == weight and cls.needs == ("features",)
    assert build(aux=[{"name": name}]).aux_weights == {name: weight}  # the default when none is given


def test_attach_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown auxiliary 'pretex'. Did you mean 'pretext'"):
        build(aux=[{"name": "pretex"}])
    with pytest.raises(ConfigError, match="has no option 'task'. Did you mean 'tasks'"):
        build(aux=[{"name": "pretext", "task": ["rotation"]}])
    with pytest.raises(ConfigError, match="must be a mapping with a 'name'"):
        build(aux=["pretext"])
    with pytest.raises(ConfigError, match="listed twice"):
        build(aux=[{"name": "augaware"}, {"name": "augaware", "weight": 0.5}])
    for weight in (-1, "heavy", None, float("nan")):
        with pytest.raises(ConfigError, match="weight must be >= 0"):
            build(aux=[{"name": "augaware", "weight": weight}])
    with pytest.raises(ConfigError, match="tasks"):
        build(aux=[{"name": "pretext", "tasks": ["spin"]}])
    with pytest.raises(ConfigError, match="n_permutations=30 is out of range for a 2x2 grid"):
        build(aux=[{"name": "pretext", "tasks": ["jigsaw"], "jigsaw_grid": 2, "n_permutations": 30}])
    with pytest.raises(ConfigError, match="target='relative'"):
        build(aux=[{"name": "augaware", "target": "relative"}])
    with pytest.raises(ConfigError, match="groups"):
        build(aux=[{"name": "augaware", "groups": ["crop", "rotation"]}])


@pytest.fixture
def needs_embeddings():
    """A throwaway auxiliary that reads the method's embeddings, registered for one test."""

    class NeedsEmbeddings(Auxiliary):
        needs = ("embeddings",)

        def forward(self, batch, out):
            return {"loss": out["embeddings"].pow(2).mean()}

    registry.register("auxiliary", "_needs_embeddings")(NeedsEmbeddings)
    yield "_needs_embeddings"
    del registry._REGISTRY["auxiliary"]["_needs_embeddings"]


def test_attach_refuses_methods_without_the_outputs(needs_embeddings):
    vit = build_backbone("vit_tiny", in_channels=1, image_size=28, patch_size=7, dim=32, depth=1, heads=2)
    mae = registry.get("method", "mae")(vit, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    with pytest.raises(ConfigError, match="needs the method's embeddings, which method 'mae' does not provide") as info:
        auxiliaries.attach(mae, [{"name": needs_embeddings}])
    assert "joint-embedding method" in info.value.fix
    for name in ("augaware", "pretext"):
        with pytest.raises(ConfigError, match=f"auxiliary '{name}' needs the method's features.*'mae'"):
            auxiliaries.attach(mae, [{"name": name}])
    dino = registry.get("method", "dino")(build_backbone("convnet6", in_channels=1, image_size=28, width=8))
    with pytest.raises(ConfigError, match="embeddings.*'dino'"):  # DINO returns features only
        auxiliaries.attach(dino, [{"name": needs_embeddings}])
    auxiliaries.attach(dino, [{"name": "augaware"}])  # ... which is what augaware reads


def test_weight_is_applied_exactly_and_logs_are_detached(images):
    method = build(aux=[{"name": "augaware", "weight": 0.25}])
    batch = fresh(*draw(images), images)
    out = method(batch)
    base = out["loss"].detach().clone()
    alone = method.auxiliaries["augaware"](batch, out)["loss"].detach()  # linear heads: deterministic
    out = auxiliaries.add_losses(method, batch, out)
    assert torch.equal(out["loss"].detach(), base + 0.25 * alone)
    assert out["loss"].requires_grad
    assert torch.equal(out["augaware_loss"], alone)
    logs = {k: v for k, v in out.items() if k.startswith("augaware_")}
    assert {"augaware_loss", "augaware_crop_err", "augaware_flip_acc", "augaware_color_err"} <= logs.keys()
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())


def test_aux_state_is_in_the_method_and_its_loss_reaches_the_backbone(images):
    method = build(aux=[{"name": "pretext", "tasks": ["rotation", "jigsaw"], "jigsaw_grid": 2, "hidden_dim": 32},
                        {"name": "augaware"}])
    state = method.state_dict()
    assert "auxiliaries.pretext.heads.rotation.0.weight" in state and "auxiliaries.augaware.heads.crop.weight" in state
    assert torch.equal(state["auxiliaries.pretext.permutations"], max_hamming_permutations(2, 24))
    assert not any(k.startswith("auxiliaries.pretext.backbone") for k in state)  # the backbone is not duplicated
    params = {id(p) for p in method.parameters()}
    aux_params = [p for p in method.auxiliaries.parameters()]
    assert aux_params and all(id(p) in params for p in aux_params)  # the trainer's optimizer sees them

    out = step(method, fresh(*draw(images), images))
    method.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert all(p.grad is not None for p in aux_params)  # inactive columns get zeros, not None

    # The auxiliary's loss alone reaches the backbone.
    for name in ("pretext", "augaware"):
        batch = fresh(*draw(images), images)
        auxiliaries.before(method, batch)
        terms = method.auxiliaries[name](batch, method(batch))
        method.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
        heads = [p.grad for p in method.auxiliaries[name].heads.parameters()]
        assert all(g is not None for g in heads) and any(g.abs().sum() > 0 for g in heads), name


def tiny(data, out, aux: str, steps: int = 4):
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"train.steps={steps}", "train.batch_size=32",
                             "train.checkpoint_every=2", "train.progress=false", "backbone.width=8",
                             "method.hidden_dim=64", "method.out_dim=32", "optim.warmup_steps=2", f"method.aux={aux}"])


def test_train_with_aux_resumes_bit_identically(fmnist_npz, tmp_path):
    aux = ("[{name: pretext, tasks: [rotation, jigsaw], jigsaw_grid: 2, hidden_dim: 32}, "
           "{name: augaware, weight: 0.5, target: difference, hidden_dim: 32}]")
    state = assert_resume_bit_identical(lambda out: tiny(fmnist_npz, out, aux), tmp_path, steps=4, stop=2)
    assert "auxiliaries.pretext.heads.jigsaw.6.bias" in state and "auxiliaries.augaware.heads.crop.3.weight" in state
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    for key in ("pretext_loss", "pretext_rotation_acc", "pretext_jigsaw_loss", "augaware_loss", "augaware_crop_err"):
        assert math.isfinite(last[key]), key
    saved = C.from_dict(yaml.safe_load((tmp_path / "full" / "config.yaml").read_text()))
    assert saved.method.aux[1] == {"name": "augaware", "weight": 0.5, "target": "difference", "hidden_dim": 32}


@pytest.mark.parametrize("method_name", ["simclr", "byol"])
@pytest.mark.parametrize("aux", [{"name": "pretext", "tasks": ["rotation", "jigsaw"], "jigsaw_grid": 2, "hidden_dim": 64},
                                 {"name": "augaware", "target": "difference", "hidden_dim": 64}],
                         ids=["pretext", "augaware"])
def test_learns_on_a_fixed_batch(method_name, aux, images):
    method = build(method_name, aux=[aux])
    views, params = draw(images, n=32)
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=2e-3)
    losses, aux_losses = [], []
    for i in range(8):
        torch.manual_seed(i)  # as the trainer does
        out = step(method, fresh(views, params, images))
        assert torch.isfinite(out["loss"]), out["loss"]
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizer.step()
        method.on_step_end((i + 1) / 8)
        auxiliaries.on_step_end(method, (i + 1) / 8)
        losses.append(out["loss"].item())
        aux_losses.append(out[f"{aux['name']}_loss"].item())
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses
    if aux["name"] == "augaware":  # its targets are the same on a fixed batch, so it must fit them
        assert np.mean(aux_losses[-3:]) < 0.9 * np.mean(aux_losses[:3]), aux_losses


def test_pretext_heads_learn_the_transforms(images):
    """With the same labels at every step (same seed), both pretext losses fall: the copies reach
    the heads and the backbone with their gradients."""
    method = build(aux=[{"name": "pretext", "tasks": ["rotation", "jigsaw"], "jigsaw_grid": 2, "hidden_dim": 64,
                         "dropout": 0.0}])
    aux = method.auxiliaries["pretext"]
    views, params = draw(images, n=32)
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-2)
    rotation, jigsaw = [], []
    for _ in range(8):
        torch.manual_seed(0)
        batch = fresh(views, params, images)
        aux.before(batch)
        terms = aux(batch, method(batch))
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        rotation.append(terms["rotation_loss"].item())
        jigsaw.append(terms["jigsaw_loss"].item())
    assert np.mean(rotation[-3:]) < 0.95 * np.mean(rotation[:3]), rotation
    assert np.mean(jigsaw[-3:]) < 0.95 * np.mean(jigsaw[:3]), jigsaw


@pytest.mark.parametrize("aux", [{"name": "pretext", "tasks": ["rotation", "jigsaw"], "jigsaw_grid": 2, "hidden_dim": 32},
                                 {"name": "augaware", "hidden_dim": 32}], ids=["pretext", "augaware"])
def test_state_dict_round_trip_gives_the_same_next_loss(aux, images):
    views, params = draw(images, n=16)
    method = build(aux=[aux], seed=0)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.05)
    torch.manual_seed(0)
    step(method, fresh(views, params, images))["loss"].backward()
    optimizer.step()
    copy = build(aux=[aux], seed=1)
    copy.load_state_dict(method.state_dict())
    torch.manual_seed(1)
    a = step(method, fresh(views, params, images))["loss"]
    torch.manual_seed(1)
    b = step(copy, fresh(views, params, images))["loss"]
    assert torch.equal(a, b)


# ---------------------------------------------------------------- pretext: transforms

def manual_shuffle(image: torch.Tensor, order: list[int], grid: int) -> torch.Tensor:
    """One image (C, H, W): tile order[p] goes to position p, with plain loops."""
    out = image.clone()
    th, tw = image.shape[1] // grid, image.shape[2] // grid
    for p in range(grid * grid):
        r, c = divmod(p, grid)
        sr, sc = divmod(order[p], grid)
        out[:, r * th:(r + 1) * th, c * tw:(c + 1) * tw] = image[:, sr * th:(sr + 1) * th, sc * tw:(sc + 1) * tw]
    return out


def test_rotate_matches_rot90_per_image():
    x = torch.randn(7, 2, 5, 5)
    k = torch.tensor([0, 1, 2, 3, 3, 1, 0])
    expected = torch.stack([torch.rot90(x[i], int(k[i]), dims=(1, 2)) for i in range(7)])
    assert torch.equal(rotate(x, k), expected)
    # 90 degrees counterclockwise: the top-right corner moves to the top-left
    corner = torch.zeros(1, 1, 3, 3)
    corner[0, 0, 0, 2] = 1
    assert rotate(corner, torch.tensor([1]))[0, 0, 0, 0] == 1


@pytest.mark.parametrize("grid, size", [(2, 8), (3, 7), (3, 9)])
def test_shuffle_tiles_matches_manual_tiles(grid, size):
    g = torch.Generator().manual_seed(grid * size)
    x = torch.randn(5, 2, size, size, generator=g)
    order = torch.stack([torch.randperm(grid * grid, generator=g) for _ in range(5)])
    expected = torch.stack([manual_shuffle(x[i], order[i].tolist(), grid) for i in range(5)])
    assert torch.equal(shuffle_tiles(x, order, grid), expected)
    identity = torch.arange(grid * grid).expand(5, -1)
    assert torch.equal(shuffle_tiles(x, identity, grid), x)


def test_permutation_sets_are_fixed_and_far_apart():
    p = max_hamming_permutations(3, 35)
    assert p.shape == (35, 9) and torch.equal(p, max_hamming_permutations(3, 35))
    assert all(sorted(row) == list(range(9)) for row in p.tolist())
    distance = (p[:, None] != p[None]).sum(-1) + 100 * torch.eye(35, dtype=torch.long)
    assert distance.min() >= 6  # every pair of classes differs in at least 6 of 9 tiles
    assert len({tuple(r) for r in max_hamming_permutations(2, 24).tolist()}) == 24  # 2x2: all 4! of them
    assert not torch.equal(max_hamming_permutations(3, 35, seed=1), p)


def test_views_mode_transforms_every_view_and_records_labels(images):
    method = build(aux=[{"name": "pretext", "tasks": ["rotation", "jigsaw"], "apply_to": "views", "jigsaw_grid": 2}])
    aux = method.auxiliaries["pretext"]
    views, params = draw(images, n=24)
    batch = fresh(views, params, images)
    torch.manual_seed(0)
    aux.before(batch)
    for v in range(2):
        rot, jig = batch.params[v]["rotation"], batch.params[v]["jigsaw"]
        assert rot.dtype == jig.dtype == torch.int64 and rot.shape == jig.shape == (24,)
        assert set(rot.tolist()) == {0, 1, 2, 3} and jig.max() < 24 and len(set(jig.tolist())) > 5
        for i in range(24):
            expected = torch.rot90(manual_shuffle(views[v][i], aux.permutations[jig[i]].tolist(), 2), int(rot[i]), dims=(1, 2))
            assert torch.equal(batch.views[v][i], expected), (v, i)
    assert "crop" in batch.params[0]  # the view generator's parameters stay


def test_copies_mode_keeps_the_views_and_encodes_transformed_copies(images):
    method = build(aux=[{"name": "pretext", "tasks": ["rotation", "jigsaw"], "jigsaw_grid": 2}])
    aux = method.auxiliaries["pretext"]
    views, params = draw(images, n=24)
    batch = fresh(views, params, images)
    torch.manual_seed(0)
    aux.before(batch)
    assert all(torch.equal(a, b) for a, b in zip(batch.views, views))
    assert {"rotation_copy", "jigsaw_copy"} <= batch.params[0].keys() and "rotation" not in batch.params[0]
    copies, labels = aux.copies(batch)
    assert copies.shape == (48, 1, 28, 28)
    for i in range(24):
        assert torch.equal(copies[i], torch.rot90(views[0][i], int(labels["rotation"][i]), dims=(1, 2)))
        order = aux.permutations[labels["jigsaw"][i]].tolist()
        assert torch.equal(copies[24 + i], manual_shuffle(views[0][i], order, 2))


# ---------------------------------------------------------------- pretext: loss

def set_logits(head: torch.nn.Sequential, logits: list[float]) -> None:
    """Make a head output the same logits for every input (last layer: zero weight, bias = logits)."""
    with torch.no_grad():
        head[-1].weight.zero_()
        head[-1].bias.copy_(torch.tensor(logits))


@pytest.mark.parametrize("apply_to", ["views", "copies"])
def test_pretext_loss_against_hand_computed_value(apply_to, images):
    method = build(aux=[{"name": "pretext", "tasks": ["rotation", "jigsaw"], "jigsaw_grid": 2, "n_permutations": 3,
                         "apply_to": apply_to, "dropout": 0.0}])
    aux = method.auxiliaries["pretext"]
    set_logits(aux.heads["rotation"], [1.0, 2.0, 3.0, 4.0])
    set_logits(aux.heads["jigsaw"], [0.0, 0.0, math.log(2.0)])
    views, params = draw(images, n=2)
    batch = fresh(views, params, images)
    if apply_to == "views":  # labels of view 0 then view 1 (B = 2 each)
        rot, jig = [0, 3, 1, 3], [2, 0, 1, 2]
        for v in range(2):
            batch.params[v].update(rotation=torch.tensor(rot[2 * v:2 * v + 2]), jigsaw=torch.tensor(jig[2 * v:2 * v + 2]))
    else:
        rot, jig = [3, 2], [2, 2]
        batch.params[0].update(rotation_copy=torch.tensor(rot), jigsaw_copy=torch.tensor(jig))
    terms = aux(batch, {"features": torch.randn(4, method.backbone.dim)})
    # rotation: cross-entropy of logits (1, 2, 3, 4) = log(e + e^2 + e^3 + e^4) - logit of the label
    lse = math.log(sum(math.exp(i) for i in (1, 2, 3, 4)))
    rotation = np.mean([lse - (k + 1) for k in rot])
    # jigsaw: probabilities (1/4, 1/4, 1/2)
    jigsaw = np.mean([-math.log(0.5 if k == 2 else 0.25) for k in jig])
    assert terms["rotation_loss"].item() == pytest.approx(rotation, rel=1e-6)
    assert terms["jigsaw_loss"].item() == pytest.approx(jigsaw, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(rotation + jigsaw, rel=1e-6)
    assert terms["rotation_acc"].item() == pytest.approx(np.mean([k == 3 for k in rot]))
    assert terms["jigsaw_acc"].item() == pytest.approx(np.mean([k == 2 for k in jig]))


# ---------------------------------------------------------------- augaware: targets and loss

NAMES = [c[0] for g in GROUPS for c in GROUPS[g]]
BINARY = torch.tensor([c[3] for g in GROUPS for c in GROUPS[g]])


def test_augaware_targets_match_the_view_parameters(images):
    _, params = draw(images, n=32)
    table = targets(params, "absolute")
    assert table.shape == (64, len(NAMES))
    col = {name: table[:, i] for i, name in enumerate(NAMES)}
    for v in range(2):
        rows, p = slice(32 * v, 32 * (v + 1)), params[v]
        assert torch.equal(col["crop_y"][rows], p["crop"][:, 0])
        cx = p["crop"][:, 1]
        assert torch.equal(col["crop_x"][rows], torch.where(p["flip"] > 0, 1 - cx, cx))  # mirrored on flipped views
        assert torch.equal(col["crop_h"][rows], p["crop"][:, 2]) and torch.equal(col["crop_w"][rows], p["crop"][:, 3])
        for name in ("flip", "jitter", "brightness", "contrast", "saturation", "hue", "grayscale", "blur_sigma", "solarize"):
            assert torch.equal(col[name][rows], p[name].float()), name
    assert set(params[0]["flip"].tolist()) == {0.0, 1.0}
    # grey images: saturation, hue and grayscale are identity; blur and solarize are off in this protocol
    target, active = standardize(table, BINARY)
    assert {n for n, a in zip(NAMES, active.tolist()) if a} == {"crop_y", "crop_x", "crop_h", "crop_w", "flip", "jitter",
                                                                "brightness", "contrast"}
    continuous = active & ~BINARY
    assert torch.allclose(target[:, continuous].mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(target[:, continuous].std(0, correction=0), torch.ones(6), atol=1e-5)
    assert torch.equal(target[:, BINARY], table[:, BINARY])

    diff = targets(params, "difference")  # AugSelf: rows (view 0 vs 1), then (view 1 vs 0)
    a, b = targets(params[:1], "absolute"), targets(params[1:], "absolute")
    cont = ~BINARY
    assert torch.equal(diff[:32, cont], a[:, cont] - b[:, cont]) and torch.equal(diff[32:, cont], b[:, cont] - a[:, cont])
    assert torch.equal(diff[:32, BINARY], (a[:, BINARY] == b[:, BINARY]).float())
    assert torch.equal(diff[32:, BINARY], diff[:32, BINARY])


def test_augaware_colour_parameters_are_active_for_rgb_views():
    g = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=g)
    config = dataclasses.replace(simclr_views(16), blur_p=0.5, solarize_p=0.3)
    _, params = ImageViews(config, [0.5] * 3, [0.25] * 3)(rgb, g)
    _, active = standardize(targets(params, "absolute"), BINARY)
    assert active.all()  # every parameter varies: all 13 columns count


def test_augaware_column_losses_against_hand_computed_values():
    pred = torch.tensor([[0.5, 0.0], [0.5, 2.0]])
    target = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])
    losses = column_losses(pred, target, torch.tensor([False, True]))
    assert losses[0].item() == pytest.approx((1.5**2 + 0.5**2) / 2)  # MSE
    assert losses[1].item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-2))) / 2)  # BCE of logits


def test_augaware_loss_against_hand_computed_value(images):
    method = build(aux=[{"name": "augaware"}])
    aux = method.auxiliaries["augaware"]
    with torch.no_grad():  # linear heads predicting 0 everywhere
        for head in aux.heads.values():
            head.weight.zero_()
            head.bias.zero_()
    views, params = draw(images, n=32)
    terms = aux(fresh(views, params, images), {"features": torch.randn(64, method.backbone.dim)})
    # Standardized targets have unit mean square, so predicting 0 costs 1 per continuous column; a
    # logit of 0 costs log 2 per binary column. Active: crop (4 continuous), flip, and colour's
    # jitter, brightness, contrast (saturation and hue are constant for grey images).
    expected = 1.0 + math.log(2) + (math.log(2) + 2.0) / 3
    assert terms["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["crop_err"].item() == pytest.approx(1.0, rel=1e-5)
    assert terms["color_err"].item() == pytest.approx(1.0, rel=1e-5)
    flips = torch.cat([params[0]["flip"], params[1]["flip"]])
    assert terms["flip_acc"].item() == pytest.approx((flips == 0).float().mean().item())  # logit 0 reads as "not flipped"
    assert "grayscale_acc" not in terms and "blur_err" not in terms  # inactive groups are not logged


def test_augaware_difference_needs_two_views(images):
    method = build(aux=[{"name": "augaware", "target": "difference"}])
    views, params = draw(images, n=8)
    with pytest.raises(ConfigError, match="two views"):
        method.auxiliaries["augaware"](fresh(views, params, images), {"features": torch.randn(8, method.backbone.dim)})
