"""Graph data: molecules from SMILES (RDKit), molecule files, edge lists, networkx, the named sets, and
the Graphs batch operations checked against a slow per-graph reference."""
from __future__ import annotations

import csv
import io
import struct

import networkx as nx
import numpy as np
import pytest
import torch

from selfsup.data.graph import (
    DEGREE_FEATURES, EDGE_FEATURES, NODE_FEATURES, GraphDataset, Graphs, from_networkx, graphs_from_smiles,
    is_graph_file, load_edge_list, load_graph_npz, load_graphs, load_molecules, load_named_graphs)
from selfsup.errors import DataError

rdkit = pytest.importorskip("rdkit")
from rdkit import Chem, RDConfig  # noqa: E402
from rdkit.Chem import rdMolDescriptors  # noqa: E402
from rdkit.Chem.Scaffolds import MurckoScaffold  # noqa: E402

COL = {name: k for k, name in enumerate(NODE_FEATURES)}
ECOL = {name: k for k, name in enumerate(EDGE_FEATURES)}


def on(x_row, *names) -> bool:
    return all(x_row[COL[n]] == 1 for n in names)


def group(x_row, prefix) -> list[str]:
    """The names of the columns set in a one-hot group (e.g. 'element=')."""
    return [n for n in NODE_FEATURES if n.startswith(prefix) and x_row[COL[n]] == 1]


def wehi_smiles(n: int) -> list[str]:
    with open(f"{RDConfig.RDDataDir}/Pains/test_data/wehi_mols.csv") as handle:
        return [row[0] for _, row in zip(range(n), csv.reader(handle))]


# ---------------------------------------------------------------------------------------------
# Featurization


def test_feature_vocabulary_widths():
    assert len(NODE_FEATURES) == 40 and len(set(NODE_FEATURES)) == 40
    assert len(EDGE_FEATURES) == 6
    groups = {"element=": 13, "degree=": 6, "hydrogens=": 5, "hybridization=": 6, "chirality=": 3}
    for prefix, width in groups.items():
        assert sum(n.startswith(prefix) for n in NODE_FEATURES) == width, prefix
    assert sum(n.startswith("charge") for n in NODE_FEATURES) == 5
    g, kept, skipped = graphs_from_smiles(["CCO"], ["t:1"])
    data = GraphDataset(g, None, ["t:1"], "t", "t")
    assert data.input_spec() == {"in_channels": 40, "edge_dim": 6}
    # every atom sets exactly one column in each one-hot group
    g, _, _ = graphs_from_smiles(wehi_smiles(200), [str(i) for i in range(200)])
    x = g.x.numpy()
    for prefix in ("element=", "degree=", "charge", "hydrogens=", "hybridization=", "chirality="):
        cols = [COL[n] for n in NODE_FEATURES if n.startswith(prefix)]
        assert (x[:, cols].sum(1) == 1).all(), prefix
    a = g.edge_attr.numpy()
    assert (a[:, :4].sum(1) <= 1).all()


def test_ethanol_by_hand():
    g, kept, skipped = graphs_from_smiles(["CCO"], ["t:1"])
    assert kept == [0] and skipped == []
    assert len(g) == 1 and g.num_nodes == 3 and g.num_edges == 4
    assert g.node_ptr.tolist() == [0, 3] and g.edge_ptr.tolist() == [0, 4]
    assert g.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]  # each bond both ways, bond after bond
    x = g.x.numpy()
    assert on(x[0], "element=C", "degree=1", "charge=0", "hydrogens=3", "hybridization=SP3", "chirality=none")
    assert on(x[1], "element=C", "degree=2", "hydrogens=2", "hybridization=SP3")
    assert on(x[2], "element=O", "degree=1", "hydrogens=1", "hybridization=SP3")
    assert x[:, COL["aromatic"]].sum() == 0 and x[:, COL["in_ring"]].sum() == 0
    assert x.sum(1).tolist() == [6, 6, 6]  # six one-hot groups, no flags
    assert COL["element=C"] == 0 and COL["element=O"] == 2 and COL["degree=1"] == 14 and COL["hydrogens=3"] == 27
    assert g.edge_attr.tolist() == [[1, 0, 0, 0, 0, 0]] * 4  # single, not conjugated, not in a ring


