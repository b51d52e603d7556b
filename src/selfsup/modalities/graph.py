"""Graphs: many small graphs (molecules) or the nodes of one graph, kept compressed on the device,
GraphCL's and GRACE's augmentations, GIN and GCN.

Readers (``data/graph.py``): molecules from SMILES through RDKit (``.smi``, a CSV with a SMILES
column), graph ``.npz`` files, edge lists, networkx; named sets nci_tpsa, wehi, chembl2321810
(inside the RDKit wheel) and karate (networkx, node-level). Samples are a ``Graphs`` batch
(graph-level) or a ``Nodes`` batch (node-level), both ragged types of ``selfsup.samples``.
Views: ``views/graph.py``. Backbones: ``backbones/graph.py``.
"""
from __future__ import annotations

from ..errors import DataError
from ..registry import register
from ..views.graph import GraphViewConfig
from .base import Modality


@register("modality", "graph")
class Graph(Modality):
    name = "graph"
    noun, nouns = "graph", "graphs"
    unreadable = "unreadable molecule(s) or graph(s)"
    provides = ("graphs", "nodes")  # by level (``provided``); no pixels, and graphs of different sizes cannot be mixed
    default_backbone = "gin"
    input_keys = ("in_channels", "edge_dim")
    presets = ("graphcl", "grace")
    view_config = GraphViewConfig
    formats = "graphs (.smi, a .csv with a SMILES column, a graph .npz, an edge list with source,target)"
    priority = 7  # before tables: a molecule CSV is graphs
    test_split_hint = "a labelled molecule file with the same columns, or a named set's test split"

    @classmethod
    def claims(cls, path: str) -> bool:
        from ..data.graph import is_graph_file

        return is_graph_file(path)

    @classmethod
    def load(cls, path: str, split: str, label=None, schema=None, **_):
        from ..data.graph import load_graphs, node_dataset

        # None: a molecule file's column named label/class/y, if any; "": none (a graph .npz has no such option)
        options = {} if label is None or (label == "" and path.lower().endswith(".npz")) else {"label": label}
        return _as_samples(load_graphs(path, **options), node_dataset)

    @classmethod
    def load_named(cls, name: str, split: str):
        from ..data.graph import load_named_graphs, node_dataset

        return _as_samples(load_named_graphs(name, split), node_dataset)

    # ------------------------------------------------------------------ views

    @classmethod
    def auto_preset(cls, dataset, layout: dict) -> str:
        return "grace" if hasattr(dataset.samples, "rows") else "graphcl"

    @classmethod
    def provided(cls, dataset) -> tuple[str, ...]:
        return ("nodes",) if hasattr(dataset.samples, "rows") else ("graphs",)

    @classmethod
    def suits(cls, preset: str, dataset) -> bool:
        return preset == "grace" or not hasattr(dataset.samples, "rows")  # node-level views keep every node

    @classmethod
    def preset_config(cls, preset: str, dataset, layout: dict):
        from ..views.graph import grace_views, graphcl_views

        return {"graphcl": graphcl_views, "grace": grace_views}[preset]()

    @classmethod
    def make_views(cls, config, dataset, mean, std, device):
        from ..views.graph import GraphViews

        return GraphViews(config, mean, std)

    # ------------------------------------------------------------------ the encoder

    @classmethod
    def prepare_input(cls, x, mean, std):
        from ..data.graph import Graphs, Nodes

        graphs = x.graphs if isinstance(x, Nodes) else x
        normalized = Graphs((graphs.x.float() - mean) / std, graphs.edge_index, graphs.node_ptr, graphs.edge_ptr,
                            graphs.edge_attr)
        return Nodes(normalized, x.rows) if isinstance(x, Nodes) else normalized

    # ------------------------------------------------------------------ checks

    @classmethod
    def check_compatible(cls, data, reference, what: str) -> None:
        if data.input_spec() != reference.input_spec():
            raise DataError(f"{what} graphs have node/edge feature widths {data.input_spec()}, the training graphs "
                            f"{reference.input_spec()}.", "pass graphs read the same way (molecules with molecules).")

    @classmethod
    def check_encoder_input(cls, encoder, dataset, data_name: str) -> None:
        width = dataset.input_spec()["in_channels"]
        if width != encoder.mean.numel():
            raise DataError(f"'{data_name}' has {width} node features but the encoder expects {encoder.mean.numel()}.",
                            "pass graphs of the kind the encoder was trained on (molecules with molecules).")


def _as_samples(data, node_dataset):
    """Node-level data (one graph with node labels) becomes its nodes as samples."""
    return node_dataset(data) if getattr(data, "node_labels", None) is not None else data
