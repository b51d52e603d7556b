"""Backbones and heads: every registered backbone passes the same smoke test; then per-family checks."""
from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch
from torch import nn

from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.backbones.resnet import BasicBlock
from selfsup.backbones.vit import sincos_pos_embed_2d
from selfsup.errors import ConfigError
from selfsup.heads import mlp

HAS_TIMM = importlib.util.find_spec("timm") is not None

# Small configurations so the smoke test runs in about a second per backbone on a CPU.
SMOKE = {
    "convnet4": dict(in_channels=1, image_size=28),
    "convnet6": dict(in_channels=1, image_size=28),
    "convnet8": dict(in_channels=1, image_size=28),
    "resnet18": dict(in_channels=3, image_size=32, stem="cifar"),
    "resnet50": dict(in_channels=3, image_size=32),
    "vit_tiny": dict(in_channels=1, image_size=28, patch_size=4, dim=64, depth=2, heads=2),
    "vit_small": dict(in_channels=3, image_size=32, patch_size=8, dim=32, depth=1, heads=4, pool="mean"),
    "timm": dict(in_channels=3, image_size=32, model="resnet18"),
    "scatnet": dict(in_channels=1, image_size=28, width=4, blocks=1),  # needs kymatio (selfsup[scatter])
    "mlp": dict(in_channels=5, cardinalities=[0, 3, 0, 4, 0], width=16, depth=2, embed_dim=4),  # a table backbone
    "ts2vec_cnn": dict(in_channels=2, length=30, hidden_dim=8, dim=16, depth=3),  # series backbones
    "resnet1d": dict(in_channels=2, length=30, width=8),
    "patchtst": dict(in_channels=2, length=30, patch_len=8, dim=16, depth=1, heads=2),
    "gin": dict(in_channels=5, edge_dim=3, hidden_dim=16, layers=2),  # graph backbones
    "gcn": dict(in_channels=5, hidden_dim=16, layers=2),
    "node_mlp": dict(in_channels=5, hidden_dims=[16, 16], out_dim=8),  # graphs, without message passing
}


def smoke_input(name: str) -> torch.Tensor:
    """Two inputs of the kind the backbone takes: images, table rows (numbers and category codes), two
    series (one padded), two small graphs."""
    cfg = SMOKE[name]
    kind = registry.get("backbone", name).modality
    if kind == "series":
        x = torch.randn(2, cfg["in_channels"], cfg["length"])
        x[1, :, 25:] = float("nan")  # a shorter series, padded
        return x
    if kind == "graph":
        from selfsup.data.graph import Graphs

        g = torch.Generator().manual_seed(0)
        edges = [torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), torch.tensor([[0, 1], [1, 0]])]
        return Graphs.from_lists([torch.randn(3, 5, generator=g), torch.randn(2, 5, generator=g)], edges,
                                 [torch.randn(4, 3, generator=g), torch.randn(2, 3, generator=g)])
    if kind == "table":
        x = torch.randn(2, cfg["in_channels"])
        for j, card in enumerate(cfg["cardinalities"]):
            if card:
                x[:, j] = torch.randint(0, card, (2,)).float()
        return x
    c, s = cfg["in_channels"], cfg["image_size"]
    return torch.randn(2, c, s, s)


def tiny_vit(**kwargs):
    return build_backbone("vit_tiny", **{**SMOKE["vit_tiny"], **kwargs})


@pytest.mark.parametrize("name", registry.names("backbone"))
def test_every_backbone_forward_backward_and_eval_determinism(name):
    if name == "timm" and not HAS_TIMM:
        pytest.skip("timm is not installed")
    if name == "scatnet" and importlib.util.find_spec("kymatio") is None:
        pytest.skip("kymatio is not installed")
    assert name in SMOKE, f"add a small smoke configuration for the new backbone {name!r}"
    torch.manual_seed(0)
    model = build_backbone(name, **SMOKE[name])
    x = smoke_input(name)
    out = model(x)
    assert out.shape == (2, model.dim)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    # The spec stored by build_backbone rebuilds the same architecture (what an exported encoder relies on).
    spec = dict(model.spec)
    rebuilt = build_backbone(spec.pop("name"), **spec)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_build_backbone_unknown_name_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="unknown backbone .resnett18.*Did you mean .resnet18."):
        build_backbone("resnett18", in_channels=3)
    with pytest.raises(ConfigError, match="has no option 'widht'.*Did you mean 'width'"):
        build_backbone("convnet6", in_channels=1, widht=16)


