"""Batched views of graphs on the compute device, with the random parameters they drew.

    views = GraphViews(graphcl_views(), mean, std)
    batches, params = views(graphs (a ``data.graph.Graphs`` batch of B graphs), generator)

The augmentations of GraphCL (You, Chen, Sui, Chen, Wang, Shen, "Graph Contrastive Learning with
Augmentations", NeurIPS 2020) and GRACE (Zhu, Xu, Yu, Liu, Wu, Wang, "Deep Graph Contrastive
Representation Learning", 2020), each vectorized over the whole batch (no loop over graphs):

- node dropping: each node removed with probability ``drop_nodes`` (with its edges; a graph keeps
  at least one node);
- edge perturbation: each edge removed with probability ``perturb_edges``, and as many random edges
  added between nodes of the same graph (with the features of a random existing edge);
- attribute masking: each node's features zeroed with probability ``mask_nodes`` (GraphCL), and/or
  each feature column zeroed for every node with probability ``mask_features`` (GRACE);
- subgraph: a breadth-first ball around a random node per graph, grown until it holds at least
  ``subgraph`` of the graph's nodes (GraphCL's random-walk subgraph keeps 80%);
- edge dropping (GRACE): each edge removed with probability ``drop_edges``.

With ``choose_one=True`` (GraphCL's random pairing) every view applies one augmentation drawn per
view among those switched on; otherwise a view applies all of them. Directed edge pairs are
treated independently. Node features are then normalized with the dataset's mean and std.
Parameters per view (B,) float32: ``nodes_kept`` and ``edges_kept`` (fractions), ``augmentation``
(the index of the one applied with ``choose_one``, else -1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.graph import Graphs, Nodes
from ..errors import ConfigError

AUGMENTATIONS = ("drop_nodes", "perturb_edges", "mask_nodes", "subgraph")


@dataclass(frozen=True)
class GraphViewConfig:
    n_global: int = 2
    n_local: int = 0
    drop_nodes: float = 0.0
    perturb_edges: float = 0.0
    mask_nodes: float = 0.0
    subgraph: float = 0.0  # share of the nodes the subgraph keeps (0 = off)
    drop_edges: float | tuple[float, ...] = 0.0
    mask_features: float | tuple[float, ...] = 0.0
    choose_one: bool = False

    def __post_init__(self):
        for name in ("drop_nodes", "perturb_edges", "mask_nodes", "subgraph"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"views.{name}={value} is outside [0, 1).", f"use e.g. views.{name}=0.2.")
        for name in ("drop_edges", "mask_features"):
            for value in (getattr(self, name) if isinstance(getattr(self, name), tuple) else (getattr(self, name),)):
                if not 0.0 <= value < 1.0:
                    raise ConfigError(f"views.{name}={value} is outside [0, 1).", f"use e.g. views.{name}=0.2.")
        if self.choose_one and not self.active():
            raise ConfigError("views.choose_one needs at least one augmentation switched on.",
                              "set e.g. views.drop_nodes=0.2 and views.subgraph=0.8.")

    def active(self) -> list[str]:
        return [a for a in AUGMENTATIONS if getattr(self, a) > 0]

    def per_view(self, name: str, view: int) -> float:
        value = getattr(self, name)
        return float(value[min(view, len(value) - 1)] if isinstance(value, tuple) else value)


def graphcl_views(**overrides) -> GraphViewConfig:
    """GraphCL: each view one augmentation at strength 0.2 (node dropping, edge perturbation,
    attribute masking) or a subgraph of 80% of the nodes, drawn per view."""
    return GraphViewConfig(**{"drop_nodes": 0.2, "perturb_edges": 0.2, "mask_nodes": 0.2, "subgraph": 0.8,
                              "choose_one": True, **overrides})


def grace_views(**overrides) -> GraphViewConfig:
    """GRACE (its Cora setting): edges dropped with p 0.2 / 0.4 and feature columns masked with
    p 0.3 / 0.4 in the two views."""
    return GraphViewConfig(**{"drop_edges": (0.2, 0.4), "mask_features": (0.3, 0.4), **overrides})


def keep_nodes(g: Graphs, keep: torch.Tensor) -> Graphs:
    """The graphs with only the nodes where `keep` (V,) is True, and the edges between them."""
    device = g.x.device
    new_id = torch.cumsum(keep.long(), 0) - 1  # (V,) the new row of every kept node
    src, dst = g.edge_index
    edge_keep = keep[src] & keep[dst]
    per_graph_nodes = torch.zeros(len(g), dtype=torch.long, device=device).index_add_(0, g.batch, keep.long())
    edge_graph = torch.repeat_interleave(torch.arange(len(g), device=device), g.edges_per_graph)
    per_graph_edges = torch.zeros(len(g), dtype=torch.long, device=device).index_add_(0, edge_graph, edge_keep.long())
    zero = torch.zeros(1, dtype=torch.long, device=device)
    return Graphs(g.x[keep], new_id[g.edge_index[:, edge_keep]], torch.cat([zero, torch.cumsum(per_graph_nodes, 0)]),
                  torch.cat([zero, torch.cumsum(per_graph_edges, 0)]),
                  None if g.edge_attr is None else g.edge_attr[edge_keep])


def keep_edges(g: Graphs, keep: torch.Tensor) -> Graphs:
    """The graphs with only the edges where `keep` (E,) is True."""
    device = g.x.device
    edge_graph = torch.repeat_interleave(torch.arange(len(g), device=device), g.edges_per_graph)
    per_graph = torch.zeros(len(g), dtype=torch.long, device=device).index_add_(0, edge_graph, keep.long())
    zero = torch.zeros(1, dtype=torch.long, device=device)
    return Graphs(g.x, g.edge_index[:, keep], g.node_ptr, torch.cat([zero, torch.cumsum(per_graph, 0)]),
                  None if g.edge_attr is None else g.edge_attr[keep])


class GraphViews:
    """Draws ``n_global + n_local`` views of a batch of graphs (see the module docstring)."""

    def __init__(self, config: GraphViewConfig, mean: list[float], std: list[float]):
        self.config = config
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"GraphViews({self.config})"

    def __call__(self, graphs, generator: torch.Generator | None = None):
        """Views of a batch of graphs, or of a batch of nodes (``data.graph.Nodes``: the views perturb
        their graph, and keep every node so that the rows still point at the same nodes)."""
        if isinstance(graphs, Nodes):
            if self.config.drop_nodes > 0 or self.config.subgraph > 0:
                raise ConfigError("node-level views keep every node: views.drop_nodes and views.subgraph do not apply.",
                                  "use views.preset=grace (edge dropping and feature masking), or graph-level data.")
            views, params = self(graphs.graphs, generator)
            return [Nodes(v, graphs.rows) for v in views], params
        cfg = self.config
        device = graphs.x.device
        gen_device = generator.device if generator is not None else device
        rand = lambda *shape: torch.rand(*shape, generator=generator, device=gen_device).to(device)  # noqa: E731
        views, params = [], []
        for v in range(cfg.n_global + cfg.n_local):
            g, p = graphs, {}
            if cfg.choose_one:
                active = cfg.active()
                pick = active[int(rand(1) * len(active)) % len(active)]
                chosen = {pick}
                p["augmentation"] = torch.full((len(g),), float(AUGMENTATIONS.index(pick)), device=device)
            else:
                chosen = set(cfg.active())
                p["augmentation"] = torch.full((len(g),), -1.0, device=device)
            nodes_before, edges_before = g.nodes_per_graph.float(), g.edges_per_graph.float().clamp_min(1)
            if "subgraph" in chosen:
                g = self._subgraph(g, cfg.subgraph, rand)
            if "drop_nodes" in chosen:
                g = self._drop_nodes(g, cfg.drop_nodes, rand)
            if "perturb_edges" in chosen:
                g = self._perturb_edges(g, cfg.perturb_edges, rand)
            drop_edges = cfg.per_view("drop_edges", v)
            if drop_edges > 0:
                g = keep_edges(g, rand(g.num_edges) >= drop_edges)
            x = g.x
            if "mask_nodes" in chosen:
                x = x * (rand(g.num_nodes, 1) >= cfg.mask_nodes).to(x.dtype)
            mask_features = cfg.per_view("mask_features", v)
            if mask_features > 0:
                x = x * (rand(1, x.shape[1]) >= mask_features).to(x.dtype)
            x = (x - self.mean.to(device)) / self.std.to(device)
            g = Graphs(x, g.edge_index, g.node_ptr, g.edge_ptr, g.edge_attr)
            p["nodes_kept"] = g.nodes_per_graph.float() / nodes_before.clamp_min(1)
            p["edges_kept"] = g.edges_per_graph.float() / edges_before
            views.append(g)
            params.append(p)
        return views, params

    @staticmethod
    def _drop_nodes(g: Graphs, p: float, rand) -> Graphs:
        keep = rand(g.num_nodes) >= p
        kept = torch.zeros(len(g), dtype=torch.long, device=keep.device).index_add_(0, g.batch, keep.long())
        emptied = (kept == 0) & (g.nodes_per_graph > 0)
        keep[g.node_ptr[:-1][emptied]] = True  # a graph that lost every node keeps its first
        return keep_nodes(g, keep)

    @staticmethod
    def _perturb_edges(g: Graphs, p: float, rand) -> Graphs:
        device = g.x.device
        keep = rand(g.num_edges) >= p
        kept = keep_edges(g, keep)
        removed_per_graph = g.edges_per_graph - kept.edges_per_graph  # add as many random intra-graph edges
        total = int(removed_per_graph.sum())
        if total == 0:
            return kept
        graph_of_new = torch.repeat_interleave(torch.arange(len(g), device=device), removed_per_graph)
        n = g.nodes_per_graph[graph_of_new].clamp_min(1)
        base = g.node_ptr[graph_of_new]
        src = base + (rand(total) * n).long().clamp(max=n - 1)
        dst = base + (rand(total) * n).long().clamp(max=n - 1)
        attr = None
        if g.edge_attr is not None and g.num_edges:
            attr = g.edge_attr[(rand(total) * g.num_edges).long().clamp(max=g.num_edges - 1)]
        # interleave: the kept edges of each graph, then its new ones, so every graph's edges stay contiguous
        edge_graph = torch.cat([torch.repeat_interleave(torch.arange(len(g), device=device), kept.edges_per_graph),
                                graph_of_new])
        order = torch.argsort(edge_graph, stable=True)
        edge_index = torch.cat([kept.edge_index, torch.stack([src, dst])], dim=1)[:, order]
        edge_attr = None if attr is None else torch.cat([kept.edge_attr, attr])[order]
        return Graphs(g.x, edge_index, g.node_ptr, g.edge_ptr, edge_attr)

    @staticmethod
    def _subgraph(g: Graphs, share: float, rand) -> Graphs:
        """A breadth-first ball around a random seed node per graph, grown to `share` of its nodes."""
        device = g.x.device
        sizes = g.nodes_per_graph
        target = (share * sizes.float()).ceil().long().clamp(min=1)
        seeds = g.node_ptr[:-1] + (rand(len(g)) * sizes.clamp_min(1)).long().clamp(max=sizes.clamp_min(1) - 1)
        inside = torch.zeros(g.num_nodes, dtype=torch.bool, device=device)
        inside[seeds[sizes > 0]] = True
        src, dst = g.edge_index
        batch = g.batch
        for _ in range(int(sizes.max()) if len(g) else 0):
            count = torch.zeros(len(g), dtype=torch.long, device=device).index_add_(0, batch, inside.long())
            growing = count < target  # (B,) graphs still below their share
            if not bool(growing.any()):
                break
            frontier = torch.zeros_like(inside)
            frontier[dst[inside[src] & growing[batch[src]]]] = True
            frontier &= ~inside
            if not bool(frontier.any()):
                break  # the ball reached its component's border
            # add the frontier in a random order, up to each graph's target
            priority = torch.where(frontier, rand(g.num_nodes), torch.full_like(inside, 2.0, dtype=torch.float))
            order = torch.argsort(batch.float() * 4 + priority)  # by graph, frontier nodes first, randomly
            rank = torch.empty_like(order)
            rank[order] = torch.arange(g.num_nodes, device=device)
            rank = rank - g.node_ptr[:-1][batch]  # position within its graph's frontier-first order
            room = (target - count)[batch]
            inside |= frontier & (rank < room)
        return keep_nodes(g, inside)
