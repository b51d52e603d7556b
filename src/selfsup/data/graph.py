"""Graphs: a ragged batch type for many small graphs, and the graph dataset.

``Graphs`` holds N graphs in compressed form, the way PyTorch Geometric's ``Batch`` does, and is both
the storage of a whole dataset on the device and the mini-batch a step works on:

- ``x`` (V, F) float32: the node features of every graph, graph after graph;
- ``edge_index`` (2, E) int64: directed edges (an undirected bond is two), as node rows of ``x``;
- ``edge_attr`` (E, A) float32 or None: edge features;
- ``node_ptr`` (N + 1,), ``edge_ptr`` (N + 1,) int64: graph i owns nodes ``node_ptr[i]:node_ptr[i+1]``
  and edges ``edge_ptr[i]:edge_ptr[i+1]``.

``index(idx)`` gathers a batch of graphs with a few vectorized gathers (no Python loop over graphs,
no per-graph objects), ``cat(parts)`` joins batches (two views in one backbone pass), ``batch`` is
the graph id of every node (PyG's ``batch`` vector) for pooling. It follows ``selfsup.samples``, so
generic methods run on it unchanged.

Readers (below the classes), each returning a GraphDataset:

- ``graphs_from_smiles`` / ``load_molecules``: molecules through RDKit, a fixed atom and bond vocabulary
  (``NODE_FEATURES``, 40 columns; ``EDGE_FEATURES``, 6), from a CSV/TSV with a SMILES column or a .smi file;
- ``load_graph_npz``: many graphs in one .npz (PyG's Batch as arrays: edge_index, node_ptr or graph, x);
- ``load_edge_list``: one graph (node-level) from an edge CSV (source,target) and an optional node CSV;
- ``from_networkx``: one networkx graph (node-level) or a list (graph-level);
- ``load_named_graphs``: nci_tpsa, wehi, chembl2321810 (files inside the rdkit wheel) and karate
  (networkx), with deterministic train/test splits; ``load_graphs`` picks a reader by the file.

Node-level data is a GraphDataset of one graph whose ``node_labels`` (V,) hold a class per node (-1 for
none); graph-level data has ``labels`` (N,) and/or ``targets`` (N,). Broken records (an invalid SMILES,
an empty graph, an unreadable row) are skipped and listed in ``skipped`` as (file:line, reason); a file
that cannot be used at all, or an edge naming a node that does not exist, is a DataError.
"""
from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError, closest
from ..files import display_path
from .dataset import check_samples


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The concatenation of arange(s, s + c) for each (s, c): (counts.sum(),) int64."""
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=starts.device)
    offsets = torch.cumsum(counts, 0) - counts  # where each range starts in the output
    within = torch.arange(total, device=starts.device) - torch.repeat_interleave(offsets, counts)
    return torch.repeat_interleave(starts, counts) + within


@dataclass
class Graphs:
    """N graphs in compressed form (see the module docstring)."""

    x: torch.Tensor
    edge_index: torch.Tensor
    node_ptr: torch.Tensor
    edge_ptr: torch.Tensor
    edge_attr: torch.Tensor | None = None

    def __post_init__(self):
        if self.x.dim() != 2 or self.edge_index.dim() != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"x must be (V, F) and edge_index (2, E), got {tuple(self.x.shape)}, "
                             f"{tuple(self.edge_index.shape)}")
        if len(self.node_ptr) != len(self.edge_ptr):
            raise ValueError(f"node_ptr and edge_ptr differ in length: {len(self.node_ptr)}, {len(self.edge_ptr)}")

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    @property
    def nodes_per_graph(self) -> torch.Tensor:
        return self.node_ptr[1:] - self.node_ptr[:-1]

    @property
    def edges_per_graph(self) -> torch.Tensor:
        return self.edge_ptr[1:] - self.edge_ptr[:-1]

    @property
    def batch(self) -> torch.Tensor:
        """(V,) int64: the graph of every node."""
        return torch.repeat_interleave(torch.arange(len(self), device=self.x.device), self.nodes_per_graph)

    def to(self, device) -> "Graphs":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Graphs(move(self.x), move(self.edge_index), move(self.node_ptr), move(self.edge_ptr), move(self.edge_attr))

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.x, self.edge_index, self.node_ptr, self.edge_ptr, self.edge_attr) if t is not None]

    def index(self, idx: torch.Tensor) -> "Graphs":
        """The graphs at `idx` (B,), in that order, as one batch."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.node_ptr.device)
        n_nodes, n_edges = self.nodes_per_graph[idx], self.edges_per_graph[idx]
        node_rows = _ranges(self.node_ptr[idx], n_nodes)
        edge_rows = _ranges(self.edge_ptr[idx], n_edges)
        new_start = torch.cumsum(n_nodes, 0) - n_nodes  # first node of each picked graph in the batch
        shift = torch.repeat_interleave(new_start - self.node_ptr[idx], n_edges)  # old row -> new row, per edge
        zero = torch.zeros(1, dtype=torch.long, device=idx.device)
        return Graphs(self.x[node_rows], self.edge_index[:, edge_rows] + shift,
                      torch.cat([zero, torch.cumsum(n_nodes, 0)]), torch.cat([zero, torch.cumsum(n_edges, 0)]),
                      None if self.edge_attr is None else self.edge_attr[edge_rows])

    @classmethod
    def cat(cls, parts: list["Graphs"]) -> "Graphs":
        """The graphs of `parts`, in order, as one batch."""
        node_base = [0]
        edge_base = [0]
        for p in parts[:-1]:
            node_base.append(node_base[-1] + p.num_nodes)
            edge_base.append(edge_base[-1] + p.num_edges)
        x = torch.cat([p.x for p in parts])
        edge_index = torch.cat([p.edge_index + b for p, b in zip(parts, node_base)], dim=1)
        node_ptr = torch.cat([parts[0].node_ptr[:1]] + [p.node_ptr[1:] + b for p, b in zip(parts, node_base)])
        edge_ptr = torch.cat([parts[0].edge_ptr[:1]] + [p.edge_ptr[1:] + b for p, b in zip(parts, edge_base)])
        attrs = [p.edge_attr for p in parts]
        edge_attr = None if any(a is None for a in attrs) else torch.cat(attrs)
        return cls(x, edge_index, node_ptr, edge_ptr, edge_attr)

    @classmethod
    def from_lists(cls, xs: list[torch.Tensor], edges: list[torch.Tensor], edge_attrs: list[torch.Tensor] | None = None
                   ) -> "Graphs":
        """Graphs from per-graph node features (V_i, F) and edges (2, E_i) with node ids local to each graph."""
        n = torch.tensor([len(x) for x in xs], dtype=torch.long)
        e = torch.tensor([t.shape[1] for t in edges], dtype=torch.long)
        zero = torch.zeros(1, dtype=torch.long)
        node_ptr, edge_ptr = torch.cat([zero, torch.cumsum(n, 0)]), torch.cat([zero, torch.cumsum(e, 0)])
        shift = torch.repeat_interleave(node_ptr[:-1], e)
        edge_index = torch.cat(list(edges), dim=1).long() + shift if len(edges) else torch.zeros(2, 0, dtype=torch.long)
        edge_attr = torch.cat(list(edge_attrs)).float() if edge_attrs is not None and len(edge_attrs) else None
        return cls(torch.cat(list(xs)).float(), edge_index, node_ptr, edge_ptr, edge_attr)


@dataclass
class Nodes:
    """A batch of nodes for node-level work: the nodes at ``rows`` of ``graphs`` (usually one graph).

    Message passing needs the whole graph, so a batch of nodes carries it; a backbone computes every
    node's representation and keeps the rows (``backbones/graph.py``). ``cat`` joins batches whose
    graphs differ (two perturbed copies of the graph, one backbone pass) by joining the graphs and
    shifting the rows. It follows ``selfsup.samples``."""

    graphs: Graphs
    rows: torch.Tensor

    def __len__(self) -> int:
        return len(self.rows)

    def to(self, device) -> "Nodes":
        return Nodes(self.graphs.to(device), self.rows.to(device))

    def tensors(self) -> list[torch.Tensor]:
        return [*self.graphs.tensors(), self.rows]

    def index(self, idx: torch.Tensor) -> "Nodes":
        return Nodes(self.graphs, self.rows[torch.as_tensor(idx, dtype=torch.long, device=self.rows.device)])

    @classmethod
    def cat(cls, parts: list["Nodes"]) -> "Nodes":
        offsets, total = [], 0
        for p in parts:
            offsets.append(total)
            total += p.graphs.num_nodes
        return cls(Graphs.cat([p.graphs for p in parts]), torch.cat([p.rows + o for p, o in zip(parts, offsets)]))


@dataclass
class NodeDataset:
    """Node-level data: the nodes `samples.rows` of one graph are the samples, with a class each.

    Built from a node-level ``GraphDataset`` (``node_labels``; -1 = no label in this split) by
    ``node_dataset``: the samples are the labelled nodes of the split (every node for ``all``)."""

    nodes: Nodes
    labels: torch.Tensor | None
    ids: list[str]
    name: str
    source: str
    classes: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    modality = "graph"
    schema = None
    targets = None

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def samples(self) -> Nodes:
        return self.nodes

    @property
    def num_classes(self) -> int | None:
        return None if self.labels is None else (len(self.classes) if self.classes else int(self.labels.max()) + 1)

    def input_spec(self) -> dict:
        a = self.nodes.graphs.edge_attr
        return {"in_channels": self.nodes.graphs.x.shape[1], "edge_dim": 0 if a is None else a.shape[1]}

    def normalization(self) -> tuple[list[float], list[float]]:
        f = self.nodes.graphs.x.shape[1]
        return [0.0] * f, [1.0] * f

    def subset(self, index) -> "NodeDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return NodeDataset(self.nodes.index(index), None if self.labels is None else self.labels[index],
                           [self.ids[i] for i in index.tolist()], self.name, self.source, self.classes,
                           list(self.skipped), list(self.notes))


