"""Image encoders. Importing this package registers every backbone; build one with ``build_backbone``."""
from . import convnet, resnet, scattering, timm_backbone, vit  # noqa: F401  (imported for their @register side effect)
from .base import build_backbone

__all__ = ["build_backbone"]
