"""Name -> class/function registries for methods, backbones, auxiliaries, evaluation protocols and modalities.

Adding a method is one file with ``@register("method", "name")``; the CLI, ``selfsup methods``
and the registry-wide smoke tests then see it. Duplicate names fail loudly at import time.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from .errors import ConfigError, closest

KINDS = ("method", "backbone", "protocol", "auxiliary", "modality")
_REGISTRY: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str) -> Callable[[Any], Any]:
    """Decorator: register a class or builder function under `kind`/`name`."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")

    def wrap(obj):
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} {name!r} is registered twice ({_REGISTRY[kind][name]} and {obj})")
        _REGISTRY[kind][name] = obj
        obj.registered_name = name
        return obj

    return wrap


def _load(kind: str) -> None:
    # Importing the package modules runs their @register decorators.
    if kind == "method":
        from . import methods  # noqa: F401
    elif kind == "backbone":
        from . import backbones  # noqa: F401
    elif kind == "protocol":
        importlib.import_module(f"{__package__}.evaluation")  # the subpackage, not api.evaluate re-exported as selfsup.evaluate
    elif kind == "auxiliary":
        from . import auxiliaries  # noqa: F401
    elif kind == "modality":
        from . import modalities  # noqa: F401


def get(kind: str, name: str) -> Any:
    """The object registered as `kind`/`name`; an unknown name is a ConfigError with a suggestion."""
    _load(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        names = sorted(_REGISTRY[kind])
        listing = _LISTED_BY.get(kind)
        raise ConfigError(
            f"unknown {kind} {name!r}.{closest(name, names)}",
            f"choose one of: {', '.join(names)}" + (f" (`{listing}` describes each)." if listing else "."),
        ) from None


# The command that lists each kind with its details (backbones are listed only in the error itself).
_LISTED_BY = {"method": "selfsup methods", "auxiliary": "selfsup methods", "protocol": "selfsup protocols"}


def names(kind: str) -> list[str]:
    _load(kind)
    return sorted(_REGISTRY[kind])


def defaults(obj: Any) -> dict[str, Any]:
    """Keyword defaults of a registered class's constructor (or a function), in order."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    out = {}
    for p in inspect.signature(target).parameters.values():
        if p.default is not inspect.Parameter.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            out[p.name] = p.default
    return out


def parameters(obj: Any) -> list[str]:
    """Every keyword a registered class's constructor (or a function) takes, with or without a default."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    return [p.name for p in inspect.signature(target).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]


def check_kwargs(kind: str, name: str, kwargs: dict[str, Any]) -> None:
    """Reject keyword arguments the registered constructor does not take, naming the closest."""
    valid = parameters(get(kind, name))
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"{kind} {name!r} has no option {key!r}.{closest(key, valid)}",
                f"valid options: {', '.join(valid) or '(none)'}.",
            )
