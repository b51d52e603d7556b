"""Self-supervised methods, one module each. Importing this package registers every method."""
from . import barlow_twins, byol, dino, mae, simclr, swav, vicreg  # noqa: F401  (imported for their @register side effect)
from . import dcl, moco_v2, moco_v3, nnclr, simsiam, supcon  # noqa: F401  (the contrastive family)
from . import mixed_barlow_twins, sla, supervised  # noqa: F401  (supervised references and Mixed Barlow Twins)
from . import msbreg  # noqa: F401  (embedding dynamics)
from . import obow  # noqa: F401  (bag-of-visual-words distillation)
from . import mugs  # noqa: F401  (multi-granular: instance, local-group, group)
from . import groco  # noqa: F401  (learning by sorting)
from . import gsimclr  # noqa: F401  (SimCLR guided by k-means pseudo-labels)
from . import ts2vec, tstcc  # noqa: F401  (time series: hierarchical and temporal/contextual contrast)
from . import graph_contrast  # noqa: F401  (graphs: GraphCL, GRACE, BGRL)
from . import dsla  # noqa: F401  (graphs: discrepancy learning against perturbed graphs)
from . import scgc  # noqa: F401  (nodes: contrastive graph clustering on an MLP)
from .base import Batch, Method

__all__ = ["Batch", "Method"]
