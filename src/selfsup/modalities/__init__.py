"""Modality plug-ins: one per kind of data (see ``base.py`` for the contract)."""
from . import graph, image, series, table  # noqa: F401  (register the plug-ins)
from .base import Modality, fits_encoder, modality_of, same_kind

__all__ = ["Modality", "fits_encoder", "modality_of", "same_kind"]
