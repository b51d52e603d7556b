"""Run assembly: from a RunConfig to everything the step loop needs, every check before any work.

The data is read, its modality plug-in (``selfsup.modalities``) chosen, the backbone resolved
(``auto`` = the modality's default), the method's requirements (``selfsup.capabilities``: pixels,
feature maps, tokens, mixable samples, labels) and its view layout checked against the data and
the backbone, and the backbone, method, auxiliaries, view generator and optimizer built. Only
then is the run directory written (``config.yaml``, ``skipped.txt``), so a refused run leaves
nothing behind and prints one line. Nothing here names a modality: what differs between kinds of
data is asked of the plug-in.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml

from .. import auxiliaries, capabilities, registry
from ..backbones.base import build_backbone
from ..config import RunConfig, from_dict, to_dict
from ..errors import ConfigError, DataError, disk_error
from ..files import atomic_write
from ..methods.base import Method
from ..modalities import modality_of
from ..modalities.base import encodes
from .optim import build_optimizer


def resolve_backbone(name: str, plugin, data_name: str, method_cls=None) -> str:
    """The backbone a run uses: `auto` picks the method's preferred backbone for this kind of data,
    else the modality's default; a backbone made for another kind of data is a ConfigError naming one
    that fits."""
    if name == "auto":
        preferred = getattr(method_cls, "preferred_backbones", {}) if method_cls is not None else {}
        return preferred.get(plugin.name, plugin.default_backbone)
    cls = registry.get("backbone", name)
    if not encodes(cls, plugin):
        raise ConfigError(f"backbone {name!r} encodes {cls.modality} data, and '{data_name}' is {plugin.name} data.",
                          f"use --backbone {plugin.default_backbone} (or leave the backbone at auto).")
    return name


def layout_of(config: RunConfig, method_cls: type[Method]) -> dict:
    """The views a run draws: the method's layout, with views.n_global / views.n_local if given."""
    layout = {"n_global": method_cls.views.get("n_global", 2), "n_local": method_cls.views.get("n_local", 0)}
    layout.update({k: config.views.options[k] for k in ("n_global", "n_local") if k in config.views.options})
    return layout


def initial_encoder(config: RunConfig, plugin, train_set):
    """The encoder `train.init_from` names (a run directory or an exported encoder, or
    ``timm:MODEL[=FILE]``: `timm_encoder`), checked against
    the run: same kind of data, same input spec, and the backbone the config asks for (``auto``
    takes the encoder's). Continual pretraining goes on from its weights and keeps its input
    normalization, so that the new data reaches the backbone scaled as the old data did."""
    from ..encoder import load_encoder

    path = config.train.init_from
    if path.startswith("timm:"):
        return timm_encoder(config, plugin, train_set)
    encoder = load_encoder(path)
    spec = dict(getattr(encoder.backbone, "spec", None) or {})
    name = spec.pop("name", None)
    fix = "start from an encoder trained on this kind of data, or drop train.init_from."
    if plugin.name != encoder.modality:
        raise ConfigError(f"train.init_from '{path}' is a {encoder.modality} encoder; '{config.data.name}' holds "
                          f"{plugin.nouns}.", fix)
    wanted = config.backbone.name
    if wanted not in ("auto", name):
        raise ConfigError(f"train.init_from '{path}' holds a {name!r} backbone; the config asks for {wanted!r}.",
                          f"use --backbone {name} (or auto), or start from an encoder with a {wanted!r} backbone.")
    given = train_set.input_spec()
    differ = {k: (spec.get(k), v) for k, v in given.items() if spec.get(k) != v}
    if differ:
        shown = ", ".join(f"{k} {a} (encoder) against {b} (data)" for k, (a, b) in differ.items())
        raise ConfigError(f"train.init_from '{path}' was trained on other inputs than '{config.data.name}': {shown}.",
                          "continue on data of the same shape (resize or convert it), or start from another encoder.")
    options = {k: v for k, v in spec.items() if k not in given}
    if config.backbone.options and config.backbone.options != options:
        raise ConfigError(f"train.init_from '{path}' has backbone options {options}; the config sets "
                          f"{dict(config.backbone.options)}.", "drop the backbone options: they come with the encoder.")
    return encoder, name