def node_dataset(data: "GraphDataset") -> NodeDataset:
    """The labelled nodes of a node-level GraphDataset as samples (all nodes when none is labelled)."""
    labels = data.node_labels
    rows = torch.arange(data.graphs.num_nodes) if labels is None else torch.nonzero(labels >= 0).flatten()
    if len(rows) == 0:
        rows = torch.arange(data.graphs.num_nodes)
    node_ids = data.node_ids or [str(i) for i in range(data.graphs.num_nodes)]
    return NodeDataset(Nodes(data.graphs, rows), None if labels is None or (labels[rows] < 0).any() else labels[rows],
                       [f"{data.name}:{node_ids[i]}" for i in rows.tolist()], data.name, data.source,
                       data.node_classes, list(data.skipped), list(data.notes))


def is_graph_file(path: str) -> bool:
    """Whether a file holds graphs: .smi/.smiles, an .npz with edge_index, or a .csv/.tsv whose header
    names a SMILES column or source and target columns (reads the first line only)."""
    lower = path.lower()
    if lower.endswith(SMI_EXTENSIONS):
        return True
    if lower.endswith(".npz"):
        try:
            import zipfile

            with zipfile.ZipFile(path) as archive:
                return "edge_index.npy" in archive.namelist()
        except Exception:  # damaged: BadZipFile, NotImplementedError for a zip version it lacks, ...
            return False
    if lower.endswith((".csv", ".tsv", ".tab")) and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                first = handle.readline()
        except OSError:
            return False
        cells = {c.strip().strip('"').lower() for c in first.replace("\t", ",").split(",")}
        return bool(cells & set(SMILES_COLUMNS)) or {"source", "target"} <= cells
    return False


@dataclass
class GraphDataset:
    """N graphs (``Graphs``), with optional class labels (N,) int64 and regression targets (N,) float32."""

    graphs: Graphs
    labels: torch.Tensor | None
    ids: list[str]
    name: str
    source: str
    classes: list[str] | None = None
    targets: torch.Tensor | None = None
    target_name: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Node-level data (one graph, or a few, whose nodes are the samples to classify): a class per
    # node (V,) int64, -1 where a node has no label (in this split), the class names, and the
    # nodes' names in the source file. None for graph-level data.
    node_labels: torch.Tensor | None = None
    node_classes: list[str] | None = None
    node_ids: list[str] | None = None

    modality = "graph"
    schema = None

    def __post_init__(self):
        check_samples(None, None, None, "", len(self.graphs), "graphs", labels=self.labels, targets=self.targets,
                      ids=self.ids)
        check_samples(None, None, None, "", self.graphs.num_nodes, "nodes", node_labels=self.node_labels,
                      node_ids=self.node_ids)

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def samples(self) -> Graphs:
        return self.graphs

    @property
    def num_classes(self) -> int | None:
        if self.labels is None:
            return None
        return len(self.classes) if self.classes is not None else int(self.labels.max()) + 1

    def input_spec(self) -> dict:
        """The backbone arguments the data fixes: node and edge feature widths."""
        a = self.graphs.edge_attr
        return {"in_channels": self.graphs.x.shape[1], "edge_dim": 0 if a is None else a.shape[1]}

    def normalization(self) -> tuple[list[float], list[float]]:
        """Node features pass as they are (one-hot and small counts): mean 0, std 1 per feature."""
        f = self.graphs.x.shape[1]
        return [0.0] * f, [1.0] * f

    @property
    def num_node_classes(self) -> int | None:
        if self.node_labels is None:
            return None
        return len(self.node_classes) if self.node_classes is not None else int(self.node_labels.max()) + 1

    def subset(self, index) -> "GraphDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        node_labels = node_ids = None
        if self.node_labels is not None or self.node_ids is not None:
            rows = _ranges(self.graphs.node_ptr[index], self.graphs.nodes_per_graph[index])
            node_labels = None if self.node_labels is None else self.node_labels[rows]
            node_ids = None if self.node_ids is None else [self.node_ids[i] for i in rows.tolist()]
        return GraphDataset(self.graphs.index(index), pick(self.labels), [self.ids[i] for i in index.tolist()],
                            self.name, self.source, self.classes, pick(self.targets), self.target_name,
                            list(self.skipped), list(self.notes), node_labels,
                            None if self.node_classes is None else list(self.node_classes), node_ids)


# =============================================================================================
# Readers. Every one returns a GraphDataset; broken records are skipped and listed in `skipped`
# as (file:line, reason), a file that cannot be read at all is a DataError.

ELEMENTS = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "B", "Si", "Se")
_ATOMIC_NUMBERS = (6, 7, 8, 16, 9, 17, 35, 53, 15, 5, 14, 34)
HYBRIDIZATIONS = ("SP", "SP2", "SP3", "SP3D", "SP3D2")
BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")

# The atom vocabulary, one column each, in this order (40 columns). Groups are one-hot; a value past
# a group's end goes to its last column ("5+", "4+", "other", the charge extremes).
NODE_FEATURES: tuple[str, ...] = (
    *(f"element={e}" for e in ELEMENTS), "element=other",                        # 0..12
    *(f"degree={d}" for d in range(5)), "degree=5+",                             # 13..18
    "charge<=-2", "charge=-1", "charge=0", "charge=+1", "charge>=+2",            # 19..23
    *(f"hydrogens={h}" for h in range(4)), "hydrogens=4+",                       # 24..28
    "aromatic", "in_ring",                                                       # 29, 30
    *(f"hybridization={h}" for h in HYBRIDIZATIONS), "hybridization=other",      # 31..36
    "chirality=none", "chirality=CW", "chirality=CCW",                           # 37..39
)
# The bond vocabulary (6 columns): bond type one-hot (another type, e.g. dative, leaves all four
# zero), conjugated, in a ring.
EDGE_FEATURES: tuple[str, ...] = ("bond=single", "bond=double", "bond=triple", "bond=aromatic", "conjugated", "in_ring")
_GROUP_START = {"element": 0, "degree": 13, "charge": 19, "hydrogens": 24, "aromatic": 29, "in_ring": 30,
                "hybridization": 31, "chirality": 37}

DEGREE_FEATURES = 32  # generic graphs without node features: one-hot degree 0..30, then "31+"
# A graph .npz without x or graph arrays declares its node count in node_ptr alone; a larger count
# is a damaged node_ptr (the degree features alone would take 128 bytes a node). As MAX_PIXELS.
MAX_DECLARED_NODES = 1 << 26
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # a number beyond it would be stored as an infinity: not a number

SMILES_COLUMNS = ("smiles", "canonical_smiles", "isomeric_smiles")  # compared in lower case
ID_COLUMNS = ("id", "name", "mol_id", "molecule_id", "compound_id", "chembl_id")
SMI_EXTENSIONS = (".smi", ".smiles")
EDGE_LIST_EXTENSIONS = (".edgelist", ".edges", ".el", ".txt")
MISSING = frozenset({"", "?", "na", "n/a", "nan", "null", "none", "-"})  # compared after strip + lower


def _rows(n_per: np.ndarray) -> np.ndarray:
    """(sum n_per,) int64: for each item i, n_per[i] copies of i."""
    return np.repeat(np.arange(len(n_per), dtype=np.int64), n_per)


