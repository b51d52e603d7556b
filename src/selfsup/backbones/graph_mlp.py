"""``node_mlp``: an MLP on node features alone, no message passing (SCGC's encoder).

A node's representation comes from its own features only: a batch of nodes (``data.graph.Nodes``)
-> the MLP of ``nodes.graphs.x[nodes.rows]``, (B, D); the graph's edges are never read, so an
encoder exported from it embeds nodes without their graph, at the cost of one MLP per node.
Methods that train it with the graph's structure (SCGC, ``methods/scgc.py``) put the structure in
the loss instead of the forward pass.

Layers: ``Linear -> ReLU`` for each width in ``hidden_dims``, then a last ``Linear`` to ``out_dim``
with no activation. The defaults, 500-500-2000-10, are the encoder of the SDCN autoencoder (Bo et
al., "Structural Deep Clustering Network", WWW 2020, arXiv:2002.01633) that SCGC (Kulatilleke,
Portmann, Chandra, arXiv:2204.12656) trains, as its authors' code does (gayanku/SCGC, models.py).

It also takes a batch of graphs (``data.graph.Graphs``: every node through the MLP, then pooled per
graph, ``pool``) and a plain (N, F) tensor of node features.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import backbone

POOLS = ("mean", "sum", "max")


@backbone("node_mlp", "graph")
class NodeMLP(nn.Module):
    """Node features (B, F) -> (B, out_dim), without the edges (see the module docstring)."""

    def __init__(self, in_channels: int, edge_dim: int = 0, hidden_dims: tuple[int, ...] = (500, 500, 2000),
                 out_dim: int = 10, pool: str = "mean"):
        super().__init__()
        try:
            widths = [int(w) for w in hidden_dims]
        except (TypeError, ValueError):
            raise ConfigError(f"node_mlp hidden_dims must be a list of widths, got {hidden_dims!r}.",
                              "set e.g. backbone.hidden_dims=[500,500,2000].") from None
        if in_channels < 1 or out_dim < 1 or any(w < 1 for w in widths) or pool not in POOLS:
            raise ConfigError(f"node_mlp needs in_channels, out_dim and every hidden width >= 1 and pool in {POOLS}; "
                              f"got {in_channels}, {out_dim}, {widths}, {pool!r}.",
                              "use e.g. hidden_dims=[500,500,2000] out_dim=10.")
        layers: list[nn.Module] = []
        d_in = in_channels
        for width in widths:
            layers += [nn.Linear(d_in, width), nn.ReLU()]
            d_in = width
        layers.append(nn.Linear(d_in, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_channels, self.hidden_dims, self.pool = in_channels, tuple(widths), pool
        self.dim = out_dim

    def forward_nodes(self, g) -> torch.Tensor:
        """(V, D) representations of every node of the graphs `g` (each from its own features)."""
        return self.net(g.x.to(self.net[0].weight.dtype))

    def forward(self, x) -> torch.Tensor:
        rows = getattr(x, "rows", None)
        if rows is not None:  # a batch of nodes: only their own feature rows are read
            return self.net(x.graphs.x[rows].to(self.net[0].weight.dtype))
        if isinstance(x, torch.Tensor):
            return self.net(x.to(self.net[0].weight.dtype))
        from .graph import pool_nodes  # a batch of graphs: pooled per graph

        return pool_nodes(self.forward_nodes(x), x.batch, len(x), self.pool)
