"""Any timm model as a backbone: ``build_backbone("timm", in_channels=3, model="convnext_atto")``.

timm is optional (``pip install 'selfsup[timm]'``; it needs torchvision) and imported only when
this backbone is built. Weights are never downloaded: a pretraining run starts from scratch, or,
for continual pretraining (``train.init_from=timm:MODEL`` / ``timm:MODEL=FILE``), from weights that
are already on this machine (``pretrained``, below); an exported encoder rebuilds offline from its
JSON spec (``pretrained=False``) and gets its trained weights from ``encoder.safetensors``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, closest
from .base import backbone

PREFIX = "timm:"  # train.init_from=timm:MODEL or timm:MODEL=FILE


def _import_timm():
    try:
        import timm
    except ImportError as exc:
        if exc.name in (None, "timm"):
            raise ConfigError("timm is not installed", "pip install 'selfsup[timm]'") from None
        raise ConfigError(f"timm is installed but cannot be imported: {exc}.",
                          f"install {exc.name} (timm needs torchvision, built for the torch installed here).") from None
    except RuntimeError as exc:  # e.g. a torchvision built for another torch: "operator torchvision::nms does not exist"
        raise ConfigError(f"timm cannot be imported: {str(exc).strip().splitlines()[-1]}.",
                          "install the torchvision release built for the torch installed here.") from None
    return timm


def _check_model(timm, model: str) -> None:
    """`model` is a timm architecture, with an optional pretrained tag (``resnet10t.c3_in1k``)."""
    available = timm.list_models()
    arch, _, tag = model.partition(".")
    if arch not in available:
        raise ConfigError(f"unknown timm model {model!r}.{closest(arch, available)}",
                          "see timm.list_models() for the names.")
    if tag:
        try:
            timm.models.get_pretrained_cfg(model)
        except RuntimeError:
            raise ConfigError(f"timm model {arch!r} has no pretrained tag {tag!r}.",
                              f"see timm.list_pretrained('{arch}*') for its tags, or drop the tag.") from None


@backbone("timm", "image")
class TimmBackbone(nn.Module):
    """(B, C, H, W) -> (B, D): timm's pooled features (``num_classes=0`` drops the classifier).

    image_size is not passed to timm: choose a model whose input size fits (ResNets and ConvNeXts
    take any size); ``dim`` is the model's ``num_features``.
    """

    def __init__(self, in_channels: int = 3, image_size: int | None = None, model: str = "resnet18",
                 pretrained: bool = False):
        super().__init__()
        if pretrained:
            raise ConfigError("pretrained=True would download weights, which selfsup never does.",
                              "use pretrained=False (the default) and pretrain with selfsup, or start from weights "
                              "on this machine with train.init_from=timm:MODEL (or timm:MODEL=FILE).")
        timm = _import_timm()
        _check_model(timm, model)
        self.model = timm.create_model(model, pretrained=False, num_classes=0, in_chans=in_channels)
        self.dim = self.model.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def parse_source(source: str) -> tuple[str, str | None]:
    """``timm:MODEL`` -> (MODEL, None); ``timm:MODEL=FILE`` -> (MODEL, FILE). Split at the first '=':
    timm's model names never hold one, so a path may hold ':' or '=' of its own."""
    model, sep, weights = source[len(PREFIX):].partition("=")
    if not model or (sep and not weights):
        raise ConfigError(f"train.init_from {source!r} names no timm model{' or no weights file' if sep else ''}.",
                          "write timm:MODEL (weights in timm's cache) or timm:MODEL=PATH (a .safetensors or .pth "
                          "state dict), e.g. timm:resnet18=weights/resnet18.safetensors.")
    return model, weights or None


def _safe_alternative(filename: str) -> str | None:
    if filename == "pytorch_model.bin":
        return "model.safetensors"
    if filename == "open_clip_pytorch_model.bin":
        return "open_clip_model.safetensors"
    return filename[:-len(".bin")] + ".safetensors" if filename.endswith(".bin") else None


