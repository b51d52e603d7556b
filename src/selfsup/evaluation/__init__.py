"""Evaluation of a frozen encoder: protocols run on features extracted once and cached.

``context.py`` has what every protocol shares (the context that extracts and caches features, the
``@protocol`` decorator, the fit check and the runner); each protocol registers in its own module
under ``protocols/``, next to nothing else; the algorithms are plain functions in the modules named
after them (``knn.py``, ``linear.py``, ``fewshot.py``, ...).

    results = evaluate(encoder, train_set, test_set, protocols=("knn", "linear"), cache_dir="runs/x/features")
    results["knn"]["accuracy"]
"""
from __future__ import annotations

from . import protocols  # noqa: F401  (registers every protocol)
from .context import (DEFAULT_PROTOCOLS, EvalContext, classes_in, default_views, evaluate, protocol, requirements,
                      unfit_reason)
from .features import cached_features, extract_features

__all__ = ["DEFAULT_PROTOCOLS", "EvalContext", "evaluate", "extract_features", "cached_features", "protocol",
           "requirements", "unfit_reason", "default_views", "classes_in"]
