"""Run configuration: frozen dataclasses, and YAML/flags <-> dataclasses in one place.

A run is described by one :class:`RunConfig`. YAML files and ``--set section.key=value`` flags map
onto it here and nowhere else. Unknown keys are errors that name the key path and the closest
valid key; values are type-checked and range-checked before any work starts.

Method and backbone options are the keyword arguments of the registered constructors
(``selfsup methods`` lists them with their defaults), so ``method: {name: simclr, temperature: 0.2}``
is validated against ``SimCLR.__init__``.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, closest


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion-mnist"  # a named dataset (`selfsup datasets`), an image folder, a .npy/.npz file or a table (.csv/.parquet)
    root: str | None = None  # where named datasets live; else $SELFSUP_DATA, /usr/share/datasets, the user cache
    train_split: str = "train"
    test_split: str | None = "test"  # split name, or a path to separate test data; evaluated after pretraining
    modality: str = "auto"  # the kind of data (selfsup.modalities): auto = from the name or file; e.g. series for a float (N, H, W) .npy
    image_size: int | None = None  # resize folders to this size; None = the most common size
    label: str | None = None  # tables: the label column (None = one named label/target/class/y, if any; "" = none)
    categorical: tuple[str, ...] = ()  # tables: columns read as categories even when they look numeric (codes, zips)
    numeric: tuple[str, ...] = ()  # tables: columns read as numbers; a value that is not one makes its row skipped
    workers: int = 2  # shard directories: processes that read and decode shards (0 = in the training process)
    imbalance_ratio: float | None = None  # long-tailed train split: class i of K keeps n_max * r^(-i/(K-1)) (evaluation/imbalance.py)


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "auto"  # auto = convnet6 for images, mlp for tables
    options: dict = field(default_factory=dict)  # constructor kwargs, e.g. {width: 48}


@dataclass(frozen=True)
class MethodConfig:
    name: str = "simclr"
    options: dict = field(default_factory=dict)  # constructor kwargs, e.g. {temperature: 0.2}
    # auxiliary objectives added to the method's loss (`selfsup methods` lists them), each a mapping
    # {name: ..., weight: ..., <options>}, e.g. aux: [{name: augaware, weight: 0.1}]
    aux: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ViewsConfig:
    preset: str = "auto"  # auto = the method's preset for the data (fmnist for 1-channel 28x28, simclr otherwise)
    options: dict = field(default_factory=dict)  # ImageViewConfig fields overriding the preset


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"  # adamw | sgd | lars
    lr: float = 2e-3  # the peak learning rate (after warmup); not scaled by batch size
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd and lars
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | constant | wsd | infinite (selfsup/schedules.py)
    final_lr_ratio: float = 0.0  # cosine, wsd and infinite end at lr * final_lr_ratio (infinite: > 0, e.g. 0.1)
    cooldown_steps: int = 0  # infinite: the cosine from lr down to lr * const_lr_ratio after warmup
    const_lr_ratio: float = 0.25  # infinite: the constant phase's lr / lr
    decay_steps: int | None = None  # wsd and infinite: the final decay's length; None = the last 20% of the steps
    clip_grad: float | None = None  # max gradient L2 norm; None = no clipping
    lars_eta: float = 0.02  # LARS trust coefficient (You et al. 2017 use 0.001 with SGD lr scaling; BYOL/Barlow use 0.001-0.02)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CPUs with AMX/AVX512-BF16 and on GPUs that have it) | bf16 | fp16 | fp32
    channels_last: bool = True  # ~30% faster convs on CPU
    compile: bool = False  # torch.compile the backbone's forward (inductor); pays on a GPU over long runs, not on CPUs: BENCHMARKS.md
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # the newest complete checkpoints kept; older ones are deleted after a new one is written
    log_every: int = 10
    monitor_every: int = 0  # online kNN on a held-out subset every N steps (0 = off)
    monitor_bank: int = 5000  # labelled train images the monitor's kNN votes with
    monitor_queries: int = 1000  # other train images it classifies
    progress: bool = True  # progress bar on stderr
    threads: int | None = None  # torch intra-op threads; None = torch's default
    on_nonfinite: str = "stop"  # a NaN/Inf loss or gradient: stop (saving the last good weights) | skip the step
    max_skips: int = 10  # on_nonfinite=skip: this many bad steps in a row are skipped, the next one stops the run
    nonfinite_check: str = "auto"  # host (read every step) | device (no host read in the step) | auto: device on CUDA; train/guard.py
    init_from: str | None = None  # continual pretraining: start the backbone from this run or exported encoder, or timm:MODEL[=FILE]
    budget: str | None = None  # train for a time: "10m", "90s", "1h"; fixes train.steps after timing the first steps
    adapters: int = 0  # with init_from: freeze the backbone and train bottleneck adapters this wide (0 = train it all)
    collapse_check_every: int = 25  # collapse alarm on the step's own embeddings every N steps (0 = off); train/monitor.py
    collapse_min_std: float = 0.05  # alarm when their std (L2-normalized, times sqrt(dim)) stays below this
    collapse_min_rank: float = 0.05  # ... or their effective rank stays below this fraction of min(rows, dim, 64)
    collapse_patience: int = 3  # checks in a row below a threshold before the (single) warning


@dataclass(frozen=True)
class EvalConfig:
    protocols: tuple[str, ...] = ("knn", "linear", "rankme")
    knn_k: int = 20
    knn_temperature: float = 0.07
    batch_size: int = 1024


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    out: str = "runs/run"


# Sections whose extra keys are constructor options of a registered name (checked later against it).
_OPEN_SECTIONS = {"backbone", "method", "views"}

_RANGES = {
    "train.steps": (1, None), "train.batch_size": (1, None), "train.checkpoint_every": (1, None),
    "train.keep_checkpoints": (1, None), "train.log_every": (1, None), "train.monitor_every": (0, None),
    "train.max_skips": (1, None), "train.collapse_check_every": (0, None), "train.collapse_min_std": (0.0, 1.0),
    "train.collapse_min_rank": (0.0, 1.0), "train.collapse_patience": (1, None),
    "optim.lr": (0.0, None), "optim.weight_decay": (0.0, None), "optim.warmup_steps": (0, None),
    "optim.final_lr_ratio": (0.0, 1.0), "optim.cooldown_steps": (0, None), "optim.const_lr_ratio": (0.0, 1.0),
    "optim.decay_steps": (1, None), "train.adapters": (0, None), "optim.momentum": (0.0, 1.0), "eval.knn_k": (1, None),
    "data.image_size": (1, None), "data.imbalance_ratio": (1.0, None), "train.threads": (1, None), "data.workers": (0, None), "train.monitor_bank": (1, None),
    "train.monitor_queries": (1, None), "eval.batch_size": (1, None), "eval.knn_temperature": (0.0, None),
    "optim.clip_grad": (0.0, None), "optim.lars_eta": (0.0, None), "optim.betas": (0.0, 1.0),
}
# Bounds that the value must not equal: (low excluded, high excluded). A tuple value is checked per element.
_EXCLUSIVE = {"eval.knn_temperature": (True, False), "optim.clip_grad": (True, False), "optim.betas": (False, True)}
_CHOICES = {
    "optim.name": ("adamw", "sgd", "lars"), "optim.schedule": ("cosine", "constant", "wsd", "infinite"),
    "train.precision": ("auto", "bf16", "fp16", "fp32"), "train.on_nonfinite": ("stop", "skip"),
    "train.nonfinite_check": ("auto", "host", "device"),
}


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check `value` against a field's type (resolved by ``typing.get_type_hints``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value] if args and args[-1] is Ellipsis else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {value!r}.", f"write e.g. {path}: [..]")
        inner = args[0] if args and args[-1] is Ellipsis else None
        if inner is None and args and len(args) != len(value):
            raise ConfigError(f"{path} needs {len(args)} values, got {list(value)!r}.", f"give {len(args)} values.")
        return tuple(_coerce(v, inner or args[i], f"{path}[{i}]") for i, v in enumerate(value))
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}.", f"write {path} as key: value pairs.")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path} must be true or false, got {value!r}.", f"set {path}=true or {path}=false.")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path} must be an integer, got {value!r}.", f"set {path} to a whole number.")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{path} must be an integer, got {value!r}.", f"set {path} to a whole number.") from None
        if number != int(number):
            raise ConfigError(f"{path} must be an integer, got {value!r}.", f"set {path} to a whole number.")
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path} must be a number, got {value!r}.", f"set {path} to a number such as 0.001.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path} must be a number, got {value!r}.", f"set {path} to a number such as 0.001.") from None
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{path} must be a string, got {value!r}.", f"set {path} to a name or path.")
        return str(value)
    return value


def _build(cls, data: dict, path: str):
    if not isinstance(data, dict):
        raise ConfigError(f"section '{path or 'top level'}' must be a mapping, got {data!r}.", "see configs/ for examples.")
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)  # the annotations are strings (postponed evaluation): resolve them once
    section = path.split(".")[-1] if path else ""
    kwargs, extra = {}, {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else key
        if key not in known:
            if section in _OPEN_SECTIONS:
                extra[key] = value  # shorthand: method: {name: simclr, temperature: 0.2}
                continue
            raise ConfigError(f"unknown config key '{key_path}'.{closest(key, known)}",
                              f"valid keys here: {', '.join(known)}.")
        f = known[key]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            kwargs[key] = _build(f.default_factory, value if value is not None else {}, key_path)
        else:
            kwargs[key] = _coerce(value, hints[key], key_path)
    if extra:
        kwargs["options"] = {**kwargs.get("options", {}), **extra}
    config = cls(**kwargs)
    _check_ranges(config, path)
    return config


def _check_ranges(config, path: str) -> None:
    for f in fields(config):
        key_path = f"{path}.{f.name}" if path else f.name
        value = getattr(config, f.name)
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f"{key_path}={value!r} is not a finite number.", "use a finite value.")
        if key_path in _RANGES and value is not None:
            low, high = _RANGES[key_path]
            open_low, open_high = _EXCLUSIVE.get(key_path, (False, False))
            for v in numbers:
                if (low is not None and (v < low or (open_low and v == low))) or \
                        (high is not None and (v > high or (open_high and v == high))):
                    above = f"{'>' if open_low else '>='} {low}"
                    bounds = above if high is None else f"{above} and {'<' if open_high else '<='} {high}"
                    raise ConfigError(f"{key_path}={value!r} is out of range.", f"use a value {bounds}.")
        if key_path in _CHOICES and value not in _CHOICES[key_path]:
            raise ConfigError(f"{key_path}={value!r} is not a valid choice.{closest(value, _CHOICES[key_path])}",
                              f"choose one of: {', '.join(_CHOICES[key_path])}.")


def to_dict(config) -> dict:
    """A plain, YAML-safe dict of the config (tuples become lists)."""

    def plain(value):
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def from_dict(data: dict) -> RunConfig:
    config = _build(RunConfig, data or {}, "")
    _check_registered(config)
    _check_schedule(config)
    return config


def budget_seconds(text: str | None) -> float | None:
    """"10m" / "90s" / "1.5h" / "600" (seconds) -> seconds; None -> None; anything else: ConfigError."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ConfigError(f"train.budget={text!r} is not a duration.", "use e.g. --budget 10m, 90s or 1h.")
    return seconds