def cached_weights(model: str) -> Path | None:
    """The file of `model`'s pretrained weights in timm's caches on this machine, or None: the
    Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``), where timm >= 0.9 keeps them, then
    torch.hub's (``$TORCH_HOME/hub/checkpoints``), where older timm did. Looked up, never fetched."""
    from urllib.parse import urlparse

    timm = _import_timm()
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        try:
            import huggingface_hub
        except ImportError:
            huggingface_hub = None
        if huggingface_hub is not None:
            repo, _, revision = cfg.hf_hub_id.partition("@")
            names = [cfg.hf_hub_filename or "pytorch_model.bin"]
            names.insert(0, _safe_alternative(names[0]) or names[0])
            for name in dict.fromkeys(names):
                found = huggingface_hub.try_to_load_from_cache(repo, name, revision=revision or None)
                if isinstance(found, str) and os.path.isfile(found):
                    return Path(found)
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if path.is_file():
            return path
    return None


def _channel_stats(values, in_channels: int) -> list[float]:
    """timm's RGB statistics for `in_channels` inputs, as timm adapts the first convolution: one
    channel gets the sum of the RGB filters, so its mean/std are the mean of the three; more
    channels repeat the RGB filters cyclically, so channel i gets statistic i % 3."""
    values = [float(v) for v in values]
    if len(values) == in_channels:
        return values
    if in_channels == 1:
        return [sum(values) / len(values)]
    return [values[i % len(values)] for i in range(in_channels)]


def _load_errors() -> tuple:
    import pickle

    from safetensors import SafetensorError

    return (RuntimeError, ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError, SafetensorError)


def pretrained(source: str, in_channels: int, image_size: int | None = None):
    """(backbone, mean, std) for ``train.init_from=timm:MODEL[=FILE]``: the registered ``timm``
    backbone (spec ``model=MODEL``, rebuilt with pretrained=False on load) holding the weights of
    FILE, or of timm's cached pretrained weights, loaded by timm (``pretrained=True`` with
    ``pretrained_cfg_overlay=dict(file=...)``: the classifier dropped, the first convolution adapted
    to `in_channels`), and the input normalization of the model's pretraining (its
    ``pretrained_cfg`` mean/std, adapted to the channels likewise). selfsup resolves the file
    itself and hands timm a local path, so nothing is ever downloaded."""
    from .base import build_backbone

    model, weights = parse_source(source)
    timm = _import_timm()
    net = build_backbone("timm", in_channels=in_channels, image_size=image_size, model=model)
    if weights is None:
        path = cached_weights(model)
        if path is None:
            raise ConfigError(f"the pretrained weights of timm model {model!r} are not on this machine (selfsup "
                              "never downloads them).",
                              f"download them once where there is a network (python -c \"import timm; "
                              f"timm.create_model('{model}', pretrained=True)\", then copy the Hugging Face cache), "
                              f"or save a state dict and use --init-from timm:{model}=PATH.safetensors.")
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"the weights file '{weights}' for timm model {model!r} does not exist.",
                              f"give the path of a .safetensors or .pth state dict of {model}, or use "
                              f"timm:{model} for the weights in timm's cache.")
    load_errors = _load_errors()
    try:
        loaded = timm.create_model(model, pretrained=True, num_classes=0, in_chans=in_channels,
                                   pretrained_cfg_overlay=dict(file=str(path)))
    except load_errors as exc:  # a foreign, truncated or mismatched file
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"'{path}' cannot be loaded into timm model {model!r}: {detail[:300]}.",
                              f"use a state dict saved from {model} (.safetensors or .pth).") from None
    net.model.load_state_dict(loaded.state_dict())
    cfg = loaded.pretrained_cfg or {}
    mean = _channel_stats(cfg.get("mean") or (0.485, 0.456, 0.406), in_channels)
    std = _channel_stats(cfg.get("std") or (0.229, 0.224, 0.225), in_channels)
    return net, mean, std
