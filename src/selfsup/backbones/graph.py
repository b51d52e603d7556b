"""Graph backbones: message passing with PyTorch Geometric's layers on a ``data.graph.Graphs`` batch.

A batch of graphs -> (B, D) graph-level features (pooled over each graph's nodes); a batch of
``data.graph.Nodes`` (nodes of one or a few graphs) -> (B, D) node-level features;
``forward_nodes(graphs)`` -> (V, D) every node's representation. Only the pure-Python parts of
PyTorch Geometric are used (its compiled extensions are optional and absent here).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .base import backbone

POOLS = ("mean", "sum", "max")


def _pyg():
    try:
        import torch_geometric.nn as gnn
    except ImportError:
        raise ConfigError("graph backbones need PyTorch Geometric, which is not installed.",
                          "pip install 'selfsup[graph]' (torch_geometric, rdkit, networkx).") from None
    return gnn


def pool_nodes(h: torch.Tensor, batch: torch.Tensor, num_graphs: int, how: str) -> torch.Tensor:
    """(V, D) node features -> (B, D) per graph by `how` (mean, sum or max); an empty graph gives zeros."""
    out = torch.zeros(num_graphs, h.shape[1], dtype=h.dtype, device=h.device)
    if how == "max":
        out = out.fill_(float("-inf")).scatter_reduce(0, batch[:, None].expand_as(h), h, reduce="amax")
        return torch.where(torch.isfinite(out), out, torch.zeros_like(out))
    out = out.index_add(0, batch, h)
    if how == "mean":
        counts = torch.zeros(num_graphs, dtype=h.dtype, device=h.device).index_add_(0, batch, torch.ones_like(batch, dtype=h.dtype))
        out = out / counts.clamp_min(1)[:, None]
    return out


class GNN(nn.Module):
    """`layers` message-passing layers (GIN, GINE with edge features, or GCN), each followed by
    BatchNorm and ReLU (none after the last, as in Hu et al. 2020), then pooling."""

    def __init__(self, kind: str, in_channels: int, edge_dim: int = 0, hidden_dim: int = 128, layers: int = 5,
                 pool: str = "mean", jk: str = "last", dropout: float = 0.0):
        super().__init__()
        if layers < 1 or hidden_dim < 1 or pool not in POOLS or jk not in ("last", "concat") or not 0 <= dropout < 1:
            raise ConfigError(f"{kind} needs layers >= 1, hidden_dim >= 1, pool in {POOLS}, jk last or concat and "
                              f"0 <= dropout < 1; got {layers}, {hidden_dim}, {pool!r}, {jk!r}, {dropout}.",
                              "use e.g. layers=5, hidden_dim=128, pool=mean.")
        gnn = _pyg()
        self.kind, self.pool, self.jk, self.dropout = kind, pool, jk, dropout
        self.uses_edges = kind == "gin" and edge_dim > 0
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        for i in range(layers):
            c_in = in_channels if i == 0 else hidden_dim
            if kind == "gin":
                mlp = nn.Sequential(nn.Linear(c_in, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                                    nn.Linear(hidden_dim, hidden_dim))
                conv = gnn.GINEConv(mlp, edge_dim=edge_dim) if self.uses_edges else gnn.GINConv(mlp)
            else:
                conv = gnn.GCNConv(c_in, hidden_dim)
            self.convs.append(conv)
            self.norms.append(nn.BatchNorm1d(hidden_dim))
        self.dim = hidden_dim * (layers if jk == "concat" else 1)

    def forward_nodes(self, g) -> torch.Tensor:
        """(V, D) representations of every node of the graphs `g`."""
        h, outs = g.x, []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = conv(h, g.edge_index, g.edge_attr) if self.uses_edges else conv(h, g.edge_index)
            h = norm(h)
            if i < len(self.convs) - 1:
                h = torch.relu(h)
            if self.dropout:
                h = nn.functional.dropout(h, self.dropout, self.training)
            outs.append(h)
        return torch.cat(outs, dim=1) if self.jk == "concat" else h

    def forward(self, g) -> torch.Tensor:
        nodes = getattr(g, "rows", None)
        if nodes is not None:  # a batch of nodes: their rows of the node representations of their graphs
            return self.forward_nodes(g.graphs)[nodes]
        return pool_nodes(self.forward_nodes(g), g.batch, len(g), self.pool)


@backbone("gin", "graph")
def gin(in_channels: int, edge_dim: int = 0, hidden_dim: int = 128, layers: int = 5, pool: str = "mean",
        jk: str = "last", dropout: float = 0.0) -> GNN:
    """GIN (Xu, Hu, Leskovec, Jegelka, ICLR 2019); with edge features GINE (Hu et al., ICLR 2020),
    5 layers as in "Strategies for Pre-training Graph Neural Networks" (300 wide there, 128 here)."""
    return GNN("gin", in_channels, edge_dim, hidden_dim, layers, pool, jk, dropout)


@backbone("gcn", "graph")
def gcn(in_channels: int, edge_dim: int = 0, hidden_dim: int = 128, layers: int = 2, pool: str = "mean",
        jk: str = "last", dropout: float = 0.0) -> GNN:
    """GCN (Kipf and Welling, ICLR 2017): 2 layers, as in GRACE's encoder. Edge features are not used."""
    return GNN("gcn", in_channels, edge_dim, hidden_dim, layers, pool, jk, dropout)
