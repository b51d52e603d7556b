"""D-SLA: discrepancy-based self-supervised learning on graphs (Kim, Baek, Hwang, NeurIPS 2022).

The method makes its own perturbations of each clean graph of the batch, with known graph edit
distances, and trains the backbone to tell the original from them, to place them at embedding
distances proportional to their edit distances, and to keep other graphs farther away. The
perturbation functions here are vectorized over the batch (no Python loop over graphs) and draw
only from torch's global RNG, which the trainer reseeds every step (exact resumes).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.graph import Graphs
from ..errors import ConfigError
from ..losses.discrepancy import edit_distance_loss, graph_discrimination, pairwise_distances, relative_margin_loss
from ..registry import register
from .base import Batch, Method, TrainData


# ---------------------------------------------------------------------------------------------------- perturbations


def random_rank(group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """(N,) int64 group ids in [0, num_groups) -> (N,) int64: each element's rank in a uniformly
    random order of its group (0 .. size - 1). ``rank < k[group]`` picks k random elements per group
    without replacement."""
    n = group.numel()
    perm = torch.randperm(n, device=group.device)
    perm = perm[torch.argsort(group[perm], stable=True)]  # grouped, random within each group
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(n, device=group.device) - starts[group[perm]]
    return rank


def undirected_edges(g: Graphs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The undirected edges of `g`: (lo (U,), hi (U,), inverse (E,)), lo <= hi node rows, sorted by
    graph; ``inverse`` maps every directed edge to its undirected one (u->v and v->u are one edge)."""
    n = max(g.num_nodes, 1)
    src, dst = g.edge_index
    key = torch.minimum(src, dst) * n + torch.maximum(src, dst)  # (E,)
    uniq, inverse = torch.unique(key, return_inverse=True)
    return uniq // n, uniq % n, inverse


def k_hop_subgraphs(g: Graphs, hops: int) -> torch.Tensor:
    """(V,) bool: the nodes within `hops` hops of one random centre node per graph. The centre is
    drawn among the nodes that have an edge (any node in a graph without edges), so that the
    subgraph has an edge to perturb whenever its graph has one."""
    device, B, V = g.x.device, len(g), g.num_nodes
    lo, hi, _ = undirected_edges(g)
    proper = lo != hi
    has_edge = torch.zeros(V, dtype=torch.bool, device=device)
    has_edge[lo[proper]] = True
    has_edge[hi[proper]] = True
    batch = g.batch
    # a random order of each graph's nodes with an edge (group 2b), and of its other nodes (group 2b + 1)
    rank = random_rank(2 * batch + (~has_edge).long(), 2 * B)
    graph_has_edge = torch.zeros(B, dtype=torch.bool, device=device).index_fill_(0, batch[has_edge], True)
    inside = (rank == 0) & (has_edge | ~graph_has_edge[batch])  # one centre per non-empty graph
    for _ in range(hops):
        grown = inside.clone()
        grown[hi[inside[lo]]] = True
        grown[lo[inside[hi]]] = True
        inside = grown
    return inside


