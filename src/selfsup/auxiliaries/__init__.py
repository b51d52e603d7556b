"""Auxiliary objectives any joint-embedding method can switch on (``method.aux`` in the config).

Importing this package registers every auxiliary; ``base`` has the contract.
"""
from . import augaware, msbreg, pretext  # noqa: F401  (register the auxiliaries)
from .base import Auxiliary, add_losses, attach, before, on_step_end

__all__ = ["Auxiliary", "add_losses", "attach", "before", "on_step_end"]