def timm_encoder(config: RunConfig, plugin, train_set):
    """`train.init_from=timm:MODEL[=FILE]`: an encoder of the registered ``timm`` backbone holding
    timm's pretrained weights of MODEL (FILE, or timm's cache on this machine; never downloaded) and
    the input normalization of its pretraining (``backbones/timm_backbone.pretrained``), so that the
    new data reaches the backbone scaled as ImageNet (or whatever it saw) did."""
    from ..backbones.timm_backbone import parse_source, pretrained
    from ..encoder import Encoder

    path = config.train.init_from
    model, _ = parse_source(path)
    if not encodes(registry.get("backbone", "timm"), plugin):
        raise ConfigError(f"train.init_from '{path}' is a timm image model; '{config.data.name}' holds {plugin.nouns}.",
                          "start from a timm model on image data, or from an encoder trained on this kind of data.")
    wanted = config.backbone.name
    if wanted not in ("auto", "timm"):
        raise ConfigError(f"train.init_from '{path}' gives a 'timm' backbone; the config asks for {wanted!r}.",
                          "use --backbone timm (or auto), or drop train.init_from.")
    if config.backbone.options and dict(config.backbone.options) != {"model": model}:
        raise ConfigError(f"train.init_from '{path}' sets the timm model; the config sets backbone options "
                          f"{dict(config.backbone.options)}.", "drop the backbone options: the model comes from "
                          "train.init_from.")
    backbone, mean, std = pretrained(path, **train_set.input_spec())
    return Encoder(backbone, mean, std, plugin.name), "timm"


def check_fit(config: RunConfig, method_cls: type[Method], plugin, backbone_name: str, dataset) -> None:
    """The method, its auxiliaries and the view layout suit the data and the backbone (ConfigError before any work)."""
    backbone_cls = registry.get("backbone", backbone_name)
    data_name = config.data.name
    things = [("method", config.method.name, method_cls)]
    things += [("auxiliary", entry.get("name"), registry.get("auxiliary", entry.get("name"))) for entry in config.method.aux]
    for kind, name, cls in things:
        why = capabilities.reason(getattr(cls, "requires", ()), plugin, backbone_cls, data_name, backbone_name, dataset)
        if why:
            raise ConfigError(f"{kind} {name!r} {why}.",
                              f"choose another {kind} (`selfsup methods` says what each needs), backbone or data.")
    if method_cls.needs_labels and dataset.labels is None:
        raise DataError(f"method '{config.method.name}' trains on class labels, and dataset '{data_name}' has none.",
                        "use a labelled dataset, or a self-supervised method.")
    layout = layout_of(config, method_cls)
    why = method_cls.check_views(layout["n_global"], layout["n_local"])
    if why:
        raise ConfigError(f"method '{config.method.name}' cannot use this view layout: {why}.",
                          f"set views.n_global / views.n_local to what it takes (its default: {dict(method_cls.views)}).")


def check_resume_config(run_dir: Path, config: RunConfig) -> None:
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return
    saved = to_dict(from_dict(yaml.safe_load(saved_path.read_text())))
    current = to_dict(config)
    # The step budget and what happens after training may change on resume; the recipe may not.
    ignore = {("train", "steps"), ("data", "workers"), ("train", "progress"), ("train", "monitor_every"), ("eval",), ("train", "checkpoint_every"),
              ("train", "on_nonfinite"), ("train", "max_skips"), ("train", "collapse_check_every"),
              ("train", "collapse_min_std"), ("train", "collapse_min_rank"), ("train", "collapse_patience")}
    diffs = []
    for section, values in current.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if (section,) in ignore or (section, key) in ignore:
                continue
            if saved.get(section, {}).get(key) != value:
                diffs.append(f"{section}.{key}: {saved.get(section, {}).get(key)!r} -> {value!r}")
    if diffs:
        raise ConfigError(f"--resume with a different recipe than the run in '{run_dir}': {'; '.join(diffs)}.",
                          "resume with the same settings, or start a new run with another --out.")


