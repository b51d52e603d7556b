"""Contrastive losses: pull two views of an image together, push the other images away.

Shape legend: B batch, D embedding dim, Q queue (memory) entries. Every similarity is a cosine
(embeddings are L2-normalized here), divided by a temperature. SimSiam's negative cosine lives here
too: it is the positive-pair term of these losses without the negatives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import full_precision


def _two_view_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine logits among the 2B embeddings of two views, each anchor's own entry set to -inf.

    Returns logits (2B, 2B) and positive (2B,): anchor i < B pairs with i + B, and back.
    """
    B = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    # An embedding is trivially most similar to itself: remove it from its own softmax.
    logits.fill_diagonal_(float("-inf"))
    positive = torch.arange(2 * B, device=z.device).roll(B)
    return logits, positive


def _global_two_view_logits(z1: torch.Tensor, z2: torch.Tensor,
                            temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's 2B anchors (z1, then z2) against the 2NB embeddings of every rank (view 1 of all
    ranks, then view 2 of all ranks: the order of one process at batch NB), each anchor's own entry
    set to -inf. Returns logits (2B, 2NB), positive (2B,) and own (2B,), the columns of each anchor's
    partner and of itself. One process: ``_two_view_logits``' logits (own is the diagonal)."""
    from ..distributed import gather, world

    rank, size = world()
    if size == 1:
        logits, positive = _two_view_logits(z1, z2, temperature)
        return logits, positive, torch.arange(len(positive), device=positive.device)
    B = z1.shape[0]
    local = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D)
    everything = F.normalize(torch.cat([gather(z1), gather(z2)]), dim=1)  # (2NB, D)
    logits = local @ everything.T / temperature  # (2B, 2NB)
    first = rank * B + torch.arange(B, device=z1.device)  # the anchors' own rows among view 1's NB
    own = torch.cat([first, first + size * B])  # (2B,)
    logits[torch.arange(2 * B, device=z1.device), own] = float("-inf")
    return logits, torch.cat([first + size * B, first]), own


def _gathered(x: torch.Tensor) -> torch.Tensor:
    """Values without gradient (labels, pseudo-labels) of every rank, rank-major; `x` on one process."""
    from ..distributed import gather

    with torch.no_grad():
        return gather(x)


@full_precision
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR.

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", arXiv:2002.05709.

    z1, z2: (B, D) embeddings of two views; row i of z1 and row i of z2 are the positive pair.
    Each of the 2B embeddings is an anchor whose positive is its partner and whose negatives are
    the other 2B - 2; similarities are cosines divided by `temperature`; returns the mean over
    the 2B anchors of the cross-entropy of picking the positive (a scalar).
    """
    # Data parallel: this rank's 2B anchors against the 2NB embeddings of every rank.
    logits, positive, _ = _global_two_view_logits(z1, z2, temperature)
    return F.cross_entropy(logits, positive)


@full_precision
def info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.2,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE of queries against keys: mean over i of -log softmax(q_i . k / t)[positive].

    Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding", arXiv:1807.03748;
    used by MoCo (arXiv:1911.05722, 2003.04297, 2104.02057) and NNCLR (arXiv:2104.14548).

    query, key: (B, D); key i is query i's positive. All vectors are L2-normalized here.
    negatives None: the other B - 1 keys of the batch are the negatives (logits (B, B), MoCo v3, NNCLR).
    negatives (Q, D): they are the only negatives (logits (B, 1 + Q): the positive first, then the
    queue), as in MoCo v1/v2, whose other in-batch keys are not negatives.
    """
    from ..distributed import gather, world

    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)  # (B, D) each
    if negatives is None:
        # data parallel: the keys of every rank are the negatives (MoCo v3's code gathers them too)
        rank, _ = world()
        logits = q @ gather(k).T / temperature  # (B, N B); the positive is this rank's diagonal block
        target = torch.arange(q.shape[0], device=q.device) + rank * q.shape[0]
    else:
        positive = (q * k).sum(1, keepdim=True)  # (B, 1)
        negative = q @ F.normalize(negatives, dim=1).T  # (B, Q)
        logits = torch.cat([positive, negative], dim=1) / temperature  # (B, 1 + Q)
        target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


