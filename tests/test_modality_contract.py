"""The modality contract holds: kind-independent code names no modality, every plug-in fills the
contract, requirements are checked against what the data and backbone provide, and a method's view
layout is checked before training."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from selfsup import registry
from selfsup.capabilities import CAPABILITIES, backbone_provides, unmet
from selfsup.errors import ConfigError
from selfsup.modalities import modality_of
from selfsup.modalities.base import Modality, plugins

SRC = Path(__file__).resolve().parents[1] / "src" / "selfsup"
# The check: `grep -rnE "modality *[!=]=|[\"'](image|table|series|graph)[\"']"` over these.
KIND_INDEPENDENT = ["train", "evaluation", "api.py", "cli.py", "encoder.py", "config.py"]
PATTERN = re.compile(r"modality *[!=]=|[\"'](image|table|series|graph)[\"']")


def test_kind_independent_code_names_no_modality():
    hits = []
    for part in KIND_INDEPENDENT:
        root = SRC / part
        for path in sorted(root.rglob("*.py") if root.is_dir() else [root]):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if PATTERN.search(line):
                    hits.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert hits == [], "\n".join(hits)


def test_every_plugin_fills_the_contract():
    names = registry.names("modality")
    assert {"image", "table"} <= set(names)
    for name in names:
        plugin = modality_of(name)
        assert issubclass(plugin, Modality) and plugin.name == name
        assert plugin.noun and plugin.nouns and plugin.unreadable and plugin.formats and plugin.test_split_hint
        assert plugin.presets and plugin.view_config is not None, name
        assert set(plugin.provides) <= set(CAPABILITIES), name
        backbone = registry.get("backbone", plugin.default_backbone)
        assert backbone.modality == name, (name, plugin.default_backbone)
        for key in plugin.input_keys:  # the data fixes these: every backbone of the kind takes them
            for other in registry.names("backbone"):
                cls = registry.get("backbone", other)
                if cls.modality == name:
                    assert key in registry.parameters(cls), (name, other, key)
    assert [p.name for p in plugins()][-1] == "image"  # the folder fallback is asked last


def test_every_backbone_says_what_it_encodes_and_provides():
    for name in registry.names("backbone"):
        cls = registry.get("backbone", name)
        assert cls.modality in registry.names("modality"), name
        assert set(cls.provides) <= set(CAPABILITIES), name
    assert "feature_maps" in backbone_provides(registry.get("backbone", "convnet6"))
    assert "tokens" in backbone_provides(registry.get("backbone", "vit_tiny"))
    assert backbone_provides(registry.get("backbone", "mlp")) == ()


def test_requirements_are_met_or_refused_with_the_capability_named():
    """Generic methods need nothing; each one that needs more names a known capability, and the
    table plug-in with the mlp provides none of pixels, feature maps or tokens."""
    table, mlp = modality_of("table"), registry.get("backbone", "mlp")
    generic = {"simclr", "moco_v2", "moco_v3", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "swav", "nnclr",
               "dcl", "dclw", "groco", "msbreg", "mugs", "supcon", "supervised", "graphcl", "grace", "bgrl"}
    specific = {"mae", "obow", "sla", "gsimclr", "mixed_barlow_twins", "ts2vec", "tstcc"}
    for name in registry.names("method"):
        cls = registry.get("method", name)
        assert set(cls.requires) <= set(CAPABILITIES), name
        if name in generic:
            assert cls.requires == (), name
        if name in specific:
            assert unmet(cls.requires, table, mlp), name  # pixels, tokens, timesteps, mixable: not on a table


@pytest.mark.parametrize("method, layout, needle", [
    ("simclr", {"n_global": 3}, "n_global=3, and it takes 2"),
    ("dino", {"n_global": 3}, "n_global=3, and it takes 2"),
    ("mae", {"n_local": 2}, "n_local=2, and it takes 0"),
    ("msbreg", {"n_global": 1}, "n_global=1, and it takes at least 2"),
])
def test_view_layout_is_checked_before_any_work(method, layout, needle, fmnist_npz, tmp_path):
    from selfsup.config import load
    from selfsup.train.loop import train

    overrides = [f"data.name={fmnist_npz}", f"method.name={method}", f"out={tmp_path / 'run'}", "train.steps=2",
                 "train.batch_size=16", "train.progress=false"] + [f"views.{k}={v}" for k, v in layout.items()]
    if method == "mae":
        overrides += ["backbone.name=vit_tiny", "backbone.patch_size=7"]
    with pytest.raises(ConfigError, match=needle):
        train(load(None, overrides))
    assert not (tmp_path / "run").exists()
