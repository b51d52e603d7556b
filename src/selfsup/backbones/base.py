"""The backbone contract.

A backbone is an ``nn.Module`` built as ``cls(in_channels=..., image_size=..., **kwargs)`` that maps
a float batch (B, C, H, W) to features (B, D) and exposes ``dim = D``. Token backbones (ViT) also
expose ``patch_size``, ``num_patches`` and ``forward_tokens(x, keep=None) -> (B, 1 + N', D)``: the
class token followed by the patch tokens, only those at the indices ``keep`` (B, N') when given.
Convolutional backbones (convnet, resnet) also expose ``forward_maps(x) -> list[Tensor]``: the feature
map (B, C_l, H_l, W_l) after each stage, shallowest first, the last being the map that ``forward``
globally average-pools, and ``map_dims``, the list of the C_l.

``build_backbone(name, **kwargs)`` builds a registered backbone; ``spec`` (name + kwargs) is what an
exported encoder stores in its JSON config so it can be rebuilt without the training code.
"""
from __future__ import annotations

from torch import nn

from .. import registry


def backbone(name: str, modality: str, provides: tuple[str, ...] = ()):
    """Register a backbone class or builder under `name`: it encodes `modality` data (the name of a
    ``selfsup.modalities`` plug-in) and `provides` capabilities (``selfsup.capabilities``:
    feature_maps, tokens) that methods and protocols may require."""
    def wrap(obj):
        obj.modality, obj.provides = modality, tuple(provides)
        return registry.register("backbone", name)(obj)
    return wrap


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Backbone `name` built with `kwargs`: the input spec the data fixes (``Dataset.input_spec()``:
    channels and image size, a table's columns, ...) and the user's options."""
    cls = registry.get("backbone", name)
    adapters = kwargs.pop("adapters", 0)  # continual pretraining's adapters (backbones/adapters.py), not the class's
    registry.check_kwargs("backbone", name, kwargs)
    model = cls(**kwargs)
    model.spec = {"name": name, **kwargs}
    if adapters:
        from .adapters import add_adapters

        add_adapters(model, adapters)
    return model