@full_precision
def moco_v3_loss(q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """MoCo v3's symmetric loss: 2t * (InfoNCE(q1, k2) + InfoNCE(q2, k1)), in-batch negatives.

    Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision Transformers",
    ICCV 2021, arXiv:2104.02057 (Algorithm 1: ``ctr(q, k) = CrossEntropyLoss(q k^T / t) * 2t``).

    q1, q2: (B, D) predictions of the query encoder for views 1, 2; k1, k2: (B, D) momentum-encoder
    projections (passed without gradient). The 2t factor keeps the gradient scale independent of t.
    t = 1.0 is the paper's ResNet setting; its ViTs use 0.2.
    """
    return 2 * temperature * (info_nce(q1, k2, temperature) + info_nce(q2, k1, temperature))


@full_precision
def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """-mean_i cos(p_i, z_i): SimSiam's D(p, z). p, z: (B, D); returns a scalar in [-1, 1].

    Chen & He 2021, "Exploring Simple Siamese Representation Learning", CVPR 2021, arXiv:2011.10566.
    """
    return -F.cosine_similarity(p, z, dim=-1).mean()


@full_precision
def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetrized loss D(p1, z2) / 2 + D(p2, z1) / 2 (arXiv:2011.10566, Eq. 2).

    p1, p2: (B, D) predictor outputs; z1, z2: (B, D) projections. The stop-gradient on z is the
    caller's (pass ``z.detach()``): without it SimSiam collapses, which the paper shows (Fig. 2).
    """
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


@full_precision
def nnclr_loss(nn1: torch.Tensor, nn2: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor,
               temperature: float = 0.1) -> torch.Tensor:
    """NNCLR: the nearest neighbour of one view's projection is the positive of the other view's prediction.

    Dwibedi, Aytar, Tompson, Sermanet, Zisserman 2021, "With a Little Help from My Friends:
    Nearest-Neighbor Contrastive Learning of Visual Representations", ICCV 2021, arXiv:2104.14548, Eq. 2.

    nn1, nn2: (B, D) support-set neighbours of views 1, 2 (no gradient); p1, p2: (B, D) predictions.
    Loss_i = -log exp(NN(z1_i) . p2_i / t) / sum_k exp(NN(z1_i) . p2_k / t), symmetrized over the
    two views: (InfoNCE(nn1, p2) + InfoNCE(nn2, p1)) / 2.
    """
    return 0.5 * (info_nce(nn1, p2, temperature) + info_nce(nn2, p1, temperature))


def _decoupled(z1: torch.Tensor, z2: torch.Tensor, temperature: float, sigma: float | None) -> torch.Tensor:
    from ..distributed import gather, world

    B = z1.shape[0]
    logits, positive, _ = _global_two_view_logits(z1, z2, temperature)  # (2B, 2NB), (2B,): every rank's negatives
    pos = logits.gather(1, positive[:, None]).squeeze(1)  # (2B,) s(i, i+)/t
    # Decoupling: the positive leaves the denominator; the 2NB - 2 other embeddings remain.
    neg = logits.scatter(1, positive[:, None], float("-inf"))  # (2B, 2NB)
    if sigma is None:
        weight = torch.ones_like(pos)
    else:
        rank, size = world()
        cos = gather(pos[:B] * temperature)  # (NB,) cos(z1_i, z2_i) of every rank's pairs, the same for both anchors
        weight = 2 - size * B * torch.softmax(cos / sigma, dim=0)  # 2 - exp(c/sigma) / mean exp(c/sigma)
        weight = weight[rank * B:(rank + 1) * B].repeat(2)  # this rank's pairs
    return (-weight * pos + torch.logsumexp(neg, dim=1)).mean()


@full_precision
def dcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Decoupled contrastive loss: NT-Xent with the positive pair removed from the denominator.

    Yeh, Hong, Hsu, Liu, Chen, LeCun 2022, "Decoupled Contrastive Learning", ECCV 2022, arXiv:2110.06848, Eq. 6.

    z1, z2: (B, D). For each of the 2B anchors i with positive i+:
    -s(i, i+)/t + log sum_{k != i, i+} exp(s(i, k)/t), s the cosine; mean over the 2B anchors
    (the paper sums over both views; the mean only rescales, and matches ``nt_xent``'s scale).
    """
    return _decoupled(z1, z2, temperature, None)


@full_precision
def dclw(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, sigma: float = 0.5) -> torch.Tensor:
    """DCL with the positive term weighted by w_i = 2 - exp(s_i/sigma) / mean_j exp(s_j/sigma), s_i = cos(z1_i, z2_i).

    Yeh et al. 2022, "Decoupled Contrastive Learning", arXiv:2110.06848, Eq. 7 (von Mises-Fisher
    weighting, sigma = 0.5): pairs already close (easy positives) weigh less, far ones more; the
    weights average to 1 over the batch. The weight is part of the graph, as in the authors' code.
    z1, z2: (B, D); returns a scalar.
    """
    return _decoupled(z1, z2, temperature, sigma)


@full_precision
def supcon(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss, the L_out form: every same-label embedding is a positive.

    Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan 2020, "Supervised
    Contrastive Learning", NeurIPS 2020, arXiv:2004.11362, Eq. 2.

    z1, z2: (B, D) two views; labels: (B,) int class of each image. Over the 2B anchors i with
    A(i) = all other embeddings and P(i) = those of i's class (at least its other view):
    mean_i  -1/|P(i)| sum_{p in P(i)} log( exp(s_ip/t) / sum_{a in A(i)} exp(s_ia/t) ).
    """
    logits, _, own = _global_two_view_logits(z1, z2, temperature)  # (2B, 2NB), self = -inf; every rank's batch
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (2B, 2NB)
    y = torch.cat([labels, labels])  # (2B,)
    every = _gathered(labels)
    same = y[:, None] == torch.cat([every, every])[None, :]  # (2B, 2NB) P(i) ...
    same[torch.arange(len(y), device=y.device), own] = False  # ... without the anchor itself
    per_anchor = -log_prob.masked_fill(~same, 0.0).sum(1) / same.sum(1)  # (2B,)
    return per_anchor.mean()


@full_precision
def multi_crop_info_nce(predictions: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                        temperature: float = 0.2) -> torch.Tensor:
    """MoCo-style InfoNCE over every pair of different views, as Mugs uses it for its instance and
    local-group discrimination supervisions.

    Zhou et al. 2022, "Mugs: A Multi-Granular Self-Supervised Learning Framework", arXiv:2203.14415
    (Eq. 1 for instances; the same form for local-group features).

    predictions: (V, B, D) student predictions, global views first; targets: (T, B, D) teacher
    embeddings of the T global views (no gradient); negatives: (Q, D), a queue of earlier teacher
    embeddings. All vectors are L2-normalized here. For a pair (t, v), v != t, and image i:
    -log exp(p_vi . y_ti / tau) / (exp(p_vi . y_ti / tau) + sum_q exp(p_vi . n_q / tau)),
    averaged over the batch; the pairs are then combined by ``crop_balanced_mean`` (global-view
    pairs one half, local-view pairs the other). The negative scores depend only on the student
    view, so they are computed once per view, not once per pair.
    """
    from .distillation import crop_balanced_mean

    p = F.normalize(predictions, dim=-1)  # (V, B, D)
    y = F.normalize(targets, dim=-1)  # (T, B, D)
    positive = torch.einsum("vbd,tbd->tvb", p, y) / temperature  # (T, V, B)
    negative = torch.logsumexp(p @ F.normalize(negatives, dim=-1).T / temperature, dim=-1)  # (V, B)
    pair = (torch.logaddexp(positive, negative[None]) - positive).mean(-1)  # (T, V): batch-mean loss per pair
    return crop_balanced_mean(pair)


@full_precision
def masked_nt_xent(z1: torch.Tensor, z2: torch.Tensor, groups: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent whose denominator leaves out the other images of the anchor's group (pseudo-label).

    G-SimCLR: Chakraborty, Gosthipaty, Paul 2020, "G-SimCLR: Self-Supervised Contrastive Learning
    with Guided Projection via Pseudo Labelling", ICDM Workshops 2020, arXiv:2009.12007: images that
    share a pseudo-label are likely of one class, so they should not be pushed apart as negatives.

    z1, z2: (B, D) two views; row i of z1 and row i of z2 are the positive pair. groups: (B,) int
    group of each image. For each of the 2B anchors i with partner i+ and s the cosine:
    -s(i, i+)/t + log( exp(s(i, i+)/t) + sum_{k != i, i+, group(k) != group(i)} exp(s(i, k)/t) );
    mean over the 2B anchors. The partner always stays in the denominator; with all groups distinct
    this is ``nt_xent``. An anchor whose every negative shares its group contributes log 1 = 0.
    """
    logits, positive, _ = _global_two_view_logits(z1, z2, temperature)  # (2B, 2NB) self = -inf, (2B,)
    g = torch.cat([groups, groups])  # (2B,)
    every = _gathered(groups)  # data parallel: every rank's images are negatives, unless in the anchor's group
    same = g[:, None] == torch.cat([every, every])[None, :]  # (2B, 2NB): self, partner and same-group negatives
    same[torch.arange(len(g), device=g.device), positive] = False  # the positive pair stays
    return F.cross_entropy(logits.masked_fill(same, float("-inf")), positive)


@full_precision
def graphcl_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """GraphCL's NT-Xent (You et al., NeurIPS 2020, eq. 3 as in its code): for graph i, the cosine of
    its two views over temperature against its first view's cosines to the OTHER graphs' second views,
    the positive left out of the denominator: -log(e^{s_ii} / sum_{j != i} e^{s_ij}). z1, z2 (B, D)."""
    from ..distributed import gather, world

    rank, _ = world()
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    sim = z1 @ gather(z2).T / temperature  # (B, NB): against the second views of every rank
    rows = torch.arange(len(z1), device=z1.device)
    own = rows + rank * len(z1)  # each graph's own second view among the NB
    positive = sim[rows, own]
    negatives = torch.logsumexp(sim.index_put((rows, own), torch.tensor(float("-inf"), device=sim.device)), dim=1)
    return (negatives - positive).mean()