def perturb_edges(g: Graphs, inside: torch.Tensor, count: torch.Tensor) -> tuple[Graphs, torch.Tensor]:
    """Remove `count` random edges and add `count` random absent edges per graph, both among the
    nodes where `inside` is True; return the perturbed graphs and their edit distances.

    g: B graphs; inside: (V,) bool; count: (B,) int64 (0: the graph is left as it is). Edges are
    undirected: removing one removes both directed copies, adding one adds u->v and v->u (next to
    each other) with the features of a random existing edge of the batch (the empirical distribution
    of edge features, as the authors sample bond types from the data's). A graph with fewer edges
    (absent pairs) than `count` among its `inside` nodes loses (gains) all it has; an added edge is
    never one of the graph's edges, removed or not, so no change undoes another.

    Returns (Graphs with the same nodes, edits (B,) int64): the number of undirected edges removed
    plus added, the graph edit distance of the perturbation (unit costs, edge edits only). Memory:
    the sum over graphs of (inside nodes)^2 candidate pairs."""
    device, B, V = g.x.device, len(g), g.num_nodes
    batch = g.batch
    src, dst = g.edge_index
    lo, hi, inverse = undirected_edges(g)
    edge_graph = batch[lo]  # (U,)
    # removal: `count` random edges with both ends inside, per graph
    eligible = inside[lo] & inside[hi]
    rank = random_rank(torch.where(eligible, edge_graph, B), B + 1)  # ineligible edges in a dummy group B
    removed = eligible & (rank < count[edge_graph])  # (U,)
    n_removed = torch.bincount(edge_graph[removed], minlength=B)
    keep = ~removed[inverse]  # (E,)
    # addition: `count` random pairs of inside nodes that are not edges of the graph
    nodes = torch.nonzero(inside).squeeze(1)  # (S,) sorted, so graph after graph
    s = torch.bincount(batch[nodes], minlength=B)  # (B,) inside nodes per graph
    first = torch.cumsum(s, 0) - s
    squares = s * s
    pair_graph = torch.repeat_interleave(torch.arange(B, device=device), squares)  # every ordered pair (a, b)
    within = torch.arange(len(pair_graph), device=device) - torch.repeat_interleave(torch.cumsum(squares, 0) - squares,
                                                                                    squares)
    a, b = within // s[pair_graph].clamp_min(1), within % s[pair_graph].clamp_min(1)
    upper = a < b  # unordered pairs, no self loops
    pair_graph, a, b = pair_graph[upper], a[upper], b[upper]
    u, v = nodes[first[pair_graph] + a], nodes[first[pair_graph] + b]  # u < v
    absent = ~torch.isin(u * max(V, 1) + v, lo * max(V, 1) + hi)
    rank = random_rank(torch.where(absent, pair_graph, B), B + 1)
    add = absent & (rank < count[pair_graph])
    u, v, add_graph = u[add], v[add], pair_graph[add]
    n_added = torch.bincount(add_graph, minlength=B)
    # the new edge list, each graph's edges contiguous: its kept edges in order, then its new ones
    new_src = torch.cat([src[keep], torch.stack([u, v], 1).reshape(-1)])
    new_dst = torch.cat([dst[keep], torch.stack([v, u], 1).reshape(-1)])
    graph_of = torch.cat([batch[src[keep]], add_graph.repeat_interleave(2)])
    order = torch.argsort(graph_of, stable=True)
    edge_attr = None
    if g.edge_attr is not None:
        if g.num_edges:
            added_attr = g.edge_attr[torch.randint(g.num_edges, (len(u),), device=device)]
        else:
            added_attr = g.edge_attr.new_zeros(len(u), g.edge_attr.shape[1])
        edge_attr = torch.cat([g.edge_attr[keep], added_attr.repeat_interleave(2, dim=0)])[order]
    per_graph = torch.bincount(graph_of, minlength=B)
    edge_ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=device), torch.cumsum(per_graph, 0)])
    edge_index = torch.stack([new_src, new_dst])[:, order]
    return Graphs(g.x, edge_index, g.node_ptr, edge_ptr, edge_attr), n_removed + n_added


def mask_nodes(g: Graphs, inside: torch.Tensor, count: torch.Tensor) -> Graphs:
    """`count` (B,) random nodes per graph among those where `inside` (V,) is True get all-zero
    features (the mask token of one-hot features: no atom type, no degree, ...)."""
    B = len(g)
    batch = g.batch
    rank = random_rank(torch.where(inside, batch, B), B + 1)
    masked = inside & (rank < count[batch])
    return Graphs(g.x.masked_fill(masked[:, None], 0.0), g.edge_index, g.node_ptr, g.edge_ptr, g.edge_attr)


def dsla_candidates(g: Graphs, perturbations: int = 3, edge_ratio: float = 0.2, mask_ratio: float = 0.8,
                    hops: int = 3, strong: bool = True) -> tuple[Graphs, torch.Tensor]:
    """The original and the perturbed graphs of D-SLA for a batch of B clean graphs.

    One random `hops`-hop subgraph per graph (``k_hop_subgraphs``); with m the number of its
    undirected edges, perturbation i = 1..`perturbations` removes and adds floor(m * edge_ratio * i)
    edges (at least 1) inside it (``perturb_edges``), so that the edit distance grows with i; with
    `strong`, one more perturbation over the whole graph at edge_ratio * (perturbations + 1) of all
    its edges. Then every candidate, the original included, gets floor(mask_ratio * n) of the n nodes
    of its subgraph masked (the whole graph for the strong one), drawn independently per candidate:
    the masks do not tell the original apart, and do not count in the edit distance.

    Returns (C * B graphs, candidate-major: the B originals, then the B graphs of perturbation 1,
    ...; edits (B, C) int64, column 0 zeros), C = 1 + perturbations + strong."""
    device, B = g.x.device, len(g)
    sub = k_hop_subgraphs(g, hops)  # (V,)
    everything = torch.ones_like(sub)
    batch = g.batch
    lo, hi, _ = undirected_edges(g)
    edge_graph = batch[lo]
    m_sub = torch.bincount(edge_graph[sub[lo] & sub[hi]], minlength=B).double()  # (B,)
    m_all = torch.bincount(edge_graph, minlength=B).double()
    n_sub = torch.bincount(batch[sub], minlength=B).double()
    n_all = g.nodes_per_graph.double()

    def edits_for(m, factor):  # the authors' int(m * ratio * i), at least 1, in double precision as Python
        return (m * edge_ratio * factor).floor().long().clamp_min(1)

    counts = [torch.zeros(B, dtype=torch.long, device=device)]  # the original: no edge edit
    regions = [sub]
    masks = [(n_sub * mask_ratio).floor().long()]
    for i in range(1, perturbations + 1):
        counts.append(edits_for(m_sub, i))
        regions.append(sub)
        masks.append(masks[0])
    if strong:
        counts.append(edits_for(m_all, perturbations + 1))
        regions.append(everything)
        masks.append((n_all * mask_ratio).floor().long())
    C = len(counts)
    stacked = Graphs.cat([g] * C)  # candidate-major copies
    inside = torch.cat(regions)
    perturbed, edits = perturb_edges(stacked, inside, torch.cat(counts))
    return mask_nodes(perturbed, inside, torch.cat(masks)), edits.view(C, B).T


