"""Graph clustering losses: SCGC's neighbourhood contrast and DEC's soft-assignment refinement.

Kulatilleke, Portmann, Chandra. SCGC: Self-Supervised Contrastive Graph Clustering, 2022,
arXiv:2204.12656 (code: github.com/gayanku/SCGC). SCGC puts the graph into the loss instead of the
encoder: a node's neighbours within ``r`` hops are its positives, weighted by the r-th power of the
normalized adjacency, every other node a negative (the "Ncontrast" loss SCGC takes from Graph-MLP,
Hu et al. 2021, arXiv:2106.04051), and DEC's clustering refinement (Xie, Girshick, Farhadi,
"Unsupervised Deep Embedding for Clustering Analysis", ICML 2016, arXiv:1511.06335) as SDCN uses
it: a Student's t soft assignment Q to learnable centres, a sharpened target P, and KL(P || Q).

The formulas are written out in each function, with DEC's equation numbers. SCGC's own text (its
equation numbers) could not be read while this was written, only its abstract and its authors' code:
the definitions here follow that code, and the docstrings say where it departs from the formula of
the paper it takes the term from. All functions run in float32 (``full_precision``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import full_precision


@torch.no_grad()
def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int, dtype=torch.float32) -> torch.Tensor:
    """Â = D̃^-1 (A + I), dense (V, V): the graph made symmetric and unweighted (an edge in either
    direction, or listed twice, is one undirected edge), a self-loop on every node, each row divided
    by its sum (row-normalized, as SCGC's code builds it from SDCN's ``load_graph``)."""
    device = edge_index.device
    a = torch.zeros(num_nodes, num_nodes, dtype=dtype, device=device)
    if edge_index.numel():
        a[edge_index[0], edge_index[1]] = 1.0
    a = torch.maximum(a, a.T)
    a.fill_diagonal_(1.0)
    return a / a.sum(dim=1, keepdim=True)


@torch.no_grad()
def r_hop_adjacency(edge_index: torch.Tensor, num_nodes: int, hops: int = 2, cumulative: bool = False,
                    dtype=torch.float32) -> torch.Tensor:
    """The weights γ of SCGC's positives, dense (V, V): Â^r (``cumulative=False``, SCGC) or
    Â + Â^2 + ... + Â^r (``cumulative=True``, SCGC*'s Influence Augmented Contrastive loss), with Â
    from ``normalized_adjacency``. γ_ij > 0 exactly when j is within r hops of i (the self-loops make
    Â^r reach every node within r hops, not only those at exactly r). Dense: V^2 floats (a graph of
    a few thousand nodes; 10,000 nodes take 400 MB) and r - 1 products of V x V matrices, once per graph.
    """
    if hops < 1:
        raise ValueError(f"hops must be >= 1, got {hops}")
    a = normalized_adjacency(edge_index, num_nodes, dtype)
    power, out = a, a.clone()
    for _ in range(hops - 1):
        power = power @ a
        out = out + power if cumulative else power
    return out


@full_precision
def neighbourhood_contrast(z: torch.Tensor, weights: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """SCGC's neighbourhood contrastive loss over a batch of B nodes (Graph-MLP's Ncontrast loss).

        ℓ_i = -log( Σ_{j≠i} γ_ij exp(sim(z_i, z_j) / τ) / Σ_{k≠i} exp(sim(z_i, z_k) / τ) ),   L_N = mean_i ℓ_i

    sim is the cosine similarity, γ = ``weights`` (B, B): the r-hop weights of the batch's nodes
    (``r_hop_adjacency`` restricted to the batch's rows and columns), τ = ``temperature``. Nodes
    within r hops are pulled together in proportion to γ, every other node of the batch is pushed away.

    Choices where the reference code differs from the formula: the code (gayanku/SCGC train.py,
    from Graph-MLP's) zeroes the self-similarity instead of leaving node i out, so a constant exp(0)
    stays in both sums; it multiplies the cosine by its ``tau`` (exp(tau * sim)), so its tau is 1/τ
    here; and it adds 1e-8 inside the log, which gives a node without a positive in the batch the
    constant 18.4 and no gradient. Here i is left out of both sums as the formula says, and the mean
    runs over the nodes that have at least one positive in the batch (a batch without any gives 0,
    still attached to the graph of `z`). Computed with log-sum-exp.
    """
    b = z.shape[0]
    zn = F.normalize(z, dim=1)
    logits = zn @ zn.T / temperature  # (B, B)
    self_pair = torch.eye(b, dtype=torch.bool, device=z.device)
    w = weights.masked_fill(self_pair, 0.0)
    anchors = torch.nonzero((w > 0).any(dim=1)).flatten()
    if len(anchors) == 0:
        return z.sum() * 0.0
    logits, w, self_pair = logits[anchors], w[anchors], self_pair[anchors]  # rows with a positive: finite sums
    logits = logits.masked_fill(self_pair, float("-inf"))
    positive = torch.logsumexp(logits + torch.log(w), dim=1)  # log Σ_j γ_ij e^{s_ij/τ}; log 0 = -inf drops j
    everything = torch.logsumexp(logits, dim=1)
    return (everything - positive).mean()


@full_precision
def student_t_assignment(z: torch.Tensor, centres: torch.Tensor, dof: float = 1.0) -> torch.Tensor:
    """Soft assignment Q (B, K) of each embedding to each centre (DEC, arXiv:1511.06335, Eq. 1):

        q_ij = (1 + ||z_i - μ_j||^2 / v)^(-(v+1)/2) / Σ_j' (1 + ||z_i - μ_j'||^2 / v)^(-(v+1)/2)

    a Student's t kernel with v = ``dof`` degrees of freedom (1 in DEC, SDCN and SCGC)."""
    d2 = (z[:, None, :] - centres[None, :, :]).pow(2).sum(-1)  # (B, K)
    kernel = (1.0 + d2 / dof).pow(-(dof + 1.0) / 2.0)
    return kernel / kernel.sum(dim=1, keepdim=True)


@full_precision
@torch.no_grad()
def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """The target P (B, K) from Q (DEC, arXiv:1511.06335, Eq. 3), without gradient:

        p_ij = (q_ij^2 / f_j) / Σ_j' (q_ij'^2 / f_j'),   f_j = Σ_i q_ij

    squaring sharpens each node's assignment toward its likeliest cluster (learning from the
    confident ones), dividing by the soft cluster size f_j keeps large clusters from taking over."""
    weight = q.pow(2) / q.sum(dim=0, keepdim=True)
    return weight / weight.sum(dim=1, keepdim=True)


@full_precision
def cluster_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) = Σ_i Σ_j p_ij log(p_ij / q_ij), averaged over the B nodes (DEC, arXiv:1511.06335,
    Eq. 2; ``F.kl_div(q.log(), p, reduction="batchmean")`` as SDCN's and SCGC's code computes it;
    0 log 0 = 0). Gradient flows into Q (the embeddings and the centres), P is a fixed target."""
    return F.kl_div(q.clamp_min(torch.finfo(q.dtype).tiny).log(), p, reduction="batchmean")