# ---- convnet


def test_convnet6_matches_benchmark_description():
    model = build_backbone("convnet6", in_channels=1)
    widths = [1, 32, 32, 64, 64, 128, 128]
    convs = sum(3 * 3 * c_in * c_out for c_in, c_out in zip(widths[:-1], widths[1:]))  # no bias
    bns = sum(2 * c for c in widths[1:])  # gamma and beta
    assert convs + bns == 286_880  # "about 0.29 M" in BENCHMARK.md
    assert sum(p.numel() for p in model.parameters()) == 286_880
    assert model.dim == 128
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == widths[1:]
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_convnet_variants_and_width():
    assert build_backbone("convnet4", in_channels=1).dim == 64
    assert build_backbone("convnet8", in_channels=1).dim == 256
    assert build_backbone("convnet6", in_channels=3, width=16).dim == 64
    with pytest.raises(ConfigError, match="image_size 4 is too small"):
        build_backbone("convnet8", in_channels=1, image_size=4)


def test_convnet_output_is_global_average_of_last_map():
    torch.manual_seed(0)
    model = build_backbone("convnet6", in_channels=1).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        fmap = model.features(x)
        assert fmap.shape == (3, 128, 7, 7)
        torch.testing.assert_close(model(x), fmap.sum(dim=(2, 3)) / 49)


def test_convnet_forward_maps_shapes_and_last_map_pools_to_forward():
    torch.manual_seed(0)
    model = build_backbone("convnet6", in_channels=1, width=8).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        maps = model.forward_maps(x)
        assert [tuple(m.shape) for m in maps] == [(3, 8, 28, 28), (3, 16, 14, 14), (3, 32, 7, 7)]
        assert model.map_dims == [8, 16, 32] and model.map_dims[-1] == model.dim
        assert torch.equal(maps[-1], model.features(x))
        torch.testing.assert_close(maps[-1].mean(dim=(2, 3)), model(x), rtol=0, atol=0)
    c8 = build_backbone("convnet8", in_channels=1, width=4).eval()
    with torch.no_grad():
        assert [m.shape[1:] for m in c8.forward_maps(torch.randn(1, 1, 16, 16))] == [
            (4, 16, 16), (8, 8, 8), (16, 4, 4), (32, 2, 2)]


# ---- resnet


