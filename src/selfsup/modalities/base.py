"""The modality contract: everything that depends on the kind of data, in one plug-in per kind.

A modality (image, table, series, graph, ...) is a class registered with
``@register("modality", name)``. It owns, for its kind of data:

- **files**: which paths it claims (``claims``) and how it reads them (``load``); named datasets
  live in ``data/catalogue.py`` tagged with their modality;
- **samples**: how a dataset's samples are kept on the compute device (``store``) and how a batch
  is gathered from indices (``gather``: a slice of a dense tensor, or a collated ragged batch);
  the batch type follows ``selfsup.samples`` (a tensor, or an object with ``cat``, ``index``, ...);
- **backbones and views**: its default backbone, the backbone arguments its data fixes
  (``Dataset.input_spec()``), its view presets and view generator (``views``), and the views
  label-free protocols draw (``eval_views``);
- **the encoder's input**: the normalization saved with the encoder (``Dataset.normalization()``)
  and how the encoder turns raw samples into the backbone's input (``prepare_input``); what else the
  encoder keeps to read new files alike (a table's schema: ``Dataset.schema``);
- **capabilities** it ``provides`` to methods, auxiliaries and protocols that require them
  (``selfsup.capabilities``: pixels, mixable samples, ...);
- **words**: the nouns of its messages (``noun``, ``nouns``, ``unreadable``) and the advice for
  labelled test data (``test_split_hint``).

The trainer, API, CLI, evaluation, encoder and config name no modality: they look the plug-in up
by the dataset's or encoder's ``modality`` (``modality_of``) and call it. Adding a kind of data is a
new plug-in module (plus its reader, views and backbones), not a new branch in those files; see
docs/ARCHITECTURE.md, "Adding a modality".
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from .. import registry
from ..errors import ConfigError, DataError, closest
from ..samples import take


class Modality:
    """The defaults suit a dense modality whose samples are one tensor (N, ...)."""

    name: ClassVar[str] = ""
    noun: ClassVar[str] = "sample"  # "a batch of 256 {nouns}"
    nouns: ClassVar[str] = "samples"
    unreadable: ClassVar[str] = "unreadable input(s)"  # what a reader skipped, e.g. "broken row(s)"
    provides: ClassVar[tuple[str, ...]] = ()
    default_backbone: ClassVar[str] = ""
    input_keys: ClassVar[tuple[str, ...]] = ()  # backbone arguments the data fixes (config refuses them as options)
    presets: ClassVar[tuple[str, ...]] = ()  # named view presets (``views.preset``), besides "auto"
    view_config: ClassVar[type | None] = None  # the dataclass of its view options (``views.*``)
    priority: ClassVar[int] = 100  # paths are offered to modalities in increasing priority (a fallback last)
    formats: ClassVar[str] = ""  # the paths it reads, in words, for messages
    test_split_hint: ClassVar[str] = "labelled data of the same kind"

    # ------------------------------------------------------------------ files

    @classmethod
    def claims(cls, path: str) -> bool:
        """Whether `path` (a file or folder that exists) holds data of this kind."""
        return False

    @classmethod
    def load(cls, path: str, split: str, **options):
        """The dataset at `path` (`options`: the data config's image_size, label, schema, ...)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ samples

    @classmethod
    def store(cls, samples, device: torch.device):
        """A dataset's samples as the trainer keeps them on `device`."""
        return samples.to(device)

    @classmethod
    def gather(cls, stored, index: torch.Tensor):
        """The batch of samples at `index` (B,) from `stored`."""
        return take(stored, index)

    @classmethod
    def from_samples(cls, samples: torch.Tensor, labels, ids: list[str], name: str, source: str, classes=None,
                     schema=None):
        """A dataset of this kind from dense `samples` (N, ...) read back from shards (``data/shards.py``),
        with its labels (N,) or None, ids, class names and schema. A kind whose samples are not one
        dense tensor (graphs) cannot be sharded and keeps this refusal."""
        raise DataError(f"{cls.nouns} cannot be written to shards: their samples are not one dense tensor.",
                        "pretrain on them in memory (pass the dataset itself as --data).")

    # ------------------------------------------------------------------ views

    @classmethod
    def auto_preset(cls, dataset, layout: dict) -> str:
        """The view preset ``views.preset=auto`` picks for `dataset` and a method's view `layout`."""
        return cls.presets[0]

    @classmethod
    def provided(cls, dataset) -> tuple[str, ...]:
        """The capabilities this modality provides for `dataset` (``provides``, unless the data's level
        changes them: graph-level or node-level graphs)."""
        return cls.provides

    @classmethod
    def suits(cls, preset: str, dataset) -> bool:
        """Whether `preset` applies to `dataset` (all do, unless the modality says otherwise)."""
        return True

    @classmethod
    def preset_config(cls, preset: str, dataset, layout: dict):
        """The view config of `preset` for `dataset` (before the user's ``views.*`` options)."""
        raise NotImplementedError

    @classmethod
    def make_views(cls, config, dataset, mean, std, device):
        """The view generator for a finished view `config` (layout and options applied)."""
        raise NotImplementedError

    @classmethod
    def views(cls, preset: str, options: dict, layout: dict, dataset, mean, std, device, method_layout=None,
              prefer: str | None = None):
        """The view generator of a run and the preset's name: `preset` ("auto" or one of ``presets``;
        auto is the method's preferred preset for this modality, `prefer`, else chosen for the
        method's own `method_layout`) with the user's `options` and the run's `layout` ({n_global,
        n_local}) applied; a preset or option this modality does not have is a ConfigError."""
        method_layout = layout if method_layout is None else method_layout
        if prefer is not None and not cls.suits(prefer, dataset):
            prefer = None  # the method's usual views do not apply to this data (graph-level views on nodes)
        name = (prefer or cls.auto_preset(dataset, method_layout)) if preset == "auto" else preset
        if name not in cls.presets:
            raise ConfigError(f"views.preset={preset!r} is not a preset for {cls.name} data.{closest(preset, cls.presets)}",
                              f"choose one of: auto, {', '.join(cls.presets)}.")
        config = cls.preset_config(name, dataset, method_layout)
        valid = {f.name for f in dataclasses.fields(config)}
        for key in options:
            if key not in valid:
                raise ConfigError(f"unknown config key 'views.{key}' for {cls.name} data.{closest(key, valid)}",
                                  f"valid keys: {', '.join(sorted(valid))}.")
        config = dataclasses.replace(config, **{**layout, **options})
        return cls.make_views(config, dataset, mean, std, device), name

    @classmethod
    def eval_views(cls, encoder, dataset):
        """The pretraining views of `dataset` (``views.preset=auto``, two global views), for protocols
        that measure invariance (alignment/uniformity) on an encoder."""
        mean, std = encoder.mean.flatten().tolist(), encoder.std.flatten().tolist()
        config = cls.preset_config(cls.auto_preset(dataset, {"n_global": 2, "n_local": 0}), dataset,
                                   {"n_global": 2, "n_local": 0})
        return cls.make_views(dataclasses.replace(config, n_global=2, n_local=0), dataset, mean, std, None)

    # ------------------------------------------------------------------ the encoder

    @classmethod
    def stat_shape(cls) -> tuple[int, ...]:
        """How the encoder's per-channel mean and std broadcast over a batch."""
        return (1, -1)

    @classmethod
    def prepare_input(cls, x, mean: torch.Tensor, std: torch.Tensor):
        """Raw samples as a dataset stores them -> the backbone's input (normalized floats)."""
        return (x.float() - mean) / std

    @classmethod
    def schema_to_dict(cls, schema) -> dict:
        return schema.to_dict()

    @classmethod
    def schema_from_dict(cls, data: dict):
        """The schema an encoder saved (``encoder.json``), or None when the modality has none."""
        return None

    # ------------------------------------------------------------------ checks

    @classmethod
    def check_compatible(cls, data, reference, what: str) -> None:
        """`data` (a test split, new data) can go through an encoder trained on `reference`."""

    @classmethod
    def check_encoder_input(cls, encoder, dataset, data_name: str) -> None:
        """`dataset` fits `encoder`'s input (channels, columns, ...)."""


def plugins() -> list[type[Modality]]:
    """Every registered modality, in the order paths are offered to them (``priority``)."""
    return sorted((registry.get("modality", n) for n in registry.names("modality")), key=lambda m: (m.priority, m.name))


def encodes(backbone_cls, plugin) -> bool:
    """Whether a backbone (class or builder) encodes the data of `plugin`."""
    return getattr(backbone_cls, "modality", None) == plugin.name


def modality_of(thing):
    """The plug-in for a dataset, an encoder, a backbone class, or a modality name."""
    name = thing if isinstance(thing, str) else getattr(thing, "modality", None)
    if not name:
        raise ValueError(f"{thing!r} names no modality")
    return registry.get("modality", name)


def same_kind(data, reference, what: str) -> None:
    """`data` (a test split, another dataset) is the kind of data the train split `reference` is, with
    the same shape where the modality requires it (channels, image size): else a DataError."""
    if data.modality != reference.modality:
        raise DataError(f"the {what} data '{data.name}' is {data.modality} data, the training data "
                        f"{reference.modality} data.", f"pass {reference.modality} data of the kind the encoder was trained on.")
    modality_of(data).check_compatible(data, reference, what)


def fits_encoder(dataset, encoder, data_name: str) -> None:
    """`dataset` can go through `encoder`: the same kind of data, and the input the modality checks."""
    if dataset.modality != encoder.modality:
        raise DataError(f"'{data_name}' is {dataset.modality} data, and the encoder was trained on {encoder.modality} data.",
                        "pass data of the kind the encoder was trained on.")
    modality_of(dataset).check_encoder_input(encoder, dataset, data_name)