def _ptr(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _class_order(values) -> list[str]:
    """The distinct label texts, numerically when all are numbers (2 before 10), else alphabetically."""
    unique = sorted(set(values))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _degree_onehot(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """(V, DEGREE_FEATURES) float32: one-hot in-degree (the degree, for an undirected graph), capped."""
    degree = np.bincount(edge_index[1], minlength=num_nodes) if edge_index.size else np.zeros(num_nodes, np.int64)
    x = np.zeros((num_nodes, DEGREE_FEATURES), dtype=np.float32)
    x[np.arange(num_nodes), np.minimum(degree, DEGREE_FEATURES - 1)] = 1.0
    return x


def _graphs(x: np.ndarray, edge_index: np.ndarray, node_ptr: np.ndarray, edge_ptr: np.ndarray,
            edge_attr: np.ndarray | None = None) -> Graphs:
    return Graphs(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                  torch.from_numpy(np.ascontiguousarray(edge_index, dtype=np.int64).reshape(2, -1)),
                  torch.from_numpy(np.asarray(node_ptr, dtype=np.int64)),
                  torch.from_numpy(np.asarray(edge_ptr, dtype=np.int64)),
                  None if edge_attr is None else torch.from_numpy(np.ascontiguousarray(edge_attr, dtype=np.float32)))


# ---------------------------------------------------------------------------------------------
# Molecules: SMILES -> graphs through RDKit


@functools.lru_cache(maxsize=1)
def _rdkit():
    """(Chem, rdBase, lookup tables): RDKit, imported on first use, and its enums as column indices."""
    try:
        from rdkit import Chem, rdBase
        from rdkit.Chem import rdchem
    except ImportError:
        raise DataError("reading molecules needs RDKit, which is not installed.", "pip install rdkit") from None
    element = np.full(256, len(ELEMENTS), dtype=np.int64)
    element[list(_ATOMIC_NUMBERS)] = np.arange(len(ELEMENTS))
    hybrid = np.full(64, len(HYBRIDIZATIONS), dtype=np.int64)
    for k, h in enumerate(HYBRIDIZATIONS):
        hybrid[int(rdchem.HybridizationType.names[h])] = k
    chiral = np.zeros(64, dtype=np.int64)
    chiral[int(rdchem.ChiralType.CHI_TETRAHEDRAL_CW)] = 1
    chiral[int(rdchem.ChiralType.CHI_TETRAHEDRAL_CCW)] = 2
    bond = np.full(64, -1, dtype=np.int64)
    for k, b in enumerate(BOND_TYPES):
        bond[int(rdchem.BondType.names[b])] = k
    return Chem, rdBase, {"element": element, "hybrid": hybrid, "chiral": chiral, "bond": bond}


def _why_invalid(Chem, smiles: str) -> str:
    """Why RDKit returns None for `smiles` (the failure path only: parse, then sanitize, separately)."""
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return "not valid SMILES syntax (an unclosed ring or bracket, an unknown element, ...)"
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit's AtomValenceException, KekulizeException, ...
        text = " ".join(str(exc).split())
        return f"RDKit rejects it: {text[:150]}"
    return "RDKit cannot read it"


def _parse_smiles(smiles, where) -> tuple[list, list[int], list[tuple[str, str]]]:
    """(molecules, their positions in `smiles`, skipped) with RDKit's own logging blocked meanwhile."""
    Chem, rdBase, _ = _rdkit()
    mols, kept, skipped = [], [], []
    with rdBase.BlockLogs():  # silences RDKit's stderr log, then restores the caller's settings
        parse = Chem.MolFromSmiles
        for i, text in enumerate(smiles):
            if not isinstance(text, str):
                skipped.append((where[i], f"the SMILES is {type(text).__name__}, not text"))
                continue
            text = text.strip()
            mol = parse(text) if text else None
            if not text or (mol is not None and mol.GetNumAtoms() == 0):
                skipped.append((where[i], "empty graph (no atoms)"))
            elif mol is None:
                skipped.append((where[i], f"invalid SMILES {_short(text)}: {_why_invalid(Chem, text)}"))
            else:
                mols.append(mol)
                kept.append(i)
    return mols, kept, skipped


def _mol_graphs(mols: list) -> Graphs:
    """The molecules as one Graphs: atoms -> nodes (NODE_FEATURES), bonds -> two directed edges (EDGE_FEATURES).

    Per molecule, RDKit's getters are mapped over its atoms and bonds into flat int lists (the cost is
    RDKit's Python wrapper of each atom and bond, about 2 us); the one-hot matrices are then built
    with a few numpy scatters over all molecules at once, and the degree from the bonds.
    """
    from rdkit.Chem import rdchem

    _, _, table = _rdkit()
    A, B = rdchem.Atom, rdchem.Bond
    atom_getters = (A.GetAtomicNum, A.GetFormalCharge, A.GetTotalNumHs, A.GetIsAromatic, A.IsInRing,
                    A.GetHybridization, A.GetChiralTag)
    bond_getters = (B.GetBeginAtomIdx, B.GetEndAtomIdx, B.GetBondType, B.GetIsConjugated, B.IsInRing)
    atom_values: list[list] = [[] for _ in atom_getters]
    bond_values: list[list] = [[] for _ in bond_getters]
    n_atoms = np.empty(len(mols), dtype=np.int64)
    n_bonds = np.empty(len(mols), dtype=np.int64)
    for k, mol in enumerate(mols):
        n_atoms[k], n_bonds[k] = mol.GetNumAtoms(), mol.GetNumBonds()
        atoms = list(map(mol.GetAtomWithIdx, range(n_atoms[k])))  # (faster than GetAtoms()' Python iterator)
        bonds = list(map(mol.GetBondWithIdx, range(n_bonds[k])))
        for out, get in zip(atom_values, atom_getters):
            out.extend(map(get, atoms))
        for out, get in zip(bond_values, bond_getters):
            out.extend(map(get, bonds))
    element, charge, hydrogens, aromatic, ring, hybrid, chiral = (np.array(c, dtype=np.int64) for c in atom_values)
    begin, end, kind, conjugated, bond_ring = (np.array(c, dtype=np.int64) for c in bond_values)

    node_ptr, bond_ptr = _ptr(n_atoms), _ptr(n_bonds)
    shift = np.repeat(node_ptr[:-1], n_bonds)  # local atom index -> row of x
    u, w = begin + shift, end + shift
    v = int(node_ptr[-1])
    degree = np.bincount(np.concatenate([u, w]), minlength=v)
    x = np.zeros((v, len(NODE_FEATURES)), dtype=np.float32)
    row = np.arange(v)
    g = _GROUP_START
    x[row, g["element"] + table["element"][np.clip(element, 0, 255)]] = 1
    x[row, g["degree"] + np.minimum(degree, 5)] = 1
    x[row, g["charge"] + np.clip(charge, -2, 2) + 2] = 1
    x[row, g["hydrogens"] + np.clip(hydrogens, 0, 4)] = 1
    x[:, g["aromatic"]] = aromatic
    x[:, g["in_ring"]] = ring
    x[row, g["hybridization"] + table["hybrid"][np.clip(hybrid, 0, 63)]] = 1
    x[row, g["chirality"] + table["chiral"][np.clip(chiral, 0, 63)]] = 1

    edge_index = np.stack([np.stack([u, w], 1).reshape(-1), np.stack([w, u], 1).reshape(-1)])  # u->w, w->u per bond
    attr = np.zeros((len(u), len(EDGE_FEATURES)), dtype=np.float32)
    kind = table["bond"][np.clip(kind, 0, 63)]
    typed = kind >= 0
    attr[np.flatnonzero(typed), kind[typed]] = 1
    attr[:, 4] = conjugated
    attr[:, 5] = bond_ring
    return _graphs(x, edge_index, node_ptr, 2 * bond_ptr, np.repeat(attr, 2, axis=0))


def graphs_from_smiles(smiles: list[str], where: list[str]) -> tuple[Graphs, list[int], list[tuple[str, str]]]:
    """Molecules from SMILES through RDKit: (Graphs, kept_index, skipped).

    Atoms are nodes and bonds edges, each bond as two directed edges (u->v, then v->u, as OGB's
    ``smiles2graph``); hydrogens stay implicit (counted in a feature). A multi-fragment SMILES (a
    salt, a mixture) is one graph of several components. The feature vocabulary is fixed, so every
    file and every split encodes alike (no schema travels with the encoder):

    node features (40, ``NODE_FEATURES``): one-hot element over C, N, O, S, F, Cl, Br, I, P, B, Si,
    Se + other (13); one-hot degree (bonded heavy atoms) 0..4, 5+ (6); one-hot formal charge <=-2,
    -1, 0, +1, >=+2 (5); one-hot attached hydrogens (``GetTotalNumHs``) 0..3, 4+ (5); aromatic (1); in
    a ring (1); one-hot hybridization SP, SP2, SP3, SP3D, SP3D2, other (6); one-hot chirality tag
    none, CW, CCW (3).
    edge features (6, ``EDGE_FEATURES``): one-hot bond type single, double, triple, aromatic (a
    dative or other bond leaves the four zero), conjugated, in a ring.

    These are the atom and bond properties of OGB's molecule featurization (Hu et al., "Open Graph
    Benchmark", NeurIPS 2020; ``ogb.utils.features``) and of Hu et al., "Strategies for Pre-training
    Graph Neural Networks" (ICLR 2020: atom type and chirality; bond type), as one-hot columns
    rather than embedding indices, with rare elements pooled into "other".

    `where` names each SMILES in messages (``file:line``). An invalid SMILES (RDKit returns None) is
    skipped as ``(where, "invalid SMILES '...': <RDKit's reason>")``; one with no atoms (an empty
    string) as ``(where, "empty graph (no atoms)")``. `kept_index` lists the positions in `smiles`
    of the graphs, in order. RDKit's own log is blocked meanwhile (``rdBase.BlockLogs``, which
    restores the caller's log settings afterwards).
    """
    if len(where) != len(smiles):
        raise ValueError(f"{len(where)} names for {len(smiles)} SMILES")
    mols, kept, skipped = _parse_smiles(smiles, where)
    return _mol_graphs(mols), kept, skipped


def _molecule_dataset(smiles: list[str], where: list[str], ids: list[str], name: str, source: str,
                      skipped: list, notes: list, label_text: list[str] | None = None,
                      targets: list[float] | None = None, target_name: str | None = None,
                      keep_mols: bool = False):
    """The GraphDataset of `smiles` (rows already checked), with its labels/targets; also the mols if asked."""
    mols, kept, bad = _parse_smiles(smiles, where)
    skipped = sorted(skipped + bad, key=lambda item: _line_key(item[0]))
    if not kept:
        first = f" (e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"{source} has no usable molecules{first}.",
                        "check the SMILES column (smiles_column=) and the file's rows.")
    labels = classes = tensor_targets = None
    if label_text is not None:
        kept_labels = [label_text[i] for i in kept]
        classes = _class_order(kept_labels)
        code = {c: k for k, c in enumerate(classes)}
        labels = torch.tensor([code[t] for t in kept_labels], dtype=torch.long)
    if targets is not None:
        tensor_targets = torch.tensor([targets[i] for i in kept], dtype=torch.float32)
    dataset = GraphDataset(_mol_graphs(mols), labels, [ids[i] for i in kept], name, source, classes,
                           tensor_targets, target_name if targets is not None else None, skipped, notes)
    return (dataset, mols) if keep_mols else dataset


def _line_key(where: str):
    """Sort key of a 'file:line' name: by file, then by line number."""
    head, _, tail = where.rpartition(":")
    return (head, int(tail)) if tail.isdigit() else (where, -1)


# ---------------------------------------------------------------------------------------------
# Molecule files: CSV/TSV with a SMILES column, .smi


def _read_text(path: str, where: str, what: str) -> tuple[str, list[str]]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise DataError(f"cannot read {where}: {exc.strerror or exc}.", "check the path and its permissions.") from None
    if not raw.strip():
        raise DataError(f"{where} is empty.", f"pass a {what}.")
    if b"\x00" in raw[:65536]:
        raise DataError(f"{where} has NUL bytes: it is not a text file.", f"pass a {what}.")
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        return raw.decode("cp1252", errors="replace"), [
            f"{where} is not valid UTF-8 (byte {exc.start}); read it as Windows-1252. Re-save it as UTF-8 if "
            "its text looks wrong."]


def _delimiter(path: str, text: str) -> str:
    """Tab for .tsv/.tab; else the most frequent of , ; tab in the first line (a comma when none)."""
    if path.lower().endswith((".tsv", ".tab")):
        return "\t"
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _csv_records(text: str, delimiter: str, where: str) -> tuple[list[tuple[int, list[str]]], list]:
    """([(line, cells)] of the non-blank rows, skipped rows that cannot be parsed)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 20)
    records, skipped = [], []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        while True:
            line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                skipped.append((f"{where}:{line}", f"cannot be parsed ({exc})"))
                continue
            if row and any(cell.strip() for cell in row):
                records.append((line, row))
    finally:
        csv.field_size_limit(limit)
    return records, skipped


def _looks_like_smiles(Chem, text: str, min_atoms: int = 1) -> bool:
    text = text.strip()
    if not text or len(text) > 1000:
        return False
    mol = Chem.MolFromSmiles(text)
    return mol is not None and mol.GetNumAtoms() >= min_atoms


def _read_smi(text: str, where: str) -> tuple[list[str], list[str], list[str | None]]:
    """(SMILES, where, id or None) of a .smi file: SMILES, whitespace, an optional id per line.

    Blank lines and lines starting with # are passed over; the first line is a header when its first
    field is smiles / canonical_smiles / isomeric_smiles / smi (any case).
    """
    smiles, wheres, ids = [], [], []
    first = True
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if first and parts[0].lower() in SMILES_COLUMNS + ("smi",):
            first = False
            continue
        first = False
        smiles.append(parts[0])
        wheres.append(f"{where}:{number}")
        ids.append(parts[1].strip() if len(parts) > 1 else None)
    return smiles, wheres, ids


def _ids(wheres: list[str], values: list[str | None], where: str, column: str, notes: list) -> list[str]:
    """The file's own ids when every row has one and they are unique, else file:line (with a note)."""
    if not values or any(v is None or not v.strip() for v in values):
        if values and any(v is not None and v.strip() for v in values):
            notes.append(f"{where}: some rows have no {column}: the molecules are named <file>:<line> instead.")
        return list(wheres)
    values = [v.strip() for v in values]
    if len(set(values)) != len(values):
        notes.append(f"{where}: the {column} values repeat: the molecules are named <file>:<line> instead.")
        return list(wheres)
    return values


LABEL_COLUMNS = ("label", "labels", "class", "y")  # read as class labels when label= is not given
TARGET_COLUMNS = ("target",)  # read as the regression target when target= is not given


def load_molecules(path: str | os.PathLike, label: str | None = None, target: str | None = None,
                   smiles_column: str | None = None, name: str | None = None) -> GraphDataset:
    """Read molecules from a CSV/TSV with a SMILES column, or a .smi file, into a GraphDataset.

    CSV/TSV (delimiter: tab for .tsv/.tab, else the most frequent of , ; tab in the first line):
    - header: the first row is a header unless none of its cells is named like a SMILES column and
      one of them parses as a molecule of two or more atoms; a file without a header has columns
      ``column_1``, ``column_2``, ... (a note says so);
    - the SMILES column: `smiles_column`; else the first column named smiles, canonical_smiles or
      isomeric_smiles (any case: SMILES works too); else the first column where at least half of
      its first 50 values parse as SMILES and one has two or more atoms (a note names it);
    - `label`: a column of class labels (text; classes sorted numerically when all are numbers);
      `target`: a column of float regression targets (TPSA, pIC50, ...). Either, both or neither;
      when not given (None), a column named label, labels, class or y is the label (a note says so)
      and one named target the target; "" reads none; other columns are not used (a note lists them);
    - ids: the first column named id, name, mol_id, molecule_id, compound_id or chembl_id, or in a
      file without a header of exactly two columns the one that is not SMILES, when its values are
      present and unique; else ``<file>:<line>``.
    .smi / .smiles: a SMILES, whitespace and an optional id per line; # comments; an optional header
    (see ``_read_smi``); no label or target columns.

    Skipped (listed in ``skipped`` as (file:line, reason)): a row with the wrong number of fields,
    no label, a target that is not a number, an invalid SMILES, an empty molecule.
    A DataError: no such file, an empty or binary file, a named column the file lacks, no SMILES
    column, no usable molecule.
    """
    path = os.fspath(path)
    where = display_path(os.path.basename(path))
    if not os.path.isfile(path):
        raise DataError(f"no molecule file {display_path(path)}.", "check the path.")
    name = name or where
    what = "file with a SMILES column (CSV/TSV) or a .smi file"
    text, notes = _read_text(path, where, what)
    if path.lower().endswith(SMI_EXTENSIONS):
        for option, value in (("label", label), ("target", target), ("smiles_column", smiles_column)):
            if value:
                raise DataError(f"{where} is a .smi file (a SMILES and an id per line): it has no columns, so "
                                f"{option}={value!r} cannot apply.",
                                "put the molecules and their labels in a CSV file with a smiles column.")
        smiles, wheres, file_ids = _read_smi(text, where)
        if not smiles:
            raise DataError(f"{where} has no molecules (only comments or a header).", "put one SMILES per line.")
        ids = _ids(wheres, file_ids, where, "id", notes)
        return _molecule_dataset(smiles, wheres, ids, name, where, [], notes)

    Chem, rdBase, _ = _rdkit()
    records, skipped = _csv_records(text, _delimiter(path, text), where)
    if not records:
        raise DataError(f"{where} has no rows.", f"pass a {what}.")
    first = [cell.strip() for cell in records[0][1]]
    with rdBase.BlockLogs():
        named = any(cell.lower() in SMILES_COLUMNS for cell in first)
        has_header = named or not any(_looks_like_smiles(Chem, cell, 2) for cell in first)
    if has_header:
        header = [cell or f"column_{j + 1}" for j, cell in enumerate(first)]
        records = records[1:]
        duplicates = sorted({h for h in header if header.count(h) > 1})
        if duplicates:
            raise DataError(f"{where} has duplicate column names: {', '.join(map(repr, duplicates))}.",
                            "give every column its own name.")
    else:
        header = [f"column_{j + 1}" for j in range(len(first))]
        notes.append(f"{where} has no header row (its first row holds a molecule): its columns are named "
                     f"{', '.join(header[:4])}{', ...' if len(header) > 4 else ''}.")
    width = len(header)
    rows = []
    for line, cells in records:
        if len(cells) != width:
            skipped.append((f"{where}:{line}", f"has {len(cells)} fields, the header has {width}"))
        else:
            rows.append((line, [c.strip() for c in cells]))
    if not rows:
        first_bad = f" (e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"{where} has no data rows{first_bad}.", f"pass a {what}.")
    column = {h: [cells[j] for _, cells in rows] for j, h in enumerate(header)}
    wheres = [f"{where}:{line}" for line, _ in rows]

    for option, value in (("smiles_column", smiles_column), ("label", label), ("target", target)):
        if value and value not in column:
            raise DataError(f"{where} has no column {value!r}.{closest(value, header)}",
                            f"pass one of its columns as {option}= ({', '.join(map(repr, header[:8]))}"
                            f"{', ...' if len(header) > 8 else ''}).")
    # not given (None): a column named as labels conventionally are is the label, one named target the target
    if label is None:
        label = next((h for h in header if h.lower() in LABEL_COLUMNS and h not in (target, smiles_column)), None)
        if label is not None:
            notes.append(f"{where}: read column {label!r} as the class labels; pass label='' (--set data.label='') "
                         "to read none, or label=COLUMN for another.")
    if target is None:
        target = next((h for h in header if h.lower() in TARGET_COLUMNS and h not in (label, smiles_column)), None)
    taken = {label, target} - {None, ""}
    if not smiles_column:
        smiles_column = next((h for h in header if h.lower() in SMILES_COLUMNS and h not in taken), None)
    if not smiles_column:
        with rdBase.BlockLogs():
            for h in header:
                if h in taken:
                    continue
                sample = [v for v in column[h] if v.lower() not in MISSING][:50]
                parsed = [Chem.MolFromSmiles(v) if len(v) <= 1000 else None for v in sample]
                if (sample and sum(m is not None and m.GetNumAtoms() > 0 for m in parsed) * 2 >= len(sample)
                        and any(m is not None and m.GetNumAtoms() >= 2 for m in parsed)):
                    smiles_column = h
                    break
        if not smiles_column:
            raise DataError(f"{where} has no SMILES column: none is named smiles, SMILES or canonical_smiles, and no "
                            "column's values parse as SMILES.",
                            "name the column smiles, or pass smiles_column= (the column that holds the SMILES).")
        if has_header:
            notes.append(f"{where}: read column {smiles_column!r} as the SMILES (the first column whose values parse "
                         "as SMILES); pass smiles_column= to choose another.")
    taken.add(smiles_column)

    id_column = next((h for h in header if h.lower() in ID_COLUMNS and h not in taken), None)
    if id_column is None and not has_header and width == 2:
        id_column = next(h for h in header if h != smiles_column)
    if id_column is not None:
        taken.add(id_column)
    unused = [h for h in header if h not in taken]
    if unused:
        notes.append(f"{where}: column(s) {', '.join(map(repr, unused[:8]))}{', ...' if len(unused) > 8 else ''} "
                     "are not used; pass label= (class labels) or target= (a number to regress) to use one.")

    bad: dict[int, str] = {}
    if label:
        for i, v in enumerate(column[label]):
            if v.lower() in MISSING:
                bad[i] = f"no label (column {label!r} is empty there)"
    target_values = None
    if target:
        target_values = []
        for i, v in enumerate(column[target]):
            try:
                number = float(v)
            except ValueError:
                number = math.nan
            if not (math.isfinite(number) and abs(number) <= _FLOAT32_MAX) and i not in bad:
                bad[i] = (f"no target (column {target!r} is empty there)" if v.lower() in MISSING
                          else f"the target {_short(v, 30)} (column {target!r}) is not a finite number (in float32)")
            target_values.append(number)
    good = [i for i in range(len(rows)) if i not in bad]
    skipped += [(wheres[i], bad[i]) for i in sorted(bad)]
    pick = lambda values: [values[i] for i in good]  # noqa: E731
    ids = _ids(wheres, column[id_column] if id_column else [], where, repr(id_column), notes)
    return _molecule_dataset(pick(column[smiles_column]), pick(wheres), pick(ids), name, where, skipped, notes,
                             pick(column[label]) if label else None,
                             pick(target_values) if target else None, target)


# ---------------------------------------------------------------------------------------------
# Graphs from edge lists: many graphs in one .npz; one graph as an edge CSV (+ a node CSV)


def load_graph_npz(path: str | os.PathLike, name: str | None = None) -> GraphDataset:
    """Many graphs from one .npz (``numpy.savez``), PyTorch Geometric's ``Batch`` written as arrays:

    - ``edge_index`` (2, E) int, required: directed edges as node rows 0..V-1 over all graphs (list
      both directions of an undirected edge; a note counts the edges without their reverse);
    - which graph a node belongs to: ``node_ptr`` (N + 1,) int (graph i owns nodes node_ptr[i] to
      node_ptr[i+1], as in ``Graphs``), or ``graph`` (V,) int, the graph id of every node (PyG's
      ``batch``; nodes need not be sorted by it), or neither (all nodes are one graph);
    - ``x`` (V, F) node features (optional: else the one-hot degree, DEGREE_FEATURES columns);
    - ``edge_attr`` (E, A) edge features, ``label`` (N,) class labels (numbers or text), ``target``
      (N,) float regression targets, ``edge_ptr`` (N + 1,) (checked against the edges): optional.
    Edges may come in any order: each belongs to the graph of its nodes. A graph with no nodes is
    skipped and listed as ``(<file>:<graph index>, "empty graph (no nodes)")``; ids are
    ``<file>:<graph index>``. A DataError: an edge naming a node that does not exist (it names the
    edge and the id), an edge joining two graphs, arrays of the wrong shape or kind.
    """
    path = os.fspath(path)
    where = display_path(os.path.basename(path))
    if not os.path.isfile(path):
        raise DataError(f"no graph file {display_path(path)}.", "check the path.")
    how = "save it with numpy.savez(path, edge_index=(2, E) ints, node_ptr=(N+1,) ints, x=(V, F) floats)."
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{where} holds one array, not named arrays.", how)
        with archive:
            arrays = {k: archive[k] for k in archive.files}
    except DataError:
        raise
    except Exception as exc:  # damaged (zipfile, zlib and numpy raise many kinds), or object arrays (pickles)
        first = (str(exc).splitlines() or [""])[0][:150]
        raise DataError(f"{where} cannot be read as .npz ({type(exc).__name__}: {first}).", how) from None

    def numeric(key, ndim, kinds="iuf"):
        a = arrays[key]
        if a.dtype.kind not in kinds or a.ndim not in ndim:
            raise DataError(f"{where}: {key!r} has shape {a.shape} and dtype {a.dtype}; it must be "
                            f"{'integer' if kinds == 'iu' else 'numeric'} with {' or '.join(map(str, ndim))} "
                            "dimension(s).", how)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DataError(f"{where}: {key!r} has NaN or infinite values.", "replace them with numbers.")
        if a.dtype.kind == "f" and a.size and float(np.abs(a).max()) > _FLOAT32_MAX:
            raise DataError(f"{where}: {key!r} has values beyond float32's range (e.g. {float(np.abs(a).max()):g}).",
                            "scale them into float32's range (about 3.4e38).")
        return a

    if "edge_index" not in arrays:
        raise DataError(f"{where} has no 'edge_index' array (it has {', '.join(map(repr, arrays)) or 'none'}).", how)
    edge_index = numeric("edge_index", (2,), "iu").astype(np.int64)
    if edge_index.shape[0] != 2:
        raise DataError(f"{where}: 'edge_index' has shape {edge_index.shape}; it must be (2, E).",
                        "save edge_index.T if it is (E, 2).")
    e = edge_index.shape[1]
    x = numeric("x", (1, 2)) if "x" in arrays else None
    if x is not None and x.ndim == 1:
        x = x.reshape(-1, 1)
    node_ptr = numeric("node_ptr", (1,), "iu").astype(np.int64) if "node_ptr" in arrays else None
    graph = numeric("graph", (1,), "iu").astype(np.int64) if "graph" in arrays else None
    sizes = {k: len(a) for k, a in (("x", x), ("graph", graph)) if a is not None}
    if node_ptr is not None and len(node_ptr):
        sizes["node_ptr[-1]"] = int(node_ptr[-1])
    if not sizes:
        raise DataError(f"{where} does not say how many nodes there are: it has no 'x', 'node_ptr' or 'graph'.", how)
    if len(set(sizes.values())) > 1:
        raise DataError(f"{where}: the node counts disagree ({', '.join(f'{k}: {v}' for k, v in sizes.items())}).",
                        "make x, graph and node_ptr describe the same nodes.")
    v = next(iter(sizes.values()))
    if x is None and graph is None and v > MAX_DECLARED_NODES:  # nodes only node_ptr declares (degree features)
        raise DataError(f"{where}: 'node_ptr' declares {v:,} nodes and no array holds them (no 'x' or 'graph'); "
                        f"more than {MAX_DECLARED_NODES:,} (selfsup.data.graph.MAX_DECLARED_NODES) is taken for "
                        "a damaged node_ptr.", "save x (V, F) or graph (V,) with the nodes, or fix node_ptr.")
    notes: list[str] = []

    bad = np.flatnonzero(((edge_index < 0) | (edge_index >= v)).any(axis=0))
    if len(bad):
        k = int(bad[0])
        u, w = int(edge_index[0, k]), int(edge_index[1, k])
        missing = u if not 0 <= u < v else w
        more = f"; {len(bad)} edges do so" if len(bad) > 1 else ""
        raise DataError(f"{where}: edge {k} (edge_index[:, {k}] = ({u}, {w})) names node {missing}, which does not "
                        f"exist: there are {v} nodes (0..{v - 1}){more}.",
                        "fix edge_index, or add the missing nodes' rows to x.")
    for key in ("label", "target"):
        if key in arrays and arrays[key].ndim != 1:
            raise DataError(f"{where}: {key!r} has shape {arrays[key].shape}; it must be (N,), one per graph.",
                            f"give one {key} per graph.")
    n_labels = {k: len(arrays[k]) for k in ("label", "target") if k in arrays}
    if node_ptr is not None:
        if len(node_ptr) < 1 or node_ptr[0] != 0 or (np.diff(node_ptr) < 0).any():
            raise DataError(f"{where}: 'node_ptr' must start at 0 and never decrease.", how)
    elif graph is not None:
        if len(graph) and graph.min() < 0:
            raise DataError(f"{where}: 'graph' has a negative graph id ({int(graph.min())}).", "number graphs from 0.")
        n = max([int(graph.max()) + 1 if len(graph) else 0, *n_labels.values()])
        if n > max([v, *n_labels.values()]):  # more graphs than nodes and labels: ids the file only declares
            raise DataError(f"{where}: 'graph' has graph id {n - 1}, but there are only {v} nodes"
                            f"{' and ' + str(max(n_labels.values())) + ' labels' if n_labels else ''}.",
                            "number the graphs 0..N-1 (the graph of every node).")
        if (np.diff(graph) < 0).any():  # sort the nodes by graph, and renumber the edges to match
            order = np.argsort(graph, kind="stable")
            new_row = np.empty(v, dtype=np.int64)
            new_row[order] = np.arange(v)
            edge_index, graph = new_row[edge_index], graph[order]
            x = None if x is None else x[order]
            notes.append(f"{where}: the nodes are not sorted by 'graph'; they are grouped by graph (each graph's nodes "
                         "keep their file order).")
        node_ptr = _ptr(np.bincount(graph, minlength=n))
    else:
        node_ptr = np.array([0, v], dtype=np.int64)
    n = len(node_ptr) - 1
    node_graph = np.repeat(np.arange(n), np.diff(node_ptr))
    g_src, g_dst = node_graph[edge_index[0]], node_graph[edge_index[1]]
    across = np.flatnonzero(g_src != g_dst)
    if len(across):
        k = int(across[0])
        raise DataError(f"{where}: edge {k} joins node {int(edge_index[0, k])} of graph {int(g_src[k])} with node "
                        f"{int(edge_index[1, k])} of graph {int(g_dst[k])}.", "an edge must stay inside one graph.")
    edge_attr = numeric("edge_attr", (1, 2)) if "edge_attr" in arrays else None
    if edge_attr is not None:
        edge_attr = edge_attr.reshape(-1, 1) if edge_attr.ndim == 1 else edge_attr  # one feature per edge
        if len(edge_attr) != e:
            raise DataError(f"{where}: 'edge_attr' has {len(edge_attr)} rows for {e} edges.", "give one row per edge.")
    if (np.diff(g_src) < 0).any():
        order = np.argsort(g_src, kind="stable")
        edge_index, g_src = edge_index[:, order], g_src[order]
        edge_attr = None if edge_attr is None else edge_attr[order]
    edge_ptr = _ptr(np.bincount(g_src, minlength=n))
    if "edge_ptr" in arrays and not np.array_equal(np.asarray(arrays["edge_ptr"]).reshape(-1), edge_ptr):
        raise DataError(f"{where}: 'edge_ptr' does not match the edges' graphs (from edge_index and node_ptr/graph).",
                        "leave edge_ptr out (it is derived) or fix it.")
    for key, count in n_labels.items():
        if count != n or arrays[key].ndim != 1:
            raise DataError(f"{where}: {key!r} has shape {arrays[key].shape} for {n} graphs.",
                            f"give one {key} per graph.")
    if e:
        codes = edge_index[0] * v + edge_index[1]
        lonely = int((~np.isin(edge_index[1] * v + edge_index[0], codes)).sum())
        if lonely:
            notes.append(f"{where}: {lonely} of {e} edges have no reverse edge; they are used as directed edges "
                         "(list both directions for an undirected edge).")
    ignored = sorted(set(arrays) - {"edge_index", "x", "node_ptr", "graph", "edge_attr", "label", "target", "edge_ptr"})
    if ignored:
        notes.append(f"{where}: array(s) {', '.join(map(repr, ignored))} are not used.")
    if x is None:
        x = _degree_onehot(edge_index, v)
    graphs = _graphs(x, edge_index, node_ptr, edge_ptr, edge_attr)

    ids = [f"{where}:{k}" for k in range(n)]
    empty = np.diff(node_ptr) == 0
    text = None
    if "label" in arrays:
        a = arrays["label"]
        text = [_number_text(t) if a.dtype.kind in "iuf" else str(t).strip() for t in a.tolist()]
    no_label = np.array([t.lower() in MISSING for t in text], dtype=bool) if text else np.zeros(n, dtype=bool)
    keep = np.flatnonzero(~empty & ~no_label)
    if not len(keep):
        raise DataError(f"{where} has no usable graph (every graph is empty or unlabeled).",
                        "give the graphs nodes (node_ptr / graph) and labels.")
    skipped = [(ids[k], "empty graph (no nodes)" if empty[k] else "no label") for k in np.flatnonzero(empty | no_label)]
    labels = classes = targets = None
    if text is not None:
        classes = _class_order(text[k] for k in keep)
        code = {c: k for k, c in enumerate(classes)}
        labels = torch.tensor([code.get(t, -1) for t in text], dtype=torch.long)
    if "target" in arrays:
        targets = torch.from_numpy(numeric("target", (1,)).astype(np.float32))
    dataset = GraphDataset(graphs, labels, ids, name or where, where, classes, targets,
                           "target" if targets is not None else None, [], notes)
    if len(keep) < n:
        dataset = dataset.subset(torch.from_numpy(keep))
        dataset.skipped = skipped
    return dataset


def _number_text(value) -> str:
    value = float(value)
    if not math.isfinite(value):
        return ""
    return str(int(value)) if value.is_integer() else repr(value)


def _edge_rows(path: str, where: str) -> tuple[list[tuple[int, str, str]], list, list[str]]:
    """([(line, source, target)], skipped, notes) of an edge file."""
    text, notes = _read_text(path, where, "edge list (a CSV with source and target columns)")
    skipped: list = []
    edges = []
    if path.lower().endswith(EDGE_LIST_EXTENSIONS):  # whitespace-separated pairs, # or % comments
        extra = False
        for number, line in enumerate(text.split("\n"), 1):
            line = line.strip()
            if not line or line[0] in "#%":
                continue
            parts = line.replace(",", " ").split()
            if len(parts) < 2:
                skipped.append((f"{where}:{number}", f"has {len(parts)} field, an edge needs two node ids"))
                continue
            extra = extra or len(parts) > 2
            edges.append((number, parts[0], parts[1]))
        if extra:
            notes.append(f"{where}: fields after the two node ids (weights, ...) are not used.")
        return edges, skipped, notes
    records, skipped = _csv_records(text, _delimiter(path, text), where)
    if not records:
        raise DataError(f"{where} has no rows.", "pass a CSV with a header source,target and one edge per row.")
    header = [c.strip().lower() for c in records[0][1]]
    if "source" not in header or "target" not in header:
        raise DataError(f"{where} has no source and target columns (its header is "
                        f"{', '.join(map(repr, records[0][1][:6]))}).",
                        "name the two node-id columns source and target in the first line.")
    s, t = header.index("source"), header.index("target")
    if len(header) > 2:
        notes.append(f"{where}: columns other than source and target are not used.")
    for line, cells in records[1:]:
        if len(cells) != len(header):
            skipped.append((f"{where}:{line}", f"has {len(cells)} fields, the header has {len(header)}"))
            continue
        a, b = cells[s].strip(), cells[t].strip()
        if not a or not b:
            skipped.append((f"{where}:{line}", "names no node in source or target"))
            continue
        edges.append((line, a, b))
    return edges, skipped, notes


def _node_table(path: str, where: str, label: str | None) -> tuple[list[str], list[int], np.ndarray | None,
                                                                     list[str] | None, list[str]]:
    """(node ids, their lines, features (V, F) or None, label texts or None, notes) of a node CSV."""
    text, notes = _read_text(path, where, "node CSV (id, features..., label)")
    records, bad = _csv_records(text, _delimiter(path, text), where)
    if bad:
        raise DataError(f"{bad[0][0]} {bad[0][1]}.", "fix that row: every node must be readable.")
    if not records:
        raise DataError(f"{where} has no rows.",
                        "pass a CSV with a header (id, features..., label) and a row per node.")
    header = [c.strip() for c in records[0][1]]
    lower = [h.lower() for h in header]
    id_col = next((j for j, h in enumerate(lower) if h in ("id", "node", "node_id")), 0)
    if label is None:
        label = next((h for h in header if h.lower() == "label"), "")
    if label and label not in header:
        raise DataError(f"{where} has no column {label!r}.{closest(label, header)}",
                        "pass one of its columns as label=.")
    label_col = header.index(label) if label else None
    feature_cols = [j for j in range(len(header)) if j not in (id_col, label_col)]
    ids, lines, labels, rows = [], [], [], []
    seen: dict[str, int] = {}
    for line, cells in records[1:]:
        if len(cells) != len(header):
            raise DataError(f"{where}:{line} has {len(cells)} fields, the header has {len(header)}.",
                            "fix that row: every node must be readable.")
        node = cells[id_col].strip()
        if not node:
            raise DataError(f"{where}:{line} has no node id.", "give every node an id.")
        if node in seen:
            raise DataError(f"{where}:{line} repeats node id {node!r} (first at line {seen[node]}).",
                            "give every node its own id.")
        seen[node] = line
        values = []
        for j in feature_cols:
            try:
                number = float(cells[j])
            except ValueError:
                number = math.nan
            if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
                raise DataError(f"{where}:{line}: feature {header[j]!r} is {_short(cells[j].strip(), 30)}, "
                                "not a number (within float32's range).",
                                "node features must be numbers; name a text column with label= or remove it.")
            values.append(number)
        ids.append(node)
        lines.append(line)
        rows.append(values)
        if label_col is not None:
            labels.append(cells[label_col].strip())
    x = np.array(rows, dtype=np.float32).reshape(len(ids), len(feature_cols)) if feature_cols else None
    return ids, lines, x, (labels if label_col is not None else None), notes


def _node_labels(texts: list[str] | None) -> tuple[torch.Tensor | None, list[str] | None]:
    """Per-node class codes (-1 = no label) and the class names, from label texts."""
    if texts is None:
        return None, None
    present = [t for t in texts if str(t).strip().lower() not in MISSING]
    classes = _class_order(present)
    code = {c: k for k, c in enumerate(classes)}
    return torch.tensor([code.get(t, -1) for t in texts], dtype=torch.long), classes


def load_edge_list(edges: str | os.PathLike, nodes: str | os.PathLike | None = None, label: str | None = None,
                   directed: bool = False, name: str | None = None) -> GraphDataset:
    """One graph (node-level data) from an edge file and an optional node file.

    edges: a CSV/TSV whose header has ``source`` and ``target`` (other columns are not used), one
    edge per row; or a .txt / .edgelist / .edges file of whitespace-separated ``source target``
    pairs (# or % comments). Node ids are any text. A row that cannot be read (wrong field count,
    an empty id) is skipped and listed.
    nodes: a CSV with a header: the node id (the column named id, node or node_id, else the first),
    numeric feature columns, and a label column (`label`, default the column named label if any;
    "" for none; an empty label = an unlabeled node, -1). Every row must be readable (a node cannot
    be skipped without breaking the edges): a bad row, a repeated id or a non-number feature is a
    DataError naming the file and line.
    Without a node file the nodes are the ids the edges name (in numeric order when all are
    integers, else in order of appearance) and features are the one-hot degree (DEGREE_FEATURES).
    An edge naming a node the node file lacks is a DataError naming the edge file, the line and the
    id; a graph with no nodes is a DataError (there is nothing to skip to).
    directed=False: each row is an undirected edge, stored in both directions once (a row repeated,
    or listed both ways, collapses); True: the rows as given.

    The dataset holds ONE graph (ids: the edge file's name); node labels are ``node_labels`` (V,),
    class names ``node_classes``, node names ``node_ids``.
    """
    edges = os.fspath(edges)
    where = display_path(os.path.basename(edges))
    if not os.path.isfile(edges):
        raise DataError(f"no edge file {display_path(edges)}.", "check the path.")
    rows, skipped, notes = _edge_rows(edges, where)
    x = label_texts = None
    if nodes is not None:
        nodes = os.fspath(nodes)
        node_where = display_path(os.path.basename(nodes))
        if not os.path.isfile(nodes):
            raise DataError(f"no node file {display_path(nodes)}.", "check the path.")
        node_ids, _, x, label_texts, more = _node_table(nodes, node_where, label)
        notes += more
        index = {node: k for k, node in enumerate(node_ids)}
        for line, a, b in rows:
            for node in (a, b):
                if node not in index:
                    raise DataError(f"{where}:{line}: the edge names node {node!r}, which {node_where} does not list "
                                    f"({len(node_ids)} nodes).", f"add the node to {node_where} or remove the edge.")
        source = f"{where} + {node_where}"
    else:
        if label:
            raise DataError(f"label={label!r} needs a node file with that column.", "pass nodes= (a node CSV).")
        order: dict[str, int] = {}
        for _, a, b in rows:
            order.setdefault(a, len(order))
            order.setdefault(b, len(order))
        node_ids = list(order)
        if all(re.fullmatch(r"[+-]?\d+", s) for s in node_ids):
            node_ids.sort(key=int)
        index = {node: k for k, node in enumerate(node_ids)}
        source = where
    v = len(node_ids)
    if v == 0:
        raise DataError(f"{where if nodes is None else source} has no nodes: the graph is empty.",
                        "add edges (source,target rows) or node rows.")
    src = np.array([index[a] for _, a, _ in rows], dtype=np.int64)
    dst = np.array([index[b] for _, _, b in rows], dtype=np.int64)
    if not directed:
        pairs = np.unique(np.concatenate([src * v + dst, dst * v + src]))
        src, dst = pairs // v, pairs % v
    edge_index = np.stack([src, dst])
    if x is None or x.shape[1] == 0:
        x = _degree_onehot(edge_index, v)
    node_labels, node_classes = _node_labels(label_texts)
    graphs = _graphs(x, edge_index, np.array([0, v]), np.array([0, edge_index.shape[1]]))
    return GraphDataset(graphs, None, [name or where], name or where, source, skipped=skipped, notes=notes,
                        node_labels=node_labels, node_classes=node_classes, node_ids=node_ids)


# ---------------------------------------------------------------------------------------------
# networkx


def from_networkx(graph_or_list, node_features: str | None = None, label_attr: str | None = None,
                  name: str | None = None) -> GraphDataset:
    """A GraphDataset from one networkx graph (node-level) or a list of them (graph-level).

    node_features: None or "degree": the one-hot degree (DEGREE_FEATURES columns); "constant": a
    single 1 per node; "identity": the one-hot node index (one column per node, one graph only: an
    embedding per node, as PyTorch Geometric's KarateClub); any other text: the node attribute holding a number or a vector (every node
    must have it, all of one length).
    label_attr: for one graph, a node attribute with the node's class (a node without it is
    unlabeled, -1 in ``node_labels``); for a list, a graph attribute (``G.graph[label_attr]``) with
    the graph's class (a graph without it is skipped). An undirected edge is stored in both
    directions (a self-loop once); a directed graph's edges as they are. A graph with no nodes is a
    DataError for one graph and skipped ("empty graph (no nodes)") in a list. Ids: the graph's name
    for one graph, ``<name>:<k>`` in a list; ``node_ids`` holds the nodes' names (str).
    """
    import networkx as nx

    single = isinstance(graph_or_list, nx.Graph)
    items = [graph_or_list] if single else list(graph_or_list)
    name = name or (str(graph_or_list.graph.get("name") or "graph") if single else "graphs")
    xs, edges, node_ids, node_label_texts, graph_labels, ids, skipped = [], [], [], [], [], [], []
    for k, g in enumerate(items):
        if not isinstance(g, nx.Graph):
            raise DataError(f"item {k} of the list is a {type(g).__name__}, not a networkx graph.",
                            "pass a networkx graph or a list of them.")
        where = name if single else f"{name}:{k}"
        nodes = list(g.nodes)
        if not nodes:
            if single:
                raise DataError(f"the graph {name!r} has no nodes.", "pass a graph with nodes.")
            skipped.append((where, "empty graph (no nodes)"))
            continue
        if not single and label_attr and g.graph.get(label_attr) is None:
            skipped.append((where, f"no label (the graph has no attribute {label_attr!r})"))
            continue
        index = {node: i for i, node in enumerate(nodes)}
        pairs = [(index[u], index[w]) for u, w in g.edges()]
        e = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
        if not g.is_directed():
            loop = e[0] == e[1]
            e = np.concatenate([e, e[::-1][:, ~loop]], axis=1)
            e = e[:, np.argsort(e[0] * len(nodes) + e[1], kind="stable")]
        if node_features in (None, "degree"):
            x = _degree_onehot(e, len(nodes))
        elif node_features == "constant":
            x = np.ones((len(nodes), 1), dtype=np.float32)
        elif node_features == "identity":
            if not single:
                raise DataError("node_features='identity' (one column per node) applies to one graph, not a list: "
                                "graphs of different sizes would have different widths.",
                                "pass one graph, or node_features='degree' for a list.")
            x = np.eye(len(nodes), dtype=np.float32)
        else:
            rows = []
            for node in nodes:
                value = g.nodes[node].get(node_features)
                if value is None:
                    raise DataError(f"node {node!r} of {where} has no attribute {node_features!r}.",
                                    "give every node the attribute, or pass node_features=None (degree features).")
                try:
                    rows.append(np.asarray(value, dtype=np.float32).reshape(-1))
                except (TypeError, ValueError):
                    raise DataError(f"node {node!r} of {where}: attribute {node_features!r} is "
                                    f"{_short(str(value), 30)}, not a number or a vector of numbers.",
                                    "store numbers in the attribute.") from None
            if len({len(r) for r in rows}) > 1:
                raise DataError(f"{where}: attribute {node_features!r} has vectors of different lengths "
                                f"({sorted({len(r) for r in rows})[:4]}).", "give every node a vector of one length.")
            x = np.stack(rows)
        if xs and x.shape[1] != xs[0].shape[1]:
            raise DataError(f"{where}: {x.shape[1]} node features, the first graph has {xs[0].shape[1]}.",
                            "give every graph's nodes the same number of features.")
        if single and label_attr:
            node_label_texts = [str(g.nodes[n][label_attr]) if g.nodes[n].get(label_attr) is not None else ""
                                for n in nodes]
        if not single and label_attr:
            graph_labels.append(str(g.graph[label_attr]))
        xs.append(x)
        edges.append(e)
        node_ids += [str(n) for n in nodes]
        ids.append(where)
    if not xs:
        raise DataError(f"{name} has no usable graph (e.g. {skipped[0][0]}: {skipped[0][1]}).",
                        "pass graphs with nodes (and labels, with label_attr).")
    n_nodes = np.array([len(x) for x in xs])
    n_edges = np.array([e.shape[1] for e in edges])
    node_ptr = _ptr(n_nodes)
    edge_index = np.concatenate(edges, axis=1) + np.repeat(node_ptr[:-1], n_edges)
    graphs = _graphs(np.concatenate(xs), edge_index, node_ptr, _ptr(n_edges))
    labels = classes = None
    if graph_labels:
        classes = _class_order(graph_labels)
        code = {c: k for k, c in enumerate(classes)}
        labels = torch.tensor([code[t] for t in graph_labels], dtype=torch.long)
    node_labels, node_classes = _node_labels(node_label_texts if single and label_attr else None)
    return GraphDataset(graphs, labels, ids, name, "networkx", classes, skipped=skipped,
                        node_labels=node_labels, node_classes=node_classes, node_ids=node_ids)


def load_graphs(path: str | os.PathLike, **options) -> GraphDataset:
    """Any graph file, by its kind: .npz -> load_graph_npz; .smi/.smiles -> load_molecules;
    .txt/.edgelist/.edges -> load_edge_list; .csv/.tsv -> load_edge_list when the header has source
    and target columns, else load_molecules. `options` go to that reader; one it does not take is a
    DataError (e.g. nodes= for a CSV whose first line names no source and target columns)."""
    path = os.fspath(path)
    lower = path.lower()
    reader, kind = load_molecules, "a molecule file"
    if lower.endswith(".npz"):
        reader, kind = load_graph_npz, "a graph .npz"
    elif lower.endswith(EDGE_LIST_EXTENSIONS):
        reader, kind = load_edge_list, "an edge list"
    elif lower.endswith((".csv", ".tsv", ".tab")) and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                first = handle.readline()
        except OSError:
            first = ""
        cells = {c.strip().strip('"').lower() for c in re.split(r"[,\t;]", first)}
        if {"source", "target"} <= cells:
            reader, kind = load_edge_list, "an edge list"
        else:
            kind = "a molecule file (its first line names no source and target columns)"
    import inspect

    unknown = [k for k in options if k not in inspect.signature(reader).parameters]
    if unknown:
        edge_only = reader is load_molecules and {"nodes", "directed"} & set(unknown)
        raise DataError(f"{display_path(os.path.basename(path))} is read as {kind}, which takes no "
                        f"{', '.join(f'{k}=' for k in unknown)} option.",
                        "for an edge list, name its node-id columns source and target in the first line."
                        if edge_only else f"leave {', '.join(f'{k}=' for k in unknown)} out for this file.")
    return reader(path, **options)


# ---------------------------------------------------------------------------------------------
# Named sets, from files inside the installed rdkit and networkx packages (nothing is downloaded)

NAMED_GRAPHS = {
    "nci_tpsa": "4,999 NCI molecules (rdkit Data/NCI/first_5K.smi) with their TPSA (first_5k.tpsa.csv) as a "
                "regression target; the 8 RDKit cannot read are skipped; scaffold split 80/20",
    "wehi": "10,000 unlabeled screening molecules (rdkit Data/Pains/test_data/wehi_mols.csv), for pretraining: "
            "train = all",
    "chembl2321810": "1,017 molecules of one ChEMBL series (rdkit Contrib/FreeWilson/data) with pIC50 as a "
                     "regression target; scaffold split 80/20",
    "karate": "Zachary's karate club (networkx): one graph, 34 nodes (one-hot ids as features), 78 edges, the two "
              "factions as node labels; "
              "seeded 80/20 split of the node labels",
}
GRAPH_SPLITS = ("train", "test", "all")
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0


def _rdkit_file(*parts: str, contrib: bool = False) -> str:
    _rdkit()
    import rdkit
    from rdkit import RDConfig

    bases = [RDConfig.RDContribDir if contrib else RDConfig.RDDataDir,
             os.path.join(os.path.dirname(rdkit.__file__), "Contrib" if contrib else "Data")]
    for base in bases:
        path = os.path.join(base, *parts)
        if os.path.isfile(path):
            return path
    shown = os.path.join("Contrib" if contrib else "Data", *parts)
    raise DataError(f"the installed rdkit has no {shown} (looked in {bases[0]}).",
                    "install the rdkit wheel from PyPI (pip install rdkit), which ships it.")


def scaffold_split(mols: list, train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions: a deterministic Bemis-Murcko scaffold split (DeepChem's ScaffoldSplitter,
    as in Hu et al. 2020 and MoleculeNet). Molecules are grouped by their RDKit MurckoScaffold SMILES
    (without chirality; acyclic molecules share the empty scaffold); groups go, largest first (ties:
    the later first-member first), to train while it stays within `train_fraction`, else to test,
    so test holds the rarer scaffolds and no scaffold is in both."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    groups: dict[str, list[int]] = {}
    for i, mol in enumerate(mols):
        try:
            key = MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
        except Exception:  # a molecule RDKit cannot cut down: its own group
            key = f"#{i}"
        groups.setdefault(key, []).append(i)
    cutoff = train_fraction * len(mols)
    train: list[int] = []
    test: list[int] = []
    for group in sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True):
        (test if len(train) + len(group) > cutoff else train).extend(group)
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def _stratified_split(labels: np.ndarray, train_fraction: float = TRAIN_FRACTION, seed: int = SPLIT_SEED):
    """(train, test) positions of the labelled items (label >= 0): per class, a seeded shuffle, the
    first round(train_fraction * count) to train."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels[labels >= 0]):
        members = rng.permutation(np.flatnonzero(labels == c))
        cut = int(round(train_fraction * len(members)))
        train += members[:cut].tolist()
        test += members[cut:].tolist()
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _named_full(name: str):
    """(every graph of the set, train positions, test positions), read once per process."""
    if name == "karate":
        import networkx as nx

        data = from_networkx(nx.karate_club_graph(), node_features="identity", label_attr="club", name="karate")
        data.source = "networkx.karate_club_graph()"
        train, test = _stratified_split(data.node_labels.numpy())
        return data, train, test
    if name == "wehi":
        path = _rdkit_file("Pains", "test_data", "wehi_mols.csv")
        data = load_molecules(path, name="wehi")
        data.notes = [n for n in data.notes if "no header row" not in n]  # known layout: SMILES, id
        everything = np.arange(len(data))
        return data, everything, None
    if name == "nci_tpsa":
        smi = _rdkit_file("NCI", "first_5K.smi")
        table = _rdkit_file("NCI", "first_5k.tpsa.csv")
        where = os.path.basename(smi)
        smiles, wheres, file_ids = _read_smi(_read_text(smi, where, ".smi file")[0], where)
        tpsa = {}
        for line in _read_text(table, os.path.basename(table), "CSV")[0].split("\n"):  # "SMILES,TPSA", # comments
            if line.strip() and not line.startswith("#"):
                text, _, value = line.strip().rpartition(",")
                tpsa[text] = float(value)
        keep = [i for i, s in enumerate(smiles) if s in tpsa]
        skipped = [(wheres[i], f"no TPSA in {os.path.basename(table)}") for i, s in enumerate(smiles) if s not in tpsa]
        data, mols = _molecule_dataset([smiles[i] for i in keep], [wheres[i] for i in keep],
                                       [file_ids[i] for i in keep], "nci_tpsa", where, skipped,
                                       ["TPSA (topological polar surface area, A^2) from first_5k.tpsa.csv, "
                                        "computed with Daylight's tools; matched to the molecules by SMILES."],
                                       targets=[tpsa[smiles[i]] for i in keep], target_name="TPSA", keep_mols=True)
        return (data, *scaffold_split(mols))
    if name == "chembl2321810":
        smi = _rdkit_file("FreeWilson", "data", "CHEMBL2321810.smi", contrib=True)
        table = _rdkit_file("FreeWilson", "data", "CHEMBL2321810_act.csv", contrib=True)
        where, table_where = os.path.basename(smi), os.path.basename(table)
        smiles, wheres, file_ids = _read_smi(_read_text(smi, where, ".smi file")[0], where)
        act = {}
        records, _ = _csv_records(_read_text(table, table_where, "CSV")[0], ",", table_where)
        for _, cells in records[1:]:  # header Name,Act
            if len(cells) == 2:
                try:
                    act[cells[0].strip()] = float(cells[1])
                except ValueError:
                    pass
        keep = [i for i, k in enumerate(file_ids) if k in act]
        skipped = [(wheres[i], f"no activity in {table_where}") for i, k in enumerate(file_ids) if k not in act]
        data, mols = _molecule_dataset([smiles[i] for i in keep], [wheres[i] for i in keep],
                                       [file_ids[i] for i in keep], "chembl2321810", where, skipped,
                                       [f"pIC50 from {table_where} (column Act), matched to the molecules by id."],
                                       targets=[act[file_ids[i]] for i in keep], target_name="pIC50", keep_mols=True)
        return (data, *scaffold_split(mols))
    raise AssertionError(name)


def load_named_graphs(name: str, split: str = "train") -> GraphDataset:
    """A named graph set (NAMED_GRAPHS), read from the installed rdkit / networkx packages.

    Splits ("train", "test", "all"), deterministic:
    - molecules with a target (nci_tpsa, chembl2321810): a scaffold split (``scaffold_split``):
      train = 80% of the molecules (the larger scaffold groups), test = the other 20%; all = both;
    - wehi (unlabeled, for pretraining): train = all = the 10,000 molecules; test is a DataError;
    - karate (node-level): every split is the same one graph, with all 34 nodes and 78 edges
      (transductive); only ``node_labels`` differ: train labels a seeded (seed 0) class-stratified
      80% of the nodes (28), test the other 20% (6), the rest -1; all labels every node.
    The dataset's notes say which split it is.
    """
    if name not in NAMED_GRAPHS:
        raise DataError(f"unknown graph set {name!r}.{closest(name, NAMED_GRAPHS)}",
                        f"use one of {', '.join(NAMED_GRAPHS)}.")
    if split not in GRAPH_SPLITS:
        raise DataError(f"unknown split {split!r} for {name}.{closest(split, GRAPH_SPLITS)}",
                        f"use one of {', '.join(GRAPH_SPLITS)}.")
    data, train, test = _named_full(name)
    if test is None and split == "test":
        raise DataError(f"{name} has no test split: it is unlabeled, for pretraining.",
                        f"use split='train' (all {len(data):,} molecules), and evaluate on a labelled set "
                        "(nci_tpsa, chembl2321810).")
    if name == "karate":
        out = data.subset(torch.arange(len(data)))
        if split != "all":
            keep = torch.from_numpy(train if split == "train" else test)
            labels = torch.full_like(out.node_labels, -1)
            labels[keep] = out.node_labels[keep]
            out.node_labels = labels
        how = "" if split == "all" else " (a seeded, class-stratified 80/20 split of the nodes)"
        out.notes.append(f"karate, split {split!r}: the whole graph; {int((out.node_labels >= 0).sum())} of "
                         f"{out.graphs.num_nodes} nodes labelled{how}.")
        return out
    picked = {"train": train, "test": test, "all": np.arange(len(data))}[split]
    out = data.subset(torch.from_numpy(picked))
    if test is not None and split != "all":
        out.notes.append(f"{name}, split {split!r}: {len(out):,} of {len(data):,} molecules (a Bemis-Murcko scaffold "
                         f"split, {TRAIN_FRACTION:.0%} train / {1 - TRAIN_FRACTION:.0%} test).")
    return out