def load_train_set(config: RunConfig):
    from ..data import load_dataset
    from ..data.shards import ShardSet, is_shard_dir

    if is_shard_dir(config.data.name):  # streamed from shards (data/shards.py); everything else is read in memory
        if config.data.imbalance_ratio is not None:
            raise ConfigError("data.imbalance_ratio subsets the training set in memory, and the data is a shard directory.",
                              "write the long-tailed subset to shards, or leave data.imbalance_ratio unset.")
        return ShardSet(config.data.name, config.data.workers)
    train_set = load_dataset(config.data.name, split=config.data.train_split, root=config.data.root,
                             image_size=config.data.image_size, label=config.data.label,
                             categorical=config.data.categorical, numeric=config.data.numeric)
    if len(train_set) == 0:
        raise DataError(f"dataset '{config.data.name}' is empty.", "point --data at a folder or file with data.")
    if config.data.imbalance_ratio is not None:
        from ..evaluation.imbalance import long_tail_subset

        if train_set.labels is None:
            raise DataError(f"data.imbalance_ratio needs class labels to make '{config.data.name}' long-tailed, and it has none.",
                            "use a labelled dataset, or leave data.imbalance_ratio unset.")
        # seed 0, not the run's seed: every pretraining seed sees the same long-tailed data
        train_set = train_set.subset(long_tail_subset(train_set.labels, config.data.imbalance_ratio, seed=0))
    return train_set


def run_views(config: RunConfig, method_cls: type[Method], dataset, mean, std, device=None):
    """(view generator, layout) a run of `config` draws for `method_cls` on `dataset` (benchmarks
    build a step without the trainer with it)."""
    layout = layout_of(config, method_cls)
    options = {k: v for k, v in config.views.options.items() if k not in ("n_global", "n_local")}
    plugin = modality_of(dataset)
    views, _ = plugin.views(config.views.preset, options, layout, dataset, mean, std, device,
                            method_layout=dict(method_cls.views), prefer=method_cls.preferred_views.get(plugin.name))
    return views, layout


@dataclasses.dataclass
class Run:
    """Everything the step loop needs, built and checked."""

    config: RunConfig
    run_dir: Path
    train_set: object
    plugin: type
    backbone_name: str
    views_name: str
    layout: dict
    method: Method
    views: object
    optimizer: torch.optim.Optimizer
    mean: list
    std: list


def compile_backbone(backbone: torch.nn.Module, device: torch.device) -> None:
    """``train.compile``: compile the student backbone's forward in place (``nn.Module.compile``), so its
    parameter names, checkpoints and exported encoder are those of the eager module. Built after the
    method, whose momentum or teacher copies stay eager (they run without gradients). Compilation
    happens at the first step and again for each new input shape (DINO's local crops: one more
    graph). Inductor needs a C++ compiler on a CPU and Triton on a GPU; measured in BENCHMARKS.md
    ("torch.compile"): it pays on a GPU over long runs, not on the CPUs measured."""
    if device.type == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "c++", "clang++")):
        raise ConfigError("train.compile=true needs a C++ compiler on a CPU (torch.compile's inductor backend "
                          "builds its kernels with one), and none is on PATH.",
                          "install one (Debian: apt-get install g++), or drop train.compile.")
    backbone.compile()


