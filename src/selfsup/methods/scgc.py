"""SCGC: self-supervised contrastive graph clustering with an MLP encoder (no message passing)."""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.graph_mlp import NodeMLP
from ..errors import ConfigError
from ..losses.graph_clustering import (cluster_kl, neighbourhood_contrast, r_hop_adjacency, student_t_assignment,
                                       target_distribution)
from ..registry import register
from .base import Batch, Method, TrainData

MAX_DENSE_NODES = 20_000  # the r-hop weights are a dense V x V matrix: 20,000 nodes take 1.6 GB


@register("method", "scgc")
class SCGC(Method):
    """Kulatilleke, Portmann, Chandra. SCGC: Self-Supervised Contrastive Graph Clustering, 2022,
    arXiv:2204.12656; the authors' code is github.com/gayanku/SCGC.

    The graph is in the loss, not in the encoder: an MLP maps each node's own features to an
    embedding z_i (``backbone``, ``node_mlp``: 500-500-2000-10, the SDCN autoencoder's encoder), and
    the exported encoder is exactly that MLP, so ``evaluate`` and ``embed`` read no edges. Training
    minimizes, over a batch of nodes of one graph,

        L = α L_N + β L_KL + λ L_R

    - L_N, the neighbourhood contrast (``losses.graph_clustering.neighbourhood_contrast``): the nodes
      within ``hops`` (r) hops of node i are its positives, weighted by γ = Â^r with Â = D̃^-1 (A + I)
      (``r_hop_adjacency``; SCGC*'s Influence Augmented Contrastive loss, ``influence=True``, uses
      Â + ... + Â^r), every other node of the batch a negative, cosine similarities at temperature τ;
    - L_KL, the soft cluster refinement (DEC/SDCN): a Student's t assignment Q of z to ``clusters``
      learnable centres (DEC Eq. 1), the sharpened target P = target(Q) without gradient (DEC Eq. 3),
      KL(P || Q) (DEC Eq. 2); P is recomputed from the current Q at every step (the authors'
      update interval is 1 epoch = 1 full-graph step);
    - L_R, the reconstruction MSE of a decoder mirroring the encoder (2000-500-500-F), which the
      authors' SCGC trains with weight 1; SCGC* drops it (``reconstruction_weight=0``) and halves the
      parameters.

    Initialization (``prepare``, once before training): SCGC starts from SDCN's autoencoder
    pretrained on reconstruction (30 epochs, Adam at 1e-3, batches of 256), then puts the centres at
    k-means (20 restarts) of the embeddings of every training node. ``prepare`` does both on the
    training set (``pretrain_epochs``; shuffles from a fixed seed, k-means with random_state 0), and
    the centres are a parameter, so a checkpoint resumes exactly.

    Defaults and their sources: α=2 (``contrast_weight``), β=0.1 (``cluster_weight``), r=2, τ=1,
    200 full-graph epochs and Adam at a constant 1e-3 without weight decay (here ``optim.lr=0.001
    optim.weight_decay=0 optim.schedule=constant``; the trainer's own defaults differ) are the
    defaults of the authors' train.py, whose README tunes α in 0.5-4, β in 0.1-10, r in 1-4 and its
    tau in 0.25-2.25 per dataset; the pretraining recipe is SDCN's; K is the number of classes of each benchmark in the paper (here ``clusters``, 2 by
    default: set it to the number of communities you expect). The authors' code multiplies the
    cosine by its tau; ``temperature`` here divides (τ = 1 / their tau; both 1 by default).

    Integration. No augmented views: the layout is one view, and the loss reads ``batch.samples``
    (the un-augmented nodes, normalized with the training statistics as the exported encoder
    normalizes its input) rather than ``batch.views[0]``, which ``views.preset=auto`` (GRACE for
    nodes) perturbs. The r-hop weights come from ``samples.graphs.edge_index``, computed once per
    graph on the device (dense, up to 20,000 nodes) and restricted to the batch's nodes at each step,
    as Graph-MLP batches its loss; the authors train full-batch, which ``train.batch_size`` = the node
    count reproduces. Node-level data only (the nodes of one graph as samples). A backbone that is
    not a ``node_mlp`` is refused (``backbone.name=auto`` picks ``node_mlp`` for it): SCGC's point is
    an encoder without message passing. ``forward`` returns ``features`` =
    the batch's embeddings z (no projector, so no ``embeddings``); ``soft_assignments`` gives Q.
    """

    paper = ("Kulatilleke, Portmann, Chandra. SCGC: Self-Supervised Contrastive Graph Clustering. 2022, "
             "arXiv:2204.12656")
    family = "clustering"
    batch_terms = "per_rank"  # the neighbourhood contrast and the cluster target see this rank's nodes
    views = {"n_global": 1, "n_local": 0}
    requires = ("nodes",)
    preferred_backbones = {"graph": "node_mlp"}
    aux_outputs = ("features",)

    def __init__(self, backbone: nn.Module, clusters: int = 2, hops: int = 2, temperature: float = 1.0,
                 contrast_weight: float = 2.0, cluster_weight: float = 0.1, reconstruction_weight: float = 1.0,
                 influence: bool = False, pretrain_epochs: int = 30, dof: float = 1.0):
        if clusters < 2 or hops < 1 or temperature <= 0 or dof <= 0 or pretrain_epochs < 0:
            raise ConfigError(f"scgc needs clusters >= 2, hops >= 1, temperature > 0, dof > 0 and pretrain_epochs >= 0; "
                              f"got {clusters}, {hops}, {temperature}, {dof}, {pretrain_epochs}.",
                              "use e.g. clusters=<communities> hops=2 temperature=1.")
        for name, value in (("contrast_weight", contrast_weight), ("cluster_weight", cluster_weight),
                            ("reconstruction_weight", reconstruction_weight)):
            if not 0 <= value < float("inf"):
                raise ConfigError(f"scgc {name} must be a finite number >= 0, got {value}.", f"use e.g. {name}=1.")
        super().__init__(_mlp_encoder(backbone))
        self.clusters, self.hops, self.temperature, self.dof = clusters, hops, temperature, dof
        self.contrast_weight, self.cluster_weight = contrast_weight, cluster_weight
        self.reconstruction_weight, self.influence, self.pretrain_epochs = reconstruction_weight, influence, pretrain_epochs
        encoder = self.backbone
        d = encoder.dim
        # the cluster centres μ (K, D): learnable (DEC); set by k-means in prepare (xavier normal until then, as SDCN)
        self.centres = nn.Parameter(nn.init.xavier_normal_(torch.empty(clusters, d)))
        self.decoder = None
        if reconstruction_weight > 0 or pretrain_epochs > 0:  # SDCN's decoder mirrors the encoder
            widths = [d, *reversed(encoder.hidden_dims), encoder.in_channels]
            layers: list[nn.Module] = []
            for i in range(len(widths) - 1):
                layers.append(nn.Linear(widths[i], widths[i + 1]))
                if i < len(widths) - 2:
                    layers.append(nn.ReLU())
            self.decoder = nn.Sequential(*layers)
        f = encoder.in_channels
        self.register_buffer("input_mean", torch.zeros(f), persistent=False)  # set by prepare; graphs: 0 and 1
        self.register_buffer("input_std", torch.ones(f), persistent=False)
        self._weights_for = None  # (edge_index, num_nodes): the graph the cached r-hop weights belong to
        self._weights = None

    # ------------------------------------------------------------------ the graph

    def neighbourhood(self, graphs) -> torch.Tensor:
        """γ (V, V) of `graphs`, computed once per graph (kept while the same edge_index comes back)."""
        key = self._weights_for
        if key is None or key[0] is not graphs.edge_index or key[1] != graphs.num_nodes:
            v = graphs.num_nodes
            if v > MAX_DENSE_NODES:
                raise ConfigError(f"scgc keeps the r-hop weights of the graph as a dense {v:,} x {v:,} matrix "
                                  f"({v * v * 4 / 2**30:.1f} GB); it takes graphs of up to {MAX_DENSE_NODES:,} nodes.",
                                  "use a smaller graph or a subgraph of it.")
            self._weights = r_hop_adjacency(graphs.edge_index, v, self.hops, cumulative=self.influence)
            self._weights_for = (graphs.edge_index, v)
        return self._weights

    def _normalized(self, nodes):
        from ..data.graph import Graphs, Nodes

        g = nodes.graphs
        x = (g.x.float() - self.input_mean) / self.input_std
        return Nodes(Graphs(x, g.edge_index, g.node_ptr, g.edge_ptr, g.edge_attr), nodes.rows)

    @staticmethod
    def _check_nodes(samples, where: str) -> None:
        if getattr(samples, "rows", None) is None or getattr(samples, "graphs", None) is None:
            raise ConfigError(f"scgc clusters the nodes of a graph, and {where} is not a batch of nodes "
                              f"({type(samples).__name__}).",
                              "train it on node-level data (one graph whose nodes are the samples, e.g. karate).")

    # ------------------------------------------------------------------ before training

    def prepare(self, data: TrainData) -> None:
        """SDCN's autoencoder pretraining (``pretrain_epochs``), then the centres at k-means of the
        embeddings of every training node (see the class docstring)."""
        nodes = data.samples
        self._check_nodes(nodes, "the training set")
        device = self.centres.device
        with torch.no_grad():
            self.input_mean.copy_(torch.as_tensor(data.mean, dtype=torch.float32))
            self.input_std.copy_(torch.as_tensor(data.std, dtype=torch.float32))
        nodes = self._normalized(nodes.to(device))
        self.neighbourhood(data.samples.graphs)  # the dense r-hop weights, once
        n = len(nodes)
        if n < self.clusters:
            raise ConfigError(f"scgc has {self.clusters} clusters and the training set {n} nodes.",
                              f"set method.clusters to at most {n}.")
        if self.pretrain_epochs:
            self._pretrain(nodes)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            z = self.backbone(nodes).double().cpu().numpy()
        self.train(was_training)
        from sklearn.cluster import KMeans

        kmeans = KMeans(n_clusters=self.clusters, n_init=20, random_state=0).fit(z)
        with torch.no_grad():
            self.centres.copy_(torch.as_tensor(kmeans.cluster_centers_, dtype=self.centres.dtype))
        if data.labels is not None:
            k = int(torch.unique(data.labels[data.labels >= 0]).numel())
            if k and k != self.clusters:
                print(f"note: scgc groups the nodes into {self.clusters} clusters and the training labels have {k} "
                      f"classes (the paper sets the cluster count to the number of classes): set method.clusters={k} "
                      "if the communities should match them", file=sys.stderr)

    def _pretrain(self, nodes, batch_size: int = 256, lr: float = 1e-3) -> None:
        """SDCN's autoencoder pretraining: MSE reconstruction of the training nodes' features,
        `pretrain_epochs` epochs of batches of 256 with Adam at 1e-3 (order from a fixed seed)."""
        x = nodes.graphs.x[nodes.rows]
        params = [*self.backbone.parameters(), *self.decoder.parameters()]
        optimizer = torch.optim.Adam(params, lr=lr)
        order = torch.Generator().manual_seed(0)
        with torch.enable_grad():
            for _ in range(self.pretrain_epochs):
                for chunk in torch.randperm(len(x), generator=order).split(batch_size):
                    xb = x[chunk.to(x.device)]
                    loss = F.mse_loss(self.decoder(self.backbone(xb)), xb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        for p in params:
            p.grad = None

    # ------------------------------------------------------------------ training

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        samples = batch.samples
        self._check_nodes(samples, "the batch")
        nodes = self._normalized(samples)
        rows = samples.rows
        z = self.backbone(nodes)  # (B, D): the MLP of each node's own features
        gamma = self.neighbourhood(samples.graphs)[rows][:, rows]  # (B, B) r-hop weights among the batch
        contrast = neighbourhood_contrast(z, gamma, self.temperature)
        q = student_t_assignment(z, self.centres, self.dof)
        kl = cluster_kl(target_distribution(q), q)
        loss = self.contrast_weight * contrast + self.cluster_weight * kl
        out = {"contrast": contrast.detach(), "kl": kl.detach()}
        if self.reconstruction_weight > 0:
            x = nodes.graphs.x[rows]
            reconstruction = F.mse_loss(self.decoder(z).float(), x)
            loss = loss + self.reconstruction_weight * reconstruction
            out["reconstruction"] = reconstruction.detach()
        return {"loss": loss, **out, "features": z}

    @torch.no_grad()
    def soft_assignments(self, samples) -> torch.Tensor:
        """Q (B, K) of a batch of nodes (DEC Eq. 1); its argmax is SCGC's clustering."""
        self._check_nodes(samples, "the input")
        return student_t_assignment(self.backbone(self._normalized(samples)), self.centres, self.dof)


def _mlp_encoder(backbone: nn.Module) -> NodeMLP:
    """The backbone, which must be a ``node_mlp``: SCGC's point is an encoder without message passing."""
    if isinstance(backbone, NodeMLP):
        return backbone
    spec = getattr(backbone, "spec", None) or {}
    name = spec.get("name", type(backbone).__name__)
    raise ConfigError(f"scgc encodes each node with an MLP of its own features (no message passing, as in the paper), "
                      f"and the backbone is {name}.", "use --backbone node_mlp, or leave the backbone at auto.")
