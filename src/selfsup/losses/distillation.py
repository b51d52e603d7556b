"""Self-distillation losses: a student predicts a teacher's embedding of another view."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .precision import full_precision


@full_precision
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's normalized regression: mean over the batch of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z).

    Grill et al. 2020, "Bootstrap Your Own Latent", NeurIPS 2020, arXiv:2006.07733.

    p: (B, D) student predictions; z: (B, D) teacher projections of the other view (the caller
    passes them without gradient). Returns a scalar in [0, 4]; BYOL sums it over both view orders.
    """
    return 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean()


@full_precision
def dino_targets(teacher_logits: torch.Tensor, center: torch.Tensor, temperature: float = 0.04) -> torch.Tensor:
    """DINO's teacher targets: centered, then sharpened, ``softmax((t - c) / temperature)`` over the K prototypes.

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021, arXiv:2104.14294.

    teacher_logits: (..., K), e.g. (V_t, B, K); center: (K,) or (1, K), the running mean of the
    teacher's logits. Centering alone pushes toward a uniform output and sharpening alone toward one
    dominant prototype; together they keep the teacher from collapsing either way.
    Returns probabilities of the same shape (the caller passes logits without gradient).
    """
    return F.softmax((teacher_logits - center) / temperature, dim=-1)


@full_precision
def dino_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """The next center: ``momentum * center + (1 - momentum) * mean of the teacher logits over views and batch``.

    center: (1, K); teacher_logits: (..., K). Returns (1, K). DINO (arXiv:2104.14294) Eq. 4, m = 0.9.
    """
    from ..distributed import sum_over_ranks, world

    flat = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    batch_mean = sum_over_ranks(flat.sum(0, keepdim=True)) / (flat.shape[0] * world()[1])  # (1, K), every rank's rows
    return center * momentum + batch_mean * (1 - momentum)


@full_precision
def multi_view_cross_entropy(student_logits: torch.Tensor, targets: torch.Tensor,
                             temperature: float = 0.1) -> torch.Tensor:
    """Mean over view pairs (s, t) with s != t of ``-sum_K targets[t] * log_softmax(student_logits[s] / temperature)``.

    student_logits: (V, B, K), all views, the target views first; targets: (T, B, K) probabilities
    for the first T <= V views (DINO: the teacher's two global views; SwAV: Sinkhorn codes of the
    global views). View s = t is skipped: a view never predicts its own target. Each pair's
    cross-entropy is averaged over the batch, then the T * (V - 1) pairs are averaged.
    """
    V, T = student_logits.shape[0], targets.shape[0]
    if T > V:
        raise ValueError(f"{T} target views but only {V} student views")
    log_p = F.log_softmax(student_logits / temperature, dim=-1)  # (V, B, K)
    ce = -torch.einsum("tbk,vbk->tv", targets, log_p) / student_logits.shape[1]  # (T, V): batch-mean CE per pair
    same = torch.eye(T, V, dtype=torch.bool, device=ce.device)  # the pairs s = t, min(T, V) of them
    return ce.masked_fill(same, 0).sum() / (T * V - min(T, V))  # the mean over the others, sized on the host


@full_precision
def dino_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor,
              student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> torch.Tensor:
    """DINO's loss: the student's softmax at temperature 0.1 matches the teacher's centered, sharpened
    softmax, over every pair of different views (student: all V views; teacher: the T global views).

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021, arXiv:2104.14294, Eq. 3.

    student_logits: (V, B, K), global views first; teacher_logits: (T, B, K), no gradient; center: (1, K).
    Returns a scalar, ``multi_view_cross_entropy(student, dino_targets(teacher, center))``.
    """
    targets = dino_targets(teacher_logits, center, teacher_temperature)
    return multi_view_cross_entropy(student_logits, targets, student_temperature)


def crop_balanced_mean(pair_losses: torch.Tensor) -> torch.Tensor:
    """Mugs' multi-crop average of per-pair losses: half the mean over pairs whose student view is a
    global view, half the mean over pairs whose student view is a local view.

    Zhou et al. 2022, "Mugs: A Multi-Granular Self-Supervised Learning Framework", arXiv:2203.14415
    (the authors' code averages its large-crop and small-crop terms this way for all three losses).

    pair_losses: (T, V), entry (t, v) the loss of student view v against target view t; the T target
    views are the first T student views (the global ones) and the pairs t = v are skipped. Without
    local views (V = T) it is the plain mean over the T (T - 1) global pairs. Returns a scalar.
    """
    T, V = pair_losses.shape
    same = torch.eye(T, T, dtype=torch.bool, device=pair_losses.device)  # global pairs t = v
    global_mean = pair_losses[:, :T].masked_fill(same, 0).sum() / (T * (T - 1))  # sized on the host: no read
    if V == T:
        return global_mean
    return 0.5 * (global_mean + pair_losses[:, T:].mean())


@full_precision
def mugs_group_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor,
                    student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> torch.Tensor:
    """Mugs' group discrimination loss: DINO's cross-entropy between the student's softmax and the
    teacher's centered, sharpened softmax over prototypes, averaged with ``crop_balanced_mean``.

    Zhou et al. 2022, "Mugs: A Multi-Granular Self-Supervised Learning Framework", arXiv:2203.14415
    (group discrimination supervision; the loss is DINO's Eq. 3, arXiv:2104.14294).

    student_logits: (V, B, K), global views first; teacher_logits: (T, B, K), no gradient; center: (1, K).
    Pair (t, v): mean over the batch of ``-sum_K softmax((t - c) / tau_t) * log_softmax(s / tau_s)``.
    Unlike ``dino_loss`` (a uniform mean over all pairs) the global-view and local-view pairs weigh
    one half each, however many local views there are.
    """
    targets = dino_targets(teacher_logits, center, teacher_temperature)  # (T, B, K)
    log_p = F.log_softmax(student_logits / student_temperature, dim=-1)  # (V, B, K)
    pair = -torch.einsum("tbk,vbk->tv", targets, log_p) / student_logits.shape[1]  # (T, V)
    return crop_balanced_mean(pair)