def test_resnet_forward_maps_are_the_four_stages():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    for name, dims in [("resnet18", [64, 128, 256, 512]), ("resnet50", [256, 512, 1024, 2048])]:
        model = build_backbone(name, in_channels=3, stem="cifar", zero_init_residual=False).eval()
        assert model.map_dims == dims and model.map_dims[-1] == model.dim
        with torch.no_grad():
            maps = model.forward_maps(x)
            assert [tuple(m.shape) for m in maps] == [(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(dims)]
            torch.testing.assert_close(maps[-1].mean(dim=(2, 3)), model(x), rtol=0, atol=0)


def test_resnet_parameter_counts_match_torchvision_without_fc():
    # torchvision: resnet18 11,689,512 and resnet50 25,557,032 parameters, of which fc has
    # 512 * 1000 + 1000 = 513,000 and 2048 * 1000 + 1000 = 2,049,000.
    r18 = build_backbone("resnet18", in_channels=3)
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512 - 513_000 == 11_176_512
    assert r18.dim == 512
    r50 = build_backbone("resnet50", in_channels=3)
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032 - 2_049_000
    assert r50.dim == 2048
    # torchvision's state-dict names, so its weights load.
    keys = set(r18.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv2.weight", "layer2.0.downsample.0.weight",
            "layer4.1.bn2.bias"} <= keys
    assert "layer3.5.conv3.weight" in r50.state_dict()


def test_resnet_stems_and_forward_features():
    x = torch.randn(2, 3, 32, 32)
    cifar = build_backbone("resnet18", in_channels=3, stem="cifar").eval()
    imagenet = build_backbone("resnet18", in_channels=3, stem="imagenet").eval()
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    with torch.no_grad():
        maps = cifar.forward_features(x)
        assert {k: tuple(v.shape) for k, v in maps.items()} == {
            "layer1": (2, 64, 32, 32), "layer2": (2, 128, 16, 16), "layer3": (2, 256, 8, 8), "layer4": (2, 512, 4, 4)}
        torch.testing.assert_close(cifar(x), maps["layer4"].mean(dim=(2, 3)))
        assert imagenet.forward_features(x, ("layer1",))["layer1"].shape == (2, 64, 8, 8)
    with pytest.raises(ConfigError, match="unknown resnet stem 'imagnet'.*Did you mean 'imagenet'"):
        build_backbone("resnet18", in_channels=3, stem="imagnet")
    with pytest.raises(ConfigError, match="unknown resnet layer 'res5'"):
        cifar.forward_features(x, ("res5",))


def test_zero_init_residual_makes_blocks_identity():
    torch.manual_seed(0)
    model = build_backbone("resnet18", in_channels=3, stem="cifar").eval()
    block = model.layer1[0]
    assert isinstance(block, BasicBlock) and block.downsample is None
    assert torch.count_nonzero(block.bn2.weight) == 0
    x = torch.rand(2, 64, 8, 8)  # non-negative, like the ReLU output a block receives
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
    plain = build_backbone("resnet18", in_channels=3, zero_init_residual=False)
    assert torch.all(plain.layer1[0].bn2.weight == 1)


# ---- vit


def test_vit_requires_valid_image_size_and_dims():
    with pytest.raises(ConfigError, match="needs image_size"):
        build_backbone("vit_tiny", in_channels=1)
    with pytest.raises(ConfigError, match="image_size 28 is not divisible by patch_size 16"):
        build_backbone("vit_tiny", in_channels=1, image_size=28)
    with pytest.raises(ConfigError, match="dim 66 is not divisible by heads 4"):
        tiny_vit(dim=66, heads=4)
    with pytest.raises(ConfigError, match="divisible by 4, got 6"):
        tiny_vit(dim=6, heads=2)


def test_vit_full_size_parameter_counts():
    # timm's vit_tiny_patch16_224 (5,717,416) and vit_small_patch16_224 (22,050,664) minus their
    # 1000-class heads and learned positional embeddings (197 x D), which ours replaces by fixed sin-cos.
    tiny = build_backbone("vit_tiny", in_channels=3, image_size=224)
    assert sum(p.numel() for p in tiny.parameters()) == 5_717_416 - (192 * 1000 + 1000) - 197 * 192
    small = build_backbone("vit_small", in_channels=3, image_size=224)
    assert sum(p.numel() for p in small.parameters()) == 22_050_664 - (384 * 1000 + 1000) - 197 * 384
    assert (tiny.dim, tiny.num_patches, small.dim) == (192, 196, 384)


def test_sincos_pos_embed_hand_values():
    # dim 4, 2x2 grid: one frequency (1) per axis, so patch (r, c) -> [sin r, cos r, sin c, cos c].
    emb = sincos_pos_embed_2d(4, 2)
    s, c = math.sin(1), math.cos(1)
    expected = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 1], [0, 1, s, c], [s, c, 0, 1], [s, c, s, c]])
    torch.testing.assert_close(emb, expected.float())