# ---------------------------------------------------------------------------------------------------- the method


@register("method", "dsla")
class DSLA(Method):
    """Discrepancy-based Self-supervised LeArning (D-SLA) for graph-level data.

    Kim, Baek, Hwang. Graph Self-supervised Learning with Accurate Discrepancy Learning. NeurIPS
    2022, arXiv:2202.02989; the authors' code, github.com/DongkiKim95/D-SLA (chem/pretrain_DSLA.py),
    read for the details the paper leaves to it. For each clean graph G_0 of the batch
    (``batch.samples``), ``dsla_candidates`` makes K perturbations G_1..G_K with known edit distances
    e_i (by default K = 4: three with edge removals + additions inside a random k-hop subgraph, more
    for larger i, and one strong perturbation of the whole graph), masks node attributes in all of
    them and in G_0, and one backbone pass embeds all: h_i = backbone(G_i) (B, D). Then, with S = the score network
    ``score`` (an MLP D-D-D-1 on h, the authors' ``score_func``) and d_i = ||h_0 - h_i||_2:

    - eq. 4, graph discrimination: L_GD = -log( e^{S(G_0)} / (e^{S(G_0)} + sum_i e^{S(G_i)}) ), the
      original against all its perturbations (the strong one included);
    - eq. 5, discrepancy with the edit distance: L_edit = sum_{i,j} (d_i / e_i - d_j / e_j)^2, so
      that the embedding distance is proportional to the edit distance (all K perturbations);
    - eq. 6, relative discrepancy with other graphs: L_margin = sum_{i,j} max(0, alpha + d_i - d'_j),
      d'_j = ||h_0 - h_0(G'_j)||_2 to the other originals G'_j of the batch (not the strong one);
    - eq. 7: L = L_GD + lambda_1 L_edit + lambda_2 L_margin (``losses.discrepancy``; means over terms,
      as the authors' code, where the paper writes sums).

    Defaults (the authors' code and README for molecules): ``perturbations`` 3 (``num_candidates`` 4
    with the original), ``edge_ratio`` 0.2 (perturbation i edits floor(0.2 i m) of the m edges of the
    subgraph, at least 1), ``hops`` 3 (the subgraph: a 3-hop ball around a random node),
    ``mask_ratio`` 0.8 (of the subgraph's nodes, in every candidate: the paper masks attributes "to
    make it more difficult to distinguish original and perturbed graphs"), ``strong`` True
    (``--add_strong_pert``: the whole graph at ratio 0.2 x 4 with 80% of its nodes masked),
    ``edit_weight`` lambda_1 = 0.7, ``margin_weight`` lambda_2 = 0.5, ``margin`` alpha = 5 (10 for
    the authors' biology graphs). Their backbone is a 5-layer GIN, 300 wide, mean pooling; Adam at
    1e-3, batch 256.

    Choices where the paper and code leave room: the edit distance e_i counts removed plus added
    undirected edges, the exact number of edges changed (the authors' social-graph code counts both;
    their molecule code counts one side, which scales L_edit by 4 against this); an added edge is
    never an edge of the original (their molecule code may re-add a removed edge and still count
    it); added edges take the features of a random edge of the batch (theirs: bond types drawn from
    the data set's frequencies); masked nodes get all-zero features (their mask token is an extra
    atom type); the centre of the subgraph is a node with an edge, so that every perturbation
    changes at least one edge (a graph without edges gains one; a one-node graph cannot change: it
    is left out of L_GD, and pairs with e_i = 0 out of L_edit). The clean samples go in as they are:
    graph node features are not normalized (``GraphDataset.normalization`` is mean 0, std 1), so
    they are what the encoder sees at evaluation. The trainer's views are drawn but not used
    (``views`` asks for one); ``features`` are the backbone features of the originals G_0, (B, D),
    masked as the method trains on them; there are no embeddings.

    Logged: ``gd_loss``, ``edit_loss``, ``margin_loss`` (unweighted), ``gd_accuracy`` (share of
    graphs whose original scores highest) and ``edit_distance`` (mean e_i of the perturbations).
    Cost: 1 + K = 5 graphs per sample in one backbone pass, and B x B x D for the negatives; the
    candidate edges to add are enumerated, (nodes of a graph)^2 pairs for the strong perturbation.
    """

    paper = ("Kim, Baek, Hwang. Graph Self-supervised Learning with Accurate Discrepancy Learning. NeurIPS 2022, "
             "arXiv:2202.02989")
    family = "discrepancy"
    batch_terms = "per_rank"  # random perturbations per rank; the margin's other graphs are this rank's
    views = {"n_global": 1, "n_local": 0}  # drawn by the trainer, unused: the method perturbs batch.samples itself
    requires = ("graphs",)  # graph data (the trainer checks it); prepare and forward refuse node-level samples
    aux_outputs = ("features",)

    def __init__(self, backbone: nn.Module, perturbations: int = 3, edge_ratio: float = 0.2, mask_ratio: float = 0.8,
                 hops: int = 3, strong: bool = True, edit_weight: float = 0.7, margin_weight: float = 0.5,
                 margin: float = 5.0, hidden_dim: int | None = None):
        super().__init__(backbone)
        if perturbations < 1:
            raise ConfigError(f"dsla perturbations must be >= 1, got {perturbations}.", "use 3 (the paper's).")
        if not 0 < edge_ratio < 1 or not 0 <= mask_ratio < 1:
            raise ConfigError(f"dsla edge_ratio must be in (0, 1) and mask_ratio in [0, 1), got {edge_ratio}, "
                              f"{mask_ratio}.",
                              "use edge_ratio=0.2, mask_ratio=0.8 (the paper's).")
        if hops < 0:
            raise ConfigError(f"dsla hops must be >= 0, got {hops}.", "use 3 (the paper's).")
        if edit_weight < 0 or margin_weight < 0 or margin < 0:
            raise ConfigError(f"dsla edit_weight, margin_weight and margin must be >= 0, got {edit_weight}, "
                              f"{margin_weight}, {margin}.", "use 0.7, 0.5 and 5 (the paper's, molecules).")
        self.perturbations, self.edge_ratio, self.mask_ratio = perturbations, edge_ratio, mask_ratio
        self.hops, self.strong = hops, strong
        self.edit_weight, self.margin_weight, self.margin = edit_weight, margin_weight, margin
        d, hidden = backbone.dim, hidden_dim or backbone.dim
        self.score = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                   nn.Linear(hidden, 1))
        self.embedding_dim = None  # features only

    @staticmethod
    def check_graphs(samples) -> None:
        """Refuse samples that are not a batch of graphs (``data.graph.Graphs``: an ``edge_index``)."""
        if not isinstance(getattr(samples, "edge_index", None), torch.Tensor):
            kind = "the nodes of a graph (node-level data)" if hasattr(samples, "rows") else type(samples).__name__
            raise ConfigError(f"dsla is a graph-level method: it perturbs the edges of every sample graph, and "
                              f"the samples here are {kind}, with no edge_index.",
                              "train it on many small graphs (molecules: --data nci_tpsa, a .smi or SMILES .csv, a "
                              "graph .npz), or pick a method for this data.")

    @torch.no_grad()
    def prepare(self, data: TrainData) -> None:
        self.check_graphs(data.samples)  # before the first step, not at it

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        graphs = batch.samples
        self.check_graphs(graphs)
        B, K = len(graphs), self.perturbations + int(self.strong)
        candidates, edits = dsla_candidates(graphs, self.perturbations, self.edge_ratio, self.mask_ratio, self.hops,
                                            self.strong)  # (1 + K) B graphs, edits (B, 1 + K)
        h = self.backbone(candidates)  # ((1 + K) B, D) in one pass
        h = h.view(1 + K, B, -1).transpose(0, 1)  # (B, 1 + K, D)
        scores = self.score(h).squeeze(-1).float()  # (B, 1 + K)
        hf = h.float()
        d = (hf[:, 1:] - hf[:, :1]).norm(dim=-1)  # (B, K) distances to the original
        e = edits[:, 1:]  # (B, K)
        gd = graph_discrimination(scores, valid=(e > 0).all(dim=1))
        edit = edit_distance_loss(d, e)
        margin = relative_margin_loss(d[:, :self.perturbations], pairwise_distances(hf[:, 0]), self.margin)
        loss = gd + self.edit_weight * edit + self.margin_weight * margin
        return {"loss": loss, "gd_loss": gd.detach(), "edit_loss": edit.detach(), "margin_loss": margin.detach(),
                "gd_accuracy": (scores.argmax(dim=1) == 0).float().mean().detach(),
                "edit_distance": e.float().mean().detach(), "features": h[:, 0]}
