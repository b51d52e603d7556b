"""Encoders for images (convnet, resnet, vit, timm, scatnet), tables (mlp), time series (ts2vec_cnn,
resnet1d, patchtst) and graphs (gin, gcn, node_mlp). Importing this package registers every backbone; build one with ``build_backbone``."""
from . import convnet, graph, graph_mlp, mlp, resnet, scattering, series, timm_backbone, vit  # noqa: F401  (their @backbone registers them)
from .base import build_backbone

__all__ = ["build_backbone"]
