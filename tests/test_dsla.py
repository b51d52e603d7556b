"""D-SLA (methods/dsla.py, losses/discrepancy.py): each loss term against hand-computed values, the
perturbations' edit distances against the edges they actually changed, the k-hop subgraphs against
networkx, and the method on real molecules (nci_tpsa): finite, refuses non-graph data, learns."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch

from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.data.graph import Graphs, Nodes, load_named_graphs
from selfsup.errors import ConfigError
from selfsup.losses.discrepancy import (edit_distance_loss, graph_discrimination, pairwise_distances,
                                        relative_margin_loss)
from selfsup.methods.base import Batch, TrainData
from selfsup.methods.dsla import dsla_candidates, k_hop_subgraphs, mask_nodes, perturb_edges


@pytest.fixture(scope="module")
def molecules() -> Graphs:
    """The first 32 molecules of nci_tpsa (40 node features, 6 edge features)."""
    return load_named_graphs("nci_tpsa").graphs.index(torch.arange(32))


def edge_sets(g: Graphs) -> list[set[tuple[int, int]]]:
    """Per graph, its undirected edges as (low, high) node indices local to the graph."""
    out = []
    for i in range(len(g)):
        e = g.edge_index[:, g.edge_ptr[i]:g.edge_ptr[i + 1]] - g.node_ptr[i]
        out.append({(min(a, b), max(a, b)) for a, b in e.T.tolist()})
    return out


# ---------------------------------------------------------------------------------------------------- losses


def test_graph_discrimination_by_hand():
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    row0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1)))
    row1 = -math.log(1 / (1 + math.exp(1) + 1))
    assert graph_discrimination(scores).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert graph_discrimination(scores, torch.tensor([False, True])).item() == pytest.approx(row1, rel=1e-6)
    assert graph_discrimination(scores, torch.tensor([False, False])).item() == 0.0


def test_edit_distance_loss_by_hand():
    d = torch.tensor([[1.0, 2.0, 6.0]])
    e = torch.tensor([[1, 2, 3]])
    # ratios d / e = 1, 1, 2; pairs (0, 1), (0, 2), (1, 2): 0, 1, 1
    assert edit_distance_loss(d, e).item() == pytest.approx(2 / 3)
    # a second graph whose first perturbation changed nothing: only its pair (1, 2) counts, ratios 1 and 0.5
    d2 = torch.tensor([[1.0, 2.0, 6.0], [5.0, 1.0, 1.0]])
    e2 = torch.tensor([[1, 2, 3], [0, 1, 2]])
    assert edit_distance_loss(d2, e2).item() == pytest.approx((0 + 1 + 1 + 0.25) / 4)
    assert edit_distance_loss(torch.tensor([[3.0]]), torch.tensor([[2]])).item() == 0.0  # one perturbation: no pair
    # proportional distances cost nothing
    assert edit_distance_loss(torch.tensor([[0.5, 1.0, 2.0]]), torch.tensor([[2, 4, 8]])).item() == 0.0


def test_relative_margin_loss_by_hand():
    pos = torch.tensor([[1.0, 2.0], [0.5, 3.0]])  # (B=2, K=2)
    neg = torch.tensor([[0.0, 4.0], [4.0, 0.0]])  # the diagonal is ignored
    # margin 3: graph 0 vs 1: max(0, 3 + 1 - 4) = 0, max(0, 3 + 2 - 4) = 1; graph 1 vs 0: 0 (3 + 0.5 - 4 < 0), 2
    assert relative_margin_loss(pos, neg, 3.0).item() == pytest.approx(3 / 4)
    assert relative_margin_loss(pos, neg, 0.0).item() == 0.0
    assert relative_margin_loss(pos[:1], neg[:1, :1], 3.0).item() == 0.0  # one graph: no negatives
    # B = 3: each graph against the 2 others
    pos3, neg3 = torch.tensor([[1.0], [1.0], [1.0]]), torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    hinge = [max(0, 1.5 + 1 - x) for x in (1, 2, 1, 3, 2, 3)]
    assert relative_margin_loss(pos3, neg3, 1.5).item() == pytest.approx(sum(hinge) / 6)


def test_pairwise_distances_match_cdist_with_a_finite_gradient():
    a = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    d = pairwise_distances(a)
    assert torch.allclose(d, torch.cdist(a, a), atol=1e-5) and torch.all(d.diagonal() == 0)
    d.sum().backward()
    assert torch.isfinite(a.grad).all()


# ---------------------------------------------------------------------------------------------------- perturbations


def test_reported_edit_distance_is_the_number_of_edges_changed(molecules):
    g = molecules.index(torch.arange(10))
    before = edge_sets(g)
    for seed in range(3):
        torch.manual_seed(seed)
        candidates, edits = dsla_candidates(g)  # original, 3 perturbations, the strong one
        C = edits.shape[1]
        assert C == 5 and len(candidates) == C * len(g) and torch.all(edits[:, 0] == 0)
        after = edge_sets(candidates)
        for c in range(C):
            for b in range(len(g)):
                changed = before[b] ^ after[c * len(g) + b]  # removed and added undirected edges
                assert len(changed) == edits[b, c].item(), (seed, c, b)
        # the same nodes, every graph's edges inside it and in both directions
        assert torch.equal(candidates.node_ptr, Graphs.cat([g] * C).node_ptr)
        graph_of = torch.repeat_interleave(torch.arange(len(candidates)), candidates.edges_per_graph)
        assert torch.equal(candidates.batch[candidates.edge_index[0]], graph_of)
        assert torch.equal(candidates.batch[candidates.edge_index[1]], graph_of)
        assert candidates.edge_attr.shape == (candidates.num_edges, 6)
        # more edits for later perturbations, every perturbation changes something (every molecule has a bond)
        assert torch.all(edits[:, 1:] > 0) and torch.all(edits[:, 2:4] >= edits[:, 1:3])


def test_perturb_edges_on_hand_made_graphs():
    triangle = torch.tensor([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]])  # complete: no absent pair to add
    path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # 0-1-2 plus an isolated node 3; absent pairs: 5
    g = Graphs.from_lists([torch.ones(3, 2), torch.ones(4, 2), torch.ones(3, 2)],
                          [triangle, path, torch.zeros(2, 0, dtype=torch.long)],
                          [torch.ones(6, 1), torch.ones(4, 1), torch.zeros(0, 1)])
    inside = torch.ones(g.num_nodes, dtype=torch.bool)
    torch.manual_seed(0)
    out, edits = perturb_edges(g, inside, torch.tensor([5, 1, 2]))
    # triangle: all 3 removed, nothing to add; path: 1 removed and 1 added; edgeless: 2 added
    assert edits.tolist() == [3, 2, 2]
    b, a = edge_sets(g), edge_sets(out)
    assert a[0] == set() and len(b[1] ^ a[1]) == 2 and len(a[2]) == 2
    assert out.edges_per_graph.tolist() == [0, 4, 4]
    none, zero = perturb_edges(g, inside, torch.zeros(3, dtype=torch.long))
    assert zero.tolist() == [0, 0, 0] and torch.equal(none.edge_index, g.edge_index)
    # only nodes inside: in the path graph with node 0 outside, only 1-2 can go and only 1-3, 2-3 come
    inside = torch.tensor([True] * 3 + [False, True, True, True] + [False] * 3)
    out, edits = perturb_edges(g, inside, torch.tensor([0, 9, 0]))
    assert edits.tolist() == [0, 3, 0] and edge_sets(out)[1] == {(0, 1), (1, 3), (2, 3)}


def test_mask_nodes_masks_the_asked_number_inside():
    g = Graphs.from_lists([torch.ones(5, 3), torch.ones(4, 3)],
                          [torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long)])
    inside = torch.tensor([True, True, True, False, False, True, True, True, True])
    torch.manual_seed(0)
    x = mask_nodes(g, inside, torch.tensor([2, 9])).x
    zero = (x == 0).all(dim=1)
    assert zero[:5].sum() == 2 and not zero[3:5].any() and zero[5:].all()


def test_k_hop_subgraphs_are_balls_around_a_node_with_an_edge(molecules):
    g = molecules
    for seed in range(2):
        torch.manual_seed(seed)
        inside = k_hop_subgraphs(g, 3)
        for b in range(len(g)):
            lo, hi = int(g.node_ptr[b]), int(g.node_ptr[b + 1])
            graph = nx.Graph()
            graph.add_nodes_from(range(hi - lo))
            graph.add_edges_from(edge_sets(g)[b])
            ball = set(torch.nonzero(inside[lo:hi]).squeeze(1).tolist())
            centres = [c for c in graph if graph.degree(c) > 0
                       and set(nx.single_source_shortest_path_length(graph, c, cutoff=3)) == ball]
            assert centres, (seed, b)


# ---------------------------------------------------------------------------------------------------- the method


def small_dsla(**options):
    torch.manual_seed(0)
    backbone = build_backbone("gin", in_channels=40, edge_dim=6, hidden_dim=32, layers=3)
    return registry.get("method", "dsla")(backbone, **options)


def test_refuses_data_that_is_not_graphs(molecules):
    method = small_dsla()
    with pytest.raises(ConfigError, match="graph-level method.*Tensor"):
        method(Batch([torch.zeros(4, 40)], [], torch.zeros(4, 40)))
    nodes = Nodes(molecules.index(torch.arange(1)), torch.arange(3))
    with pytest.raises(ConfigError, match="node-level data"):
        method(Batch([nodes], [], nodes))
    with pytest.raises(ConfigError, match="node-level data"):  # before training, from the whole set
        method.prepare(TrainData(nodes, None, [0.0] * 40, [1.0] * 40))
    method.prepare(TrainData(molecules, None, [0.0] * 40, [1.0] * 40))  # graph-level data passes
    with pytest.raises(ConfigError, match="perturbations"):
        small_dsla(perturbations=0)


def test_same_global_seed_same_step(molecules):
    method = small_dsla()
    batch = Batch([molecules], [], molecules)
    torch.manual_seed(3)
    a = method(batch)
    torch.manual_seed(3)
    b = method(batch)
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["features"], b["features"])


def test_learns_on_a_fixed_batch_of_molecules(molecules):
    method = small_dsla()
    batch = Batch([molecules], [], molecules)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    method.train()
    losses = []
    for step in range(30):
        torch.manual_seed(step)  # as the trainer does: the perturbations come from the global RNG
        out = method(batch)
        loss = out["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss)
        assert out["features"].shape == (32, 32) and out["features"].requires_grad
        for key in ("gd_loss", "edit_loss", "margin_loss", "gd_accuracy", "edit_distance"):
            assert torch.isfinite(out[key]) and not out[key].requires_grad, key
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for name, module in (("backbone", method.backbone), ("score", method.score)):
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads), name
        optimizer.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.9 * first, losses