def assemble(config: RunConfig, device: torch.device, gated: bool = False) -> Run:
    """Read the data, check the recipe against it and build the run's parts (see the module docstring).
    `gated`: the optimizer skips a step through ``found_inf`` (the on-device non-finite check, guard.py)."""
    method_cls = registry.get("method", config.method.name)
    registry.check_kwargs("method", config.method.name, config.method.options)
    train_set = load_train_set(config)
    plugin = modality_of(train_set)
    initial = None
    if config.train.adapters and not config.train.init_from:
        raise ConfigError(f"train.adapters={config.train.adapters} trains adapters in a frozen pretrained backbone, "
                          "but the run starts from scratch.", "set --init-from RUN (the encoder to adapt), or drop "
                          "train.adapters.")
    if config.train.init_from:
        initial, backbone_name = initial_encoder(config, plugin, train_set)
    else:
        backbone_name = resolve_backbone(config.backbone.name, plugin, config.data.name, method_cls)
    check_fit(config, method_cls, plugin, backbone_name, train_set)
    if getattr(train_set, "streaming", False) and method_cls.prepare is not Method.prepare:
        raise ConfigError(f"method '{config.method.name}' takes a pass over the whole training set before training, "
                          f"and '{config.data.name}' is streamed from shards.",
                          "pretrain it on the in-memory dataset, or choose another method.")
    cfg_t = config.train
    if cfg_t.batch_size > len(train_set):
        raise ConfigError(f"batch size {cfg_t.batch_size} is larger than the dataset ({len(train_set)} {plugin.nouns} "
                          f"in '{config.data.name}').", f"use --batch-size {len(train_set)} or smaller, or add data.")

    torch.manual_seed(cfg_t.seed)
    if initial is None:
        mean, std = train_set.normalization()
        # the input spec (channels and size, a table's columns) comes from the data; config.py refuses it as options
        backbone = build_backbone(backbone_name, **train_set.input_spec(), **config.backbone.options)
    else:  # continual pretraining: the encoder's weights and normalization (the heads start anew)
        mean, std = initial.mean.flatten().tolist(), initial.std.flatten().tolist()
        backbone = initial.backbone.train()
        if not cfg_t.adapters:  # an adapted encoder trained further as a whole: nothing frozen any more
            backbone.__dict__.pop("train", None)
            backbone.requires_grad_(True).train()
        if cfg_t.adapters:
            from ..backbones.adapters import add_adapters

            add_adapters(backbone, cfg_t.adapters)
    method = method_cls(backbone, **config.method.options)
    auxiliaries.attach(method, config.method.aux)
    method = method.to(device)
    if cfg_t.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if cfg_t.compile:
        compile_backbone(method.backbone, device)
    layout = layout_of(config, method_cls)
    options = {k: v for k, v in config.views.options.items() if k not in ("n_global", "n_local")}
    views, views_name = plugin.views(config.views.preset, options, layout, train_set, mean, std, device,
                                     method_layout=dict(method_cls.views),
                                     prefer=method_cls.preferred_views.get(plugin.name))  # as run_views, with the name
    optimizer = build_optimizer(method, config.optim.name, config.optim.lr, config.optim.weight_decay,
                                config.optim.momentum, config.optim.betas, config.optim.lars_eta, gated=gated)
    return Run(config, Path(config.out), train_set, plugin, backbone_name, views_name, layout, method, views, optimizer,
               list(mean), list(std))


def write_run_files(run: Run) -> None:
    """config.yaml and skipped.txt, written once every part is built (a refused run leaves no directory),
    then what the reader noticed; a read-only or full run directory fails here, before any training."""
    run_dir, train_set = run.run_dir, run.train_set
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "config.yaml",
                     lambda tmp: Path(tmp).write_text(yaml.safe_dump(to_dict(run.config), sort_keys=False)))
        if train_set.skipped:
            atomic_write(run_dir / "skipped.txt", lambda tmp: Path(tmp).write_text(
                "".join(f"{name}\t{reason}\n" for name, reason in train_set.skipped), encoding="utf-8",
                errors="backslashreplace"))
    except OSError as exc:
        raise disk_error(exc, run_dir / "config.yaml", "the run configuration") from exc
    if train_set.skipped:
        print(f"warning: skipped {len(train_set.skipped)} {run.plugin.unreadable} in '{run.config.data.name}', "
              f"e.g. {train_set.skipped[0][0]} ({train_set.skipped[0][1]}); listed in {run_dir / 'skipped.txt'}",
              file=sys.stderr)
    for note in getattr(train_set, "notes", ()):
        print(f"note: {note}", file=sys.stderr)