def test_vit_patchify_layout_and_round_trip():
    model = build_backbone("vit_tiny", in_channels=3, image_size=8, patch_size=4, dim=16, depth=1, heads=2)
    x = torch.randn(2, 3, 8, 8)
    patches = model.patchify(x)
    assert patches.shape == (2, 4, 4 * 4 * 3)
    # Patch 3 is grid row 1, column 1, flattened as (p, p, C).
    torch.testing.assert_close(patches[:, 3], x[:, :, 4:, 4:].permute(0, 2, 3, 1).reshape(2, -1), rtol=0, atol=0)
    assert torch.equal(model.unpatchify(patches), x)
    # The patch embedding is a linear map of patchify's vectors: same token order for MAE targets.
    weight = model.patch_embed.weight.permute(0, 2, 3, 1).reshape(16, -1)  # (D, p*p*C) in (p, p, C) order
    with torch.no_grad():
        embedded = model.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        torch.testing.assert_close(embedded, patches @ weight.T + model.patch_embed.bias)


def test_vit_forward_tokens_with_keep():
    torch.manual_seed(0)
    model = tiny_vit().eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        full = model.forward_tokens(x)
        assert full.shape == (2, 1 + 49, 64)
        all_in_order = torch.arange(49).expand(2, -1)
        assert torch.equal(model.forward_tokens(x, all_in_order), full)
        # Attention is permutation-equivariant once positions are added: shuffling keep shuffles tokens.
        perm = torch.stack([torch.randperm(49), torch.randperm(49)])
        shuffled = model.forward_tokens(x, perm)
        torch.testing.assert_close(shuffled[:, 0], full[:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(shuffled[:, 1:], full[:, 1:].gather(1, perm[:, :, None].expand(-1, -1, 64)),
                                   rtol=1e-5, atol=1e-5)
        keep = perm[:, :12]
        part = model.forward_tokens(x, keep)
        assert part.shape == (2, 13, 64)
        assert not torch.allclose(part[:, 0], full[:, 0], atol=1e-3)  # the class token saw fewer patches
        torch.testing.assert_close(model(x), full[:, 0])
    mean_pool = tiny_vit(pool="mean").eval()
    mean_pool.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(mean_pool(x), full[:, 1:].mean(dim=1))


# ---- timm adapter


def test_timm_missing_or_pretrained_is_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="pretrained=True would download"):
        build_backbone("timm", in_channels=3, pretrained=True)
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ConfigError, match=r"timm is not installed Fix: pip install 'selfsup\[timm\]'"):
        build_backbone("timm", in_channels=3, model="resnet18")


# ---- heads


def test_mlp_structure_and_parameter_count():
    head = mlp([128, 512, 128])  # the fmnist-cpu SimCLR projector
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].bias is None and head[3].bias is not None  # BN makes a bias before it redundant
    assert sum(p.numel() for p in head.parameters()) == 128 * 512 + 2 * 512 + 512 * 128 + 128
    barlow = mlp([32, 64, 64, 16])
    assert [type(m) for m in barlow] == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
    ln = mlp([8, 16, 4], norm="ln", act=nn.GELU, bias_last=False)
    assert [type(m) for m in ln] == [nn.Linear, nn.LayerNorm, nn.GELU, nn.Linear]
    assert ln[0].bias is not None and ln[3].bias is None
    assert [type(m) for m in mlp([8, 4], norm=None)] == [nn.Linear]
    assert isinstance(mlp([8, 16, 4], last_norm=True)[-1], nn.BatchNorm1d)


def test_mlp_last_norm_without_affine_standardizes_features():
    torch.manual_seed(0)
    head = mlp([8, 16, 4], last_norm="bn_noaffine")
    last = head[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    out = head(torch.randn(64, 8) * 3 + 1)
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="at least two positive widths"):
        mlp([128])
    with pytest.raises(ConfigError, match="unknown mlp norm 'batch'"):
        mlp([4, 4], norm="batch")
    with pytest.raises(ConfigError, match="unknown mlp last_norm 'bn_noafine'"):
        mlp([4, 4], last_norm="bn_noafine")
