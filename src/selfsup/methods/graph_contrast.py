"""Graph contrastive methods built from the generic ones: GraphCL (graph level), GRACE and BGRL (node level)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..heads import mlp
from ..losses.contrastive import graphcl_loss, nt_xent
from ..registry import register
from ..samples import cat
from .base import Batch, Method
from .byol import BYOL


@register("method", "graphcl")
class GraphCL(Method):
    """You, Chen, Sui, Chen, Wang, Shen. Graph Contrastive Learning with Augmentations. NeurIPS 2020,
    arXiv:2010.13902.

    Two views of each graph, each one augmentation drawn from node dropping, edge perturbation,
    attribute masking (strength 0.2) and an 80% subgraph (``views.preset=graphcl``, picked by auto);
    the backbone's pooled features through a projection head ``Linear-ReLU-Linear`` (the paper's);
    ``losses.graphcl_loss``: NT-Xent at temperature 0.2 with the positive left out of the
    denominator, from the first view's side, as its code computes it."""

    paper = ("You, Chen, Sui, Chen, Wang, Shen. Graph Contrastive Learning with Augmentations. NeurIPS 2020, "
             "arXiv:2010.13902")
    family = "contrastive"
    batch_terms = "gather"  # every rank's second views are negatives
    preferred_views = {"graph": "graphcl"}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 128, out_dim: int = 128, temperature: float = 0.2):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"graphcl temperature must be positive, got {temperature}.", "use e.g. 0.2 (the paper's).")
        self.temperature = temperature
        self.projector = mlp([backbone.dim, hidden_dim, out_dim], norm=None)
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D): both views in one pass
        z = self.projector(h)
        z1, z2 = z.chunk(2)
        return {"loss": graphcl_loss(z1, z2, self.temperature), "features": h, "embeddings": z}


@register("method", "grace")
class GRACE(Method):
    """Zhu, Xu, Yu, Liu, Wu, Wang. Deep Graph Contrastive Representation Learning (GRACE). ICML
    Workshop on Graph Representation Learning 2020, arXiv:2006.04131.

    Node level: two views of the graph with edges removed (p 0.2 / 0.4) and feature columns masked
    (p 0.3 / 0.4; ``views.preset=grace``); a GCN (2 layers in the paper, ``--backbone gcn``) gives every
    node a representation; a projection head ``Linear-ELU-Linear``; the loss for node i: its other
    view is the positive, every other node of both views a negative (eq. 1-2), at temperature 0.5.
    That is NT-Xent over the 2B nodes of the batch (the paper uses all nodes: set
    ``train.batch_size`` to the node count for the full-batch objective)."""

    paper = ("Zhu, Xu, Yu, Liu, Wu, Wang. Deep Graph Contrastive Representation Learning. ICML GRL+ Workshop 2020, "
             "arXiv:2006.04131")
    family = "contrastive"
    batch_terms = "gather"  # every rank's nodes are negatives (NT-Xent)
    preferred_views = {"graph": "grace"}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 128, out_dim: int = 128, temperature: float = 0.5):
        super().__init__(backbone)
        if temperature <= 0:
            raise ConfigError(f"grace temperature must be positive, got {temperature}.", "use e.g. 0.5.")
        self.temperature = temperature
        self.projector = nn.Sequential(nn.Linear(backbone.dim, hidden_dim), nn.ELU(), nn.Linear(hidden_dim, out_dim))
        self.embedding_dim = out_dim

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        h = self.backbone(cat(batch.views[:2]))  # (2B, D): the batch's nodes in both views, one pass
        z = self.projector(h)
        z1, z2 = z.chunk(2)
        return {"loss": nt_xent(z1, z2, self.temperature), "features": h, "embeddings": z}


@register("method", "bgrl")
class BGRL(BYOL):
    """Thakoor, Tallec, Azar, Azabou, Dyer, Munos, Veličković, Valko. Large-Scale Representation
    Learning on Graphs via Bootstrapping (BGRL). ICLR 2022, arXiv:2102.06514.

    BYOL on graph views: an online encoder and predictor, a target encoder that is an EMA of the online
    one (momentum cosine from 0.99 to 1), the cosine loss between the online prediction of one view and
    the target representation of the other, both ways; no negatives. The views are GRACE's (edge
    dropping and feature masking, ``views.preset=grace``). The paper predicts from the encoder's output
    with no projector; here the BYOL projector stays (a width-preserving MLP), a choice of this
    implementation: ``mlp([D, 512, 128])``, then the predictor ``mlp([128, 512, 128])``."""

    paper = ("Thakoor, Tallec, Azar, Azabou, Dyer, Munos, Veličković, Valko. Large-Scale Representation Learning on "
             "Graphs via Bootstrapping. ICLR 2022, arXiv:2102.06514")
    preferred_views = {"graph": "grace"}

    def __init__(self, backbone: nn.Module, hidden_dim: int = 512, out_dim: int = 128, pred_hidden_dim: int = 512,
                 base_momentum: float = 0.99, final_momentum: float = 1.0):
        super().__init__(backbone, hidden_dim, out_dim, pred_hidden_dim, base_momentum, final_momentum)
