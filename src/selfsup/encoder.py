"""The exported encoder: a backbone plus the input normalization it was trained with.

Saved as ``encoder.safetensors`` (weights) + ``encoder.json`` (backbone spec, normalization,
feature dim, modality, and the modality's schema when it has one: a table's, which encodes new rows
alike), so it loads with
``selfsup.load_encoder(path)`` without the method or trainer code, and never through pickle.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, ConfigError, SelfsupError

WEIGHTS, CONFIG = "encoder.safetensors", "encoder.json"


class Encoder(nn.Module):
    """Maps samples to features (B, D).

    It takes samples as the dataset of its `modality` stores them (uint8 or float images (B, C, H, W),
    table rows (B, F), ...) and prepares them for the backbone as the modality plug-in says
    (``selfsup.modalities``: scaling, normalization with the saved per-channel `mean` and `std`).
    ``schema`` is what the modality keeps to read new files alike (a table's column encoding), or None.
    """

    def __init__(self, backbone: nn.Module, mean: list[float], std: list[float], modality: str, schema=None):
        from .modalities import modality_of

        super().__init__()
        self.backbone, self.modality, self.schema = backbone, modality, schema
        self._plugin = modality_of(modality)
        shape = self._plugin.stat_shape()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)

    @property
    def dim(self) -> int:
        return self.backbone.dim

    def normalize(self, x):
        return self._plugin.prepare_input(x, self.mean, self.std)

    def forward(self, x) -> torch.Tensor:
        return self.backbone(self.normalize(x))

    def config(self) -> dict:
        return {
            "format": "selfsup-encoder/1",
            "backbone": getattr(self.backbone, "spec", None),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "dim": self.dim,
            "modality": self.modality,
            **({"schema": self._plugin.schema_to_dict(self.schema)} if self.schema is not None else {}),
        }


def save_encoder(encoder: Encoder, directory: str | os.PathLike) -> Path:
    """Write encoder.safetensors + encoder.json into `directory`, each atomically."""
    from safetensors.torch import save_file

    from .files import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.backbone.state_dict().items()}
    atomic_write(directory / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    atomic_write(directory / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(encoder.config(), indent=2)))
    return directory / WEIGHTS


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder from a run directory, an ``encoder/`` directory or an ``encoder.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .backbones.base import build_backbone
    from .checkpoint import describe_mismatch
    from .modalities import modality_of

    path = Path(path)
    candidates = [path, path / "encoder", path.parent] if path.suffix != ".safetensors" else [path.parent]
    directory = next((d for d in candidates if (d / WEIGHTS).is_file() and (d / CONFIG).is_file()), None)
    if directory is None:
        raise CheckpointError(
            f"no encoder found at '{path}' (looked for {WEIGHTS} and {CONFIG}).",
            "pass a run directory written by `selfsup pretrain` or the folder holding encoder.safetensors.",
        )
    try:
        config = json.loads((directory / CONFIG).read_text())
        spec = dict(config["backbone"])
        name, mean, std = spec.pop("name"), list(config["mean"]), list(config["std"])
        plugin = modality_of(config["modality"])
        schema = plugin.schema_from_dict(config["schema"]) if "schema" in config else None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"'{directory / CONFIG}' is not a valid encoder config ({type(exc).__name__}: {exc}).",
                              "re-export the encoder.") from None
    try:
        backbone = build_backbone(name, **spec)
    except (SelfsupError, TypeError, ValueError) as exc:  # an edited or foreign encoder.json
        reason = exc.problem if isinstance(exc, SelfsupError) else str(exc).strip().splitlines()[0]
        raise CheckpointError(f"'{directory / CONFIG}' describes a backbone that cannot be built: {reason.rstrip('.')}.",
                              "load it with the encoder.json it was saved with, or re-export the encoder.") from None
    try:
        state = load_file(str(directory / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"'{directory / WEIGHTS}' cannot be read ({exc}); the file is truncated or not safetensors.",
                              "re-export the encoder or point to another run.") from None
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        detail = describe_mismatch(backbone.state_dict(), state) or str(exc).strip().splitlines()[0]
        raise CheckpointError(f"'{directory / WEIGHTS}' does not match backbone {name!r} of '{directory / CONFIG}': {detail}.",
                              "load it with the encoder.json it was saved with.") from None
    return Encoder(backbone, mean, std, plugin.name, schema).to(device).eval()
