"""Requirements, not lists: what a method, auxiliary or protocol needs, and who provides it.

A method that only combines backbone outputs of its views needs nothing here and runs on every
kind of data. One that does more names the capabilities it needs (``requires``); a modality
(``selfsup.modalities``) and a backbone (its class attribute ``provides``) say which they provide.
A requirement neither provides is refused before any work, with a one-line ConfigError that names
the capability, who could provide it and what the run has instead.
"""
from __future__ import annotations

# capability -> (what it is, in words; who provides it: "data" or "backbone")
CAPABILITIES = {
    "pixels": ("images whose pixels can be rotated, flipped, cropped and corrupted", "data"),
    "mixable": ("samples that can be mixed (mixup averages two inputs; table category codes cannot be)", "data"),
    "feature_maps": ("a backbone with stages (forward_maps: convnet, resnet, scatnet)", "backbone"),
    "tokens": ("a backbone that encodes a subset of patch tokens (forward_tokens: vit_tiny, vit_small, patchtst)",
               "backbone"),
    "timesteps": ("a backbone with one representation per timestep (forward_steps: ts2vec_cnn, resnet1d, patchtst)",
                  "backbone"),
    "graphs": ("batches of whole graphs, whose edges the method perturbs (molecules, graph files)", "data"),
    "nodes": ("the nodes of one graph, whose neighbourhoods the method reads (node-level data: karate, an edge list)",
              "data"),
}


def describe(capability: str) -> str:
    return CAPABILITIES[capability][0]


def backbone_provides(backbone) -> tuple[str, ...]:
    """What a backbone provides: a registered class or builder says so (``provides``); a built module
    by the builder it was built with (``spec["name"]``), else by the interface it has."""
    if getattr(backbone, "provides", None) is not None:
        return tuple(backbone.provides)
    spec = getattr(backbone, "spec", None)
    if isinstance(spec, dict) and spec.get("name"):
        from . import registry

        return tuple(getattr(registry.get("backbone", spec["name"]), "provides", ()))
    found = []
    if callable(getattr(backbone, "forward_maps", None)):
        found.append("feature_maps")
    if callable(getattr(backbone, "forward_tokens", None)):
        found.append("tokens")
    return tuple(found)


def unmet(requires, modality, backbone, dataset=None) -> list[str]:
    """The capabilities in `requires` that neither the modality (a plug-in; for `dataset`, what it
    provides for that data) nor the backbone provides."""
    data_has = modality.provided(dataset) if dataset is not None else getattr(modality, "provides", ())
    have = set(data_has) | set(backbone_provides(backbone))
    return [c for c in requires if c not in have]


def reason(requires, modality, backbone, data_name: str, backbone_name: str, dataset=None) -> str | None:
    """Why a thing needing `requires` cannot run on this data and backbone (a registered class or
    builder, or a built module), in words, or None."""
    for capability in unmet(requires, modality, backbone, dataset):
        what, provider = CAPABILITIES[capability]
        if provider == "data":
            return f"needs {what}, and '{data_name}' is {modality.name} data"
        return f"needs {what}, and the backbone is {backbone_name}"
    return None


def backbone_name(backbone) -> str:
    spec = getattr(backbone, "spec", None)
    return spec["name"] if isinstance(spec, dict) and spec.get("name") else type(backbone).__name__