def test_benzene_and_charged_atoms_by_hand():
    g, _, _ = graphs_from_smiles(["c1ccccc1", "C[N+](=O)[O-]", "[Na+].[Cl-]", "C[C@H](N)O"], list("abcd"))
    assert g.nodes_per_graph.tolist() == [6, 4, 2, 4]
    assert g.edges_per_graph.tolist() == [12, 6, 0, 6]
    benzene = g.x[:6].numpy()
    for row in benzene:
        assert on(row, "element=C", "degree=2", "hydrogens=1", "aromatic", "in_ring", "hybridization=SP2")
    assert g.edge_attr[:12].tolist() == [[0, 0, 0, 1, 1, 1]] * 12  # aromatic, conjugated, in a ring
    nitro = g.x[6:10].numpy()
    assert group(nitro[1], "element=") == ["element=N"] and on(nitro[1], "charge=+1", "degree=3")
    assert on(nitro[3], "element=O", "charge=-1", "degree=1")
    # C-N single, not conjugated; N=O double and N-O(-) single, conjugated; each twice
    assert g.edge_attr[12:18].tolist() == [[1, 0, 0, 0, 0, 0]] * 2 + [[0, 1, 0, 0, 1, 0]] * 2 + [[1, 0, 0, 0, 1, 0]] * 2
    salt = g.x[10:12].numpy()
    assert on(salt[0], "element=other", "charge=+1", "degree=0") and on(salt[1], "element=Cl", "charge=-1")
    chiral = g.x[12:16].numpy()
    assert group(chiral[1], "chirality=") in (["chirality=CW"], ["chirality=CCW"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch_geometric's own torch.jit.script
def test_features_match_torch_geometric_from_smiles():
    """An independent reference: PyG's from_smiles (per-atom integer codes) on 150 real molecules."""
    from rdkit import rdBase
    from torch_geometric.utils.smiles import e_map, from_smiles, x_map

    smiles = wehi_smiles(150)
    g, kept, _ = graphs_from_smiles(smiles, [str(i) for i in range(150)])
    assert kept == list(range(150))
    with rdBase.BlockLogs():  # from_smiles turns RDKit's log off for good; BlockLogs restores it after
        refs = [from_smiles(s) for s in smiles]
    elements = {6: "C", 7: "N", 8: "O", 16: "S", 9: "F", 17: "Cl", 35: "Br", 53: "I", 15: "P", 5: "B", 14: "Si",
                34: "Se"}
    hybrid = {"SP": "SP", "SP2": "SP2", "SP3": "SP3", "SP3D": "SP3D", "SP3D2": "SP3D2"}
    chir = {"CHI_TETRAHEDRAL_CW": "CW", "CHI_TETRAHEDRAL_CCW": "CCW"}
    for i, (s, ref) in enumerate(zip(smiles, refs)):
        lo, hi = int(g.node_ptr[i]), int(g.node_ptr[i + 1])
        x = g.x[lo:hi].numpy()
        assert len(x) == ref.num_nodes
        for row, r in zip(x, ref.x.tolist()):
            z, c, total_degree, q, hs = r[0], x_map["chirality"][r[1]], r[2], x_map["formal_charge"][r[3]], r[4]
            assert group(row, "element=") == [f"element={elements.get(z, 'other')}"]
            assert group(row, "chirality=") == [f"chirality={chir.get(c, 'none')}"]
            degree = total_degree - hs  # PyG counts hydrogens in the degree
            assert group(row, "degree=") == [f"degree={degree}" if degree < 5 else "degree=5+"]
            charge = {-2: "charge<=-2", -1: "charge=-1", 0: "charge=0", 1: "charge=+1", 2: "charge>=+2"}
            assert group(row, "charge") == [charge[min(max(q, -2), 2)]]
            assert group(row, "hydrogens=") == [f"hydrogens={hs}" if hs < 4 else "hydrogens=4+"]
            kind = hybrid.get(x_map["hybridization"][r[6]], "other")
            assert group(row, "hybridization=") == [f"hybridization={kind}"]
            assert row[COL["aromatic"]] == r[7] and row[COL["in_ring"]] == r[8]
        lo, hi = int(g.edge_ptr[i]), int(g.edge_ptr[i + 1])
        ours = {}
        for (u, v), a in zip((g.edge_index[:, lo:hi] - g.node_ptr[i]).T.tolist(), g.edge_attr[lo:hi].tolist()):
            ours[(u, v)] = a
        theirs = {}
        for (u, v), a in zip(ref.edge_index.T.tolist(), ref.edge_attr.tolist()):
            kind = e_map["bond_type"][a[0]]
            onehot = [float(kind == k) for k in ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")]
            theirs[(u, v)] = onehot + [float(a[2])] + [ours.get((u, v), [0] * 6)[5]]
        assert ours == theirs
        mol = Chem.MolFromSmiles(s)
        for b in mol.GetBonds():  # the ring flag, which PyG does not keep
            assert ours[(b.GetBeginAtomIdx(), b.GetEndAtomIdx())][5] == float(b.IsInRing())


def test_invalid_smiles_skipped_and_listed_silently(capfd):
    from rdkit import RDLogger

    RDLogger.EnableLog("rdApp.error")
    smiles = ["CCO", "C1CC", "", "N(C)(C)(C)C", "c1ccccc1", None]
    where = [f"m.csv:{k}" for k in range(2, 8)]
    g, kept, skipped = graphs_from_smiles(smiles, where)
    assert kept == [0, 4] and len(g) == 2 and g.nodes_per_graph.tolist() == [3, 6]
    reasons = dict(skipped)
    assert list(reasons) == ["m.csv:3", "m.csv:4", "m.csv:5", "m.csv:7"]
    assert reasons["m.csv:3"].startswith("invalid SMILES 'C1CC': not valid SMILES syntax")
    assert reasons["m.csv:4"] == "empty graph (no atoms)"
    assert reasons["m.csv:5"].startswith("invalid SMILES 'N(C)(C)(C)C': RDKit rejects it: Explicit valence")
    assert "not text" in reasons["m.csv:7"]
    assert "SMILES Parse Error" not in capfd.readouterr().err  # RDKit's own log is blocked
    # ... and restored afterwards (BlockLogs): the caller's settings are theirs
    Chem.MolFromSmiles("C1CC")
    assert "SMILES Parse Error" in capfd.readouterr().err


# ---------------------------------------------------------------------------------------------
# Molecule files


def test_molecule_csv_with_labels_targets_and_broken_rows(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("id,smiles,activity,pic50\n"
                    "a,CCO,10,5.5\n"
                    "b,c1ccccc1,2,6.25\n"
                    "c,C1CC,2,7\n"          # invalid SMILES
                    "d,CCN,,4\n"             # no label
                    "e,CCC,2,high\n"         # target not a number
                    "f,CC(=O)O,10\n"         # wrong field count
                    "g,O,2,3.0\n")
    data = load_molecules(path, label="activity", target="pic50")
    assert data.ids == ["a", "b", "g"]
    assert data.classes == ["2", "10"]  # numeric order
    assert data.labels.tolist() == [1, 0, 0]
    assert data.targets.tolist() == [5.5, 6.25, 3.0] and data.target_name == "pic50"
    assert data.graphs.nodes_per_graph.tolist() == [3, 6, 1]
    lines = [w for w, _ in data.skipped]
    assert lines == ["mols.csv:4", "mols.csv:5", "mols.csv:6", "mols.csv:7"]
    reasons = dict(data.skipped)
    assert reasons["mols.csv:4"].startswith("invalid SMILES 'C1CC'")
    assert reasons["mols.csv:5"].startswith("no label")
    assert "'high'" in reasons["mols.csv:6"] and "not a finite number" in reasons["mols.csv:6"]
    assert reasons["mols.csv:7"] == "has 3 fields, the header has 4"
    # without label/target: the other columns are named in a note
    plain = load_molecules(path)
    assert plain.labels is None and plain.targets is None and len(plain) == 5
    assert any("'activity', 'pic50'" in n and "not used" in n for n in plain.notes)


def test_molecule_csv_column_rules(tmp_path):
    inferred = tmp_path / "structures.tsv"
    inferred.write_text("name\tstructure\ty\nx1\tCCO\t1\nx2\tc1ccncc1\t0\n")
    data = load_molecules(inferred, label="y")
    assert data.ids == ["x1", "x2"] and data.classes == ["0", "1"]
    assert any("'structure' as the SMILES" in n for n in data.notes)
    headerless = tmp_path / "plain.csv"
    headerless.write_text('"CCO","MOL-1"\n"c1ccccc1","MOL-2"\n"C1CC","MOL-3"\n')
    data = load_molecules(headerless)
    assert data.ids == ["MOL-1", "MOL-2"] and data.skipped[0][0] == "plain.csv:3"
    assert any("no header row" in n for n in data.notes)
    upper = tmp_path / "upper.csv"
    upper.write_text("Name,SMILES,Compound\nn1,CC,x\nn1,CCC,y\n")  # repeated ids -> file:line
    data = load_molecules(upper)
    assert data.ids == ["upper.csv:2", "upper.csv:3"]
    assert "upper.csv: the 'Name' values repeat: the molecules are named <file>:<line> instead." in data.notes
    with pytest.raises(DataError, match=r"upper.csv has no column 'SMILE'\. Did you mean 'SMILES'\? Fix: pass one "
                                        r"of its columns as smiles_column= \('Name', 'SMILES', 'Compound'\)\."):
        load_molecules(upper, smiles_column="SMILE")
    nothing = tmp_path / "numbers.csv"
    nothing.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match="numbers.csv has no SMILES column.*Fix: name the column smiles"):
        load_molecules(nothing)
    allbad = tmp_path / "bad.csv"
    allbad.write_text("smiles\nC1CC\n")
    with pytest.raises(DataError, match=r"bad.csv has no usable molecules \(e.g. bad.csv:2: invalid SMILES"):
        load_molecules(allbad)
    with pytest.raises(DataError, match="no molecule file"):
        load_molecules(tmp_path / "missing.csv")


def test_smi_file(tmp_path):
    path = tmp_path / "set.smi"
    path.write_text("SMILES Name\n# a comment\nCCO ethanol\n\nc1ccccc1 benzene ring\nC1CC broken\n")
    data = load_molecules(path)
    assert data.ids == ["ethanol", "benzene ring"]
    assert data.skipped == [("set.smi:6", data.skipped[0][1])] and "C1CC" in data.skipped[0][1]
    with pytest.raises(DataError, match=r"set.smi is a .smi file .* label='y' cannot apply"):
        load_molecules(path, label="y")


# ---------------------------------------------------------------------------------------------
# Named sets from the rdkit package


def test_nci_tpsa():
    data = load_named_graphs("nci_tpsa", "all")
    assert len(data) == 4991 and len(data.skipped) == 8  # 4,999 in the file; RDKit rejects 8
    assert all(r.startswith("invalid SMILES") for _, r in data.skipped)
    assert data.target_name == "TPSA" and data.targets.dtype == torch.float32
    assert data.ids[:3] == ["1", "2", "3"] and data.targets[:3].tolist() == pytest.approx([34.14, 25.78, 106.51])
    with open(f"{RDConfig.RDDataDir}/NCI/first_5K.smi") as handle:
        smiles = [line.split()[0] for _, line in zip(range(10), handle)]
    for k in range(10):  # the file's (Daylight) TPSA agrees with RDKit's for these
        tpsa = rdMolDescriptors.CalcTPSA(Chem.MolFromSmiles(smiles[k]))
        assert tpsa == pytest.approx(float(data.targets[k]), abs=0.01)
    train, test = load_named_graphs("nci_tpsa"), load_named_graphs("nci_tpsa", "test")
    assert len(train) + len(test) == 4991 and not set(train.ids) & set(test.ids)
    assert 0.78 < len(train) / 4991 <= 0.8


def test_wehi_unlabeled_for_pretraining():
    data = load_named_graphs("wehi")
    assert len(data) == 10000 and data.labels is None and data.targets is None and data.skipped == []
    assert data.ids[0] == "WEHI-0039854" and len(set(data.ids)) == 10000
    assert data.input_spec() == {"in_channels": 40, "edge_dim": 6}
    with pytest.raises(DataError, match="wehi has no test split"):
        load_named_graphs("wehi", "test")


def test_chembl_scaffold_split():
    data = load_named_graphs("chembl2321810", "all")
    assert len(data) == 1017 and data.target_name == "pIC50"
    assert data.ids[0] == "1520012" and float(data.targets[0]) == pytest.approx(5.48)
    assert float(data.targets.min()) == pytest.approx(4.27) and float(data.targets.max()) == pytest.approx(9.22)
    train, test = load_named_graphs("chembl2321810", "train"), load_named_graphs("chembl2321810", "test")
    assert (len(train), len(test)) == (813, 204)
    with open(f"{RDConfig.RDContribDir}/FreeWilson/data/CHEMBL2321810.smi") as handle:
        smiles = dict(reversed(line.split()) for line in handle)

    def scaffolds(ids):
        return {MurckoScaffold.MurckoScaffoldSmiles(smiles[i], includeChirality=False) for i in ids}
    assert not scaffolds(train.ids) & scaffolds(test.ids)
    again = load_named_graphs("chembl2321810", "test")
    assert again.ids == test.ids and torch.equal(again.graphs.x, test.graphs.x)
    with pytest.raises(DataError, match=r"unknown split 'tets'.*Did you mean 'test'"):
        load_named_graphs("chembl2321810", "tets")
    with pytest.raises(DataError, match=r"unknown graph set 'karat'.*Did you mean 'karate'"):
        load_named_graphs("karat")


# ---------------------------------------------------------------------------------------------
# Edge lists


def test_graph_npz(tmp_path):
    path = tmp_path / "graphs.npz"
    # three graphs: a triangle, an empty graph, a path of 2; node_ptr form
    np.savez(path, edge_index=np.array([[0, 1, 1, 2, 2, 0, 3, 4], [1, 0, 2, 1, 0, 2, 4, 3]]),
             node_ptr=np.array([0, 3, 3, 5]), x=np.arange(10, dtype=np.float32).reshape(5, 2),
             label=np.array(["ring", "star", "chain"]), target=np.array([1.5, 0.0, 2.5]))
    data = load_graph_npz(path)
    assert len(data) == 2 and data.ids == ["graphs.npz:0", "graphs.npz:2"]
    assert data.skipped == [("graphs.npz:1", "empty graph (no nodes)")]
    assert data.classes == ["chain", "ring"] and data.labels.tolist() == [1, 0]  # classes of the kept graphs
    assert data.targets.tolist() == [1.5, 2.5]
    assert data.graphs.nodes_per_graph.tolist() == [3, 2] and data.graphs.edge_index[:, 6:].tolist() == [[3, 4], [4, 3]]
    assert data.input_spec() == {"in_channels": 2, "edge_dim": 0}
    # the `graph` form, nodes not sorted by graph, no x: degree features, reordered nodes
    other = tmp_path / "batch.npz"
    np.savez(other, edge_index=np.array([[0, 2, 1, 3], [2, 0, 3, 1]]), graph=np.array([0, 1, 0, 1]))
    data = load_graph_npz(other)
    assert data.graphs.node_ptr.tolist() == [0, 2, 4] and data.graphs.x.shape == (4, DEGREE_FEATURES)
    assert data.graphs.edge_index.tolist() == [[0, 1, 2, 3], [1, 0, 3, 2]]
    assert any("grouped by graph" in n for n in data.notes)
    assert load_graphs(other).graphs.num_edges == 4


def test_graph_npz_bad_node_id_and_cross_edge(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, edge_index=np.array([[0, 1, 2], [1, 0, 7]]), node_ptr=np.array([0, 3]))
    with pytest.raises(DataError) as info:
        load_graph_npz(path)
    assert str(info.value) == ("bad.npz: edge 2 (edge_index[:, 2] = (2, 7)) names node 7, which does not exist: there "
                               "are 3 nodes (0..2). Fix: fix edge_index, or add the missing nodes' rows to x.")
    np.savez(path, edge_index=np.array([[0], [3]]), node_ptr=np.array([0, 2, 4]))
    with pytest.raises(DataError, match="bad.npz: edge 0 joins node 0 of graph 0 with node 3 of graph 1"):
        load_graph_npz(path)
    np.savez(path, edge_index=np.zeros((2, 0), dtype=np.int64), node_ptr=np.array([0, 0]))
    with pytest.raises(DataError, match="bad.npz has no usable graph"):
        load_graph_npz(path)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"bad.npz cannot be read as .npz \(BadZipFile"):
        load_graph_npz(path)
    single = tmp_path / "one.npz"
    with open(single, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(DataError, match="one.npz holds one array, not named arrays"):
        load_graph_npz(single)


def test_edge_csv_with_node_csv(tmp_path):
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target,weight\nb,a,1\na,c,2\nc,a,2\n,c,1\n")
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("id,f1,f2,label\na,1,0,x\nb,0,1,y\nc,1,1,\nd,0,0,x\n")
    data = load_edge_list(edges, nodes)
    assert len(data) == 1 and data.ids == ["edges.csv"] and data.node_ids == ["a", "b", "c", "d"]
    assert data.graphs.x.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]
    assert data.graphs.num_edges == 4  # a-b, a-c both ways; the repeated a-c collapses
    assert sorted(map(tuple, data.graphs.edge_index.T.tolist())) == [(0, 1), (0, 2), (1, 0), (2, 0)]
    assert data.node_classes == ["x", "y"] and data.node_labels.tolist() == [0, 1, -1, 0]
    assert data.skipped == [("edges.csv:5", "names no node in source or target")]
    assert load_edge_list(edges, nodes, directed=True).graphs.num_edges == 3
    assert load_graphs(edges, nodes=nodes).graphs.num_nodes == 4
    # no node file: nodes are the ids the edges name, integer ids in numeric order, degree features
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# u v\n10 2\n2 3\n\n3\n")
    data = load_edge_list(pairs)
    assert data.node_ids == ["2", "3", "10"] and data.graphs.x.shape == (3, DEGREE_FEATURES)
    assert data.graphs.x.argmax(1).tolist() == [2, 1, 1]
    assert data.skipped == [("pairs.txt:5", "has 1 field, an edge needs two node ids")]


def test_edge_list_bad_node_id_and_empty_graph(tmp_path):
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target\n0,1\n1,2\n2,9\n")
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("id,label\n0,a\n1,b\n2,a\n")
    with pytest.raises(DataError) as info:
        load_edge_list(edges, nodes)
    assert str(info.value) == ("edges.csv:4: the edge names node '9', which nodes.csv does not list (3 nodes). "
                               "Fix: add the node to nodes.csv or remove the edge.")
    empty = tmp_path / "empty.csv"
    empty.write_text("source,target\n")
    with pytest.raises(DataError, match=r"empty.csv has no nodes: the graph is empty\."):
        load_edge_list(empty)
    nodes.write_text("id,f\n0,1\n0,2\n")
    with pytest.raises(DataError, match=r"nodes.csv:3 repeats node id '0' \(first at line 2\)"):
        load_edge_list(edges, nodes)
    no_header = tmp_path / "plain.csv"
    no_header.write_text("0,1\n")
    with pytest.raises(DataError, match="plain.csv has no source and target columns"):
        load_edge_list(no_header)


# Found by tests/test_fuzz_readers.py: each of these raised another exception (TypeError, zlib.error,
# MemoryError, ValueError, NotImplementedError) or kept an infinity before the reader was fixed.


def test_load_graphs_option_the_chosen_reader_lacks_is_a_data_error(tmp_path):
    """An edge CSV whose header lost 'source,target' is read as molecules: nodes=/directed= was a TypeError."""
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst\n0,1\n")
    (tmp_path / "nodes.csv").write_text("id,label\n0,a\n1,b\n")
    with pytest.raises(DataError) as info:
        load_graphs(edges, nodes=tmp_path / "nodes.csv", directed=False)
    assert str(info.value) == ("edges.csv is read as a molecule file (its first line names no source and target "
                               "columns), which takes no nodes=, directed= option. Fix: for an edge list, name its "
                               "node-id columns source and target in the first line.")
    np.savez(tmp_path / "g.npz", edge_index=np.array([[0], [1]]), node_ptr=np.array([0, 2]))
    with pytest.raises(DataError, match=r"g.npz is read as a graph .npz, which takes no label= option\. Fix: leave"):
        load_graphs(tmp_path / "g.npz", label="y")


def test_graph_npz_damage_found_by_fuzzing(tmp_path):
    path = tmp_path / "bad.npz"
    buffer = io.BytesIO()
    np.savez_compressed(buffer, edge_index=np.array([[0, 1], [1, 0]]), node_ptr=np.array([0, 2]))
    data = bytearray(buffer.getvalue())
    name_length, extra_length = struct.unpack("<HH", data[26:30])
    data[30 + name_length + extra_length] ^= 0xFF  # the first byte of edge_index's deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"bad.npz cannot be read as .npz \(error: Error -3 while decompressing"):
        load_graph_npz(path)
    data = bytearray(buffer.getvalue())
    central = data.index(b"PK\x01\x02")
    data[central + 6] = 64  # "version needed to extract" 6.4: zipfile raises NotImplementedError
    path.write_bytes(bytes(data))
    assert is_graph_file(str(path)) is False
    with pytest.raises(DataError, match=r"cannot be read as .npz \(NotImplementedError: zip file version 6.4\)"):
        load_graph_npz(path)
    cases = [  # arrays -> the DataError
        ({"edge_index": np.zeros((2, 0), np.int64), "node_ptr": np.array([0, 1]), "label": np.array(3)},
         r"bad.npz: 'label' has shape \(\); it must be \(N,\), one per graph. Fix: give one label per graph."),
        ({"edge_index": np.zeros((2, 0), np.int64), "node_ptr": np.array([0, 2**40])},  # was a MemoryError
         r"'node_ptr' declares 1,099,511,627,776 nodes and no array holds them .* Fix: save x \(V, F\)"),
        ({"edge_index": np.zeros((2, 0), np.int64), "graph": np.array([0, 2**40])},  # was a MemoryError
         r"bad.npz: 'graph' has graph id 1099511627776, but there are only 2 nodes. Fix: number the graphs"),
        ({"edge_index": np.array([[0, 1], [1, 0]]), "node_ptr": np.array([0, 2]), "edge_attr": np.ones(3)},
         r"bad.npz: 'edge_attr' has 3 rows for 2 edges"),  # was a ValueError from reshape
        ({"edge_index": np.array([[0], [1]]), "x": np.array([[1.0], [1e39]])},  # was stored as inf
         r"bad.npz: 'x' has values beyond float32's range \(e.g. 1e\+39\)"),
        ({"edge_index": np.array([[0], [1]]), "node_ptr": np.array([0, 2]), "target": np.array([-1e300])},
         r"bad.npz: 'target' has values beyond float32's range"),
    ]
    for arrays, message in cases:
        np.savez(path, **arrays)
        with pytest.raises(DataError, match=message):
            load_graph_npz(path)
    np.savez(path, edge_index=np.zeros((2, 0), np.int64), node_ptr=np.array([0, 1]), edge_attr=np.ones(0))
    data = load_graph_npz(path)  # no edges and a 1-D edge_attr of none: was a ValueError from reshape
    assert data.graphs.edge_attr.shape == (0, 1)
    np.savez(path, edge_index=np.zeros((2, 0), np.int64), graph=np.array([0, 2]), label=np.array(["a", "b", "c"]))
    data = load_graph_npz(path)  # graph ids up to the label count are fine: graph 1 is empty, skipped
    assert data.ids == ["bad.npz:0", "bad.npz:2"] and data.skipped == [("bad.npz:1", "empty graph (no nodes)")]


def test_numbers_beyond_float32_in_node_and_molecule_files(tmp_path):
    """A node feature or a molecule target of 1e39 was stored as an infinity."""
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target\na,b\n")
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("id,f\na,1\nb,1e39\n")
    with pytest.raises(DataError, match=r"nodes.csv:3: feature 'f' is '1e39', not a number \(within float32's range"):
        load_edge_list(edges, nodes)
    mols = tmp_path / "mols.csv"
    mols.write_text("smiles,target\nCCO,1e39\nCC,2\n")
    data = load_molecules(mols)
    assert data.targets.tolist() == [2.0]
    assert data.skipped == [("mols.csv:2", "the target '1e39' (column 'target') is not a finite number (in float32)")]


# ---------------------------------------------------------------------------------------------
# networkx


def test_karate_node_level():
    data = load_named_graphs("karate", "all")
    assert len(data) == 1 and data.graphs.num_nodes == 34 and data.graphs.num_edges == 156
    assert data.node_classes == ["Mr. Hi", "Officer"] and data.num_node_classes == 2
    assert data.node_labels.tolist().count(0) == 17 and (data.node_labels >= 0).all()
    # one-hot node ids as features (as PyTorch Geometric's KarateClub): an MLP can embed each node
    assert data.labels is None and data.input_spec() == {"in_channels": 34, "edge_dim": 0}
    assert torch.equal(data.graphs.x, torch.eye(34))
    ei = data.graphs.edge_index
    assert set(map(tuple, ei.T.tolist())) == {(v, u) for u, v in ei.T.tolist()}  # undirected
    degree = torch.bincount(data.graphs.edge_index[0], minlength=34)
    assert degree[33] == 17 and degree[0] == 16  # the two leaders
    train, test = load_named_graphs("karate", "train"), load_named_graphs("karate", "test")
    assert torch.equal(train.graphs.edge_index, data.graphs.edge_index)  # the same graph, transductive
    seen_train, seen_test = train.node_labels >= 0, test.node_labels >= 0
    assert (int(seen_train.sum()), int(seen_test.sum())) == (28, 6) and not (seen_train & seen_test).any()
    assert torch.equal(train.node_labels[seen_train], data.node_labels[seen_train])
    assert load_named_graphs("karate", "train").node_labels.tolist() == train.node_labels.tolist()  # deterministic


def test_from_networkx_graph_list():
    a = nx.path_graph(3)
    a.graph["kind"] = "path"
    b = nx.cycle_graph(4)
    b.graph["kind"] = "cycle"
    c = nx.Graph()
    c.graph["kind"] = "none"
    d = nx.DiGraph([(0, 1)])
    d.graph["kind"] = "path"
    for g in (a, b, d):
        nx.set_node_attributes(g, {n: [n, 1.0] for n in g.nodes}, "feat")
    data = from_networkx([a, b, c, d], node_features="feat", label_attr="kind", name="toy")
    assert data.ids == ["toy:0", "toy:1", "toy:3"] and data.skipped == [("toy:2", "empty graph (no nodes)")]
    assert data.classes == ["cycle", "path"] and data.labels.tolist() == [1, 0, 1]
    assert data.graphs.edges_per_graph.tolist() == [4, 8, 1]  # undirected both ways; the DiGraph as is
    assert data.graphs.x[:3].tolist() == [[0, 1], [1, 1], [2, 1]]
    assert from_networkx([a], node_features="constant").graphs.x.tolist() == [[1.0]] * 3
    with pytest.raises(DataError, match="node 0 of graphs:0 has no attribute 'weight'"):
        from_networkx([a], node_features="weight")
    with pytest.raises(DataError, match="has no nodes"):
        from_networkx(nx.Graph())


# ---------------------------------------------------------------------------------------------
# Graphs.index / cat / subset against a slow per-graph reference


def _split(g: Graphs) -> list[tuple]:
    """Per graph: (x, local edge_index, edge_attr), the slow way."""
    out = []
    for i in range(len(g)):
        n0, n1, e0, e1 = (int(t) for t in (g.node_ptr[i], g.node_ptr[i + 1], g.edge_ptr[i], g.edge_ptr[i + 1]))
        out.append((g.x[n0:n1], g.edge_index[:, e0:e1] - n0, g.edge_attr[e0:e1]))
    return out


def _same(a: Graphs, b: Graphs):
    for name in ("x", "edge_index", "node_ptr", "edge_ptr", "edge_attr"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_index_and_cat_match_per_graph_reference():
    g, kept, _ = graphs_from_smiles(wehi_smiles(400), [str(i) for i in range(400)])
    parts = _split(g)
    rng = np.random.default_rng(0)
    idx = torch.from_numpy(rng.integers(0, 400, 97))  # repeats and any order
    picked = g.index(idx)
    ref = Graphs.from_lists([parts[i][0] for i in idx], [parts[i][1] for i in idx], [parts[i][2] for i in idx])
    _same(picked, ref)
    assert torch.equal(picked.batch, torch.repeat_interleave(torch.arange(97), ref.nodes_per_graph))
    other = torch.from_numpy(rng.integers(0, 400, 31))
    _same(Graphs.cat([g.index(idx), g.index(other)]), g.index(torch.cat([idx, other])))
    _same(g.index(torch.arange(400)), g)
    _same(Graphs.cat([g.index(torch.arange(0, 150)), g.index(torch.arange(150, 400))]), g)
    assert len(g.index(torch.zeros(0, dtype=torch.long))) == 0
    # a dataset subset carries labels/ids, and node-level fields follow their graphs' nodes
    data = GraphDataset(g, torch.arange(400) % 3, [f"m{i}" for i in range(400)], "t", "t",
                        node_labels=torch.arange(g.num_nodes) % 5, node_ids=[str(k) for k in range(g.num_nodes)])
    sub = data.subset(idx)
    assert sub.ids == [f"m{i}" for i in idx.tolist()] and torch.equal(sub.labels, idx % 3)
    node_rows = torch.cat([torch.arange(int(g.node_ptr[i]), int(g.node_ptr[i + 1])) for i in idx])
    assert torch.equal(sub.node_labels, node_rows % 5) and sub.node_ids == [str(k) for k in node_rows.tolist()]
