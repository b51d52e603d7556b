"""Self-supervised methods, one module each. Importing this package registers every method."""
from . import barlow_twins, byol, dino, mae, simclr, swav, vicreg  # noqa: F401  (imported for their @register side effect)
from .base import Batch, Method

__all__ = ["Batch", "Method"]