def _check_schedule(config: RunConfig) -> None:
    """The phases of a learning-rate schedule fit in the run (ConfigError before any work)."""
    budget_seconds(config.train.budget)
    o, steps = config.optim, config.train.steps
    if o.schedule == "infinite" and (o.final_lr_ratio <= 0 or o.const_lr_ratio <= 0):
        raise ConfigError(f"optim.schedule=infinite anneals exponentially to lr * final_lr_ratio, which must be above 0 "
                          f"(final_lr_ratio={o.final_lr_ratio}, const_lr_ratio={o.const_lr_ratio}).",
                          "set e.g. --set optim.final_lr_ratio=0.1 (Singh et al. use 0.1 with const_lr_ratio 0.25).")
    if o.schedule in ("wsd", "infinite") and config.train.budget is None:  # a budget's steps are fixed later
        from .schedules import phases

        before, decay = phases(o.schedule, steps, o.warmup_steps, o.cooldown_steps, o.decay_steps)
        if before + decay > steps:
            raise ConfigError(f"optim.schedule={o.schedule}: warmup {o.warmup_steps}"
                              + (f" + cooldown {o.cooldown_steps}" if o.schedule == "infinite" else "")
                              + f" + final decay {decay} steps is more than train.steps={steps}.",
                              "shorten the phases (optim.warmup_steps, optim.cooldown_steps, optim.decay_steps) or "
                              "train longer.")


def _check_option_types(options: dict, defaults: dict, section: str) -> None:
    """A scalar option whose kind (bool / integer / number / text) differs from its default's is an
    error here, before the constructor meets it; None and lists are left to the constructor."""
    for key, value in options.items():
        default = defaults.get(key)
        if value is None or default is None or not isinstance(value, (bool, int, float, str)):
            continue
        path = f"{section}.{key}"
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok = not isinstance(value, (bool, str)) and float(value).is_integer()
            kind = "an integer"
        elif isinstance(default, float):
            ok, kind = not isinstance(value, (bool, str)) and math.isfinite(value), "a finite number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise ConfigError(f"{path} must be {kind} (default {default!r}), got {value!r}.",
                              f"set {path} to {kind}, e.g. {path}={default!r}.")


def _check_registered(config: RunConfig) -> None:
    """Names and options that refer to registries (methods, backbones, auxiliaries, protocols) and
    view options, checked when the config is built so that a typo fails before any data is read
    or any file written. Values that only a constructor can judge are still checked there."""
    import dataclasses as dc
    import importlib

    from . import registry

    def registered(kind: str, name: str, path: str):
        names = registry.names(kind)
        if name not in names:
            raise ConfigError(f"{path}={name!r} is not a registered {kind}.{closest(name, names)}",
                              f"choose one of: {', '.join(names)}.")
        return registry.get(kind, name)

    def options(kind: str, cls, values: dict, section: str, skip=()) -> None:
        valid = {k: v for k, v in registry.defaults(cls).items() if k not in skip}
        for key in values:
            if key not in valid:
                raise ConfigError(f"unknown config key '{section}.{key}' for {kind} {cls.registered_name!r}.{closest(key, valid)}",
                                  f"valid keys here: {', '.join(valid) or '(none)'}.")
        _check_option_types(values, valid, section)

    method = registered("method", config.method.name, "method.name")
    options("method", method, config.method.options, "method")
    from .data.catalogue import guess_modality
    from .modalities import modality_of
    from .modalities.base import plugins

    # auto: the default backbone of the data's modality (train/assemble.py), guessed from the name alone
    kinds = registry.names("modality")
    chosen = {"auto": None}.get(config.data.modality, config.data.modality)  # None: from the data's name
    if chosen is not None and chosen not in kinds:
        raise ConfigError(f"data.modality={chosen!r} is not a modality.{closest(chosen, kinds)}",
                          f"choose one of: auto, {', '.join(kinds)}.")
    kind = guess_modality(config.data.name, config.data.root) if chosen is None else chosen
    name = config.backbone.name if config.backbone.name != "auto" else modality_of(kind).default_backbone
    backbone = registered("backbone", name, "backbone.name")
    data_keys = tuple(key for plugin in plugins() for key in plugin.input_keys)  # the data fixes these
    options("backbone", backbone, config.backbone.options, "backbone", skip=data_keys)
    for i, spec in enumerate(config.method.aux):
        path = f"method.aux[{i}]"
        if "name" not in spec:
            raise ConfigError(f"{path} has no 'name'.", "write e.g. method.aux=[{name: augaware, weight: 0.1}].")
        aux = registered("auxiliary", spec["name"], f"{path}.name")
        options("auxiliary", aux, {k: v for k, v in spec.items() if k not in ("name", "weight")}, path, skip=("method",))
        weight = spec.get("weight", 0.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ConfigError(f"{path}.weight must be a finite number >= 0, got {weight!r}.", "use e.g. weight: 0.1.")
    importlib.import_module(f"{__package__}.evaluation")  # registers the protocols (`selfsup.evaluate` is also a function)
    for i, name in enumerate(config.eval.protocols):
        registered("protocol", name, f"eval.protocols[{i}]")
    presets = ("auto", *dict.fromkeys(p for plugin in plugins() for p in plugin.presets))
    if config.views.preset not in presets:
        raise ConfigError(f"views.preset={config.views.preset!r} is not a preset.{closest(config.views.preset, presets)}",
                          f"choose one of: {', '.join(presets)}.")
    # The options of any modality's views: which one applies is known once the data is read (the plug-in checks again).
    view_fields = {name: hint for plugin in plugins() if plugin.view_config is not None
                   for name, hint in typing.get_type_hints(plugin.view_config).items()
                   if name in {f.name for f in dc.fields(plugin.view_config)}}
    for key, value in config.views.options.items():
        if key not in view_fields:
            raise ConfigError(f"unknown config key 'views.{key}'.{closest(key, view_fields)}",
                              f"valid keys here: {', '.join(view_fields)}.")
        _coerce(value, view_fields[key], f"views.{key}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-3' -> (['optim', 'lr'], 0.001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} has no '='.", "write --set section.key=value, e.g. --set optim.lr=0.001.")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def merge(data: dict, keys: list[str], value: Any) -> dict:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{'.'.join(keys)}': '{key}' is not a section.", "check the key path.")
    node[keys[-1]] = value
    return data


def load(path: str | Path | None = None, overrides: list[str] = (), **flags: Any) -> RunConfig:
    """Build a RunConfig from an optional YAML file, then `--set` overrides, then named flags.

    `flags` use dotted names with '__' as the separator (e.g. ``train__steps=100``); None values are ignored.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist.", "check the path, or omit --config to use the defaults.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML ({str(exc).splitlines()[0]}).", "fix the YAML syntax.") from None
    for text in overrides:
        merge(data, *parse_override(text))
    for name, value in flags.items():
        if value is not None:
            merge(data, name.split("__"), value)
    return from_dict(data)
