"""The contrastive family's losses against hand-computed values and slow loop references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.losses.contrastive import (
    dcl,
    dclw,
    info_nce,
    moco_v3_loss,
    negative_cosine,
    nnclr_loss,
    nt_xent,
    simsiam_loss,
    supcon,
)
from selfsup.methods.queue import FeatureQueue, nearest_neighbour


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


E = math.exp


# ---------------------------------------------------------------- InfoNCE, MoCo v2 (queue) and v3

def test_info_nce_with_a_queue_hand_computed():
    # q1 = (1,0): positive (1,0) -> 1/0.5 = 2; queue (0,1) -> 0, (-1,0) -> -2
    # q2 = (0,1): positive (1,0) -> 0;         queue (0,1) -> 2, (-1,0) -> 0
    # The other key of the batch is NOT a negative (MoCo v2): only the queue is.
    l1 = -2 + math.log(E(2) + 1 + E(-2))
    l2 = 0 + math.log(1 + E(2) + 1)
    q, k, queue = t([[1, 0], [0, 1]]), t([[2, 0], [3, 0]]), t([[0, 1], [-1, 0]])  # keys unnormalized on purpose
    got = info_nce(q, k, temperature=0.5, negatives=queue)
    assert got.item() == pytest.approx((l1 + l2) / 2, abs=1e-6)
    assert info_nce(q, k, 0.5, negatives=5 * queue).item() == pytest.approx(got.item(), abs=1e-6)  # cosines


def test_info_nce_in_batch_hand_computed():
    # logits = q k^T / 1 = [[1, 0], [0, -1]]; targets on the diagonal
    l1 = -1 + math.log(E(1) + 1)
    l2 = 1 + math.log(1 + E(-1))
    got = info_nce(t([[1, 0], [0, 1]]), t([[1, 0], [0, -1]]), temperature=1.0)
    assert got.item() == pytest.approx((l1 + l2) / 2, abs=1e-6)


def test_moco_v3_loss_hand_computed_with_the_2tau_factor():
    # t = 0.5. ctr(q1, k2): logits [[2, 0], [0, -2]] -> (log(1 + e^-2) + 2 + log(1 + e^-2)) / 2 = 1 + log(1 + e^-2)
    #          ctr(q2, k1): logits [[2, 0], [0, 2]]  -> log(1 + e^-2)
    # loss = 2 t (ctr + ctr) = 1 * (1 + 2 log(1 + e^-2))
    q1, k2 = t([[1, 0], [0, 1]]), t([[1, 0], [0, -1]])
    q2, k1 = t([[0, 1], [1, 0]]), t([[0, 1], [1, 0]])
    expected = 1 + 2 * math.log(1 + E(-2))
    assert moco_v3_loss(q1, q2, k1, k2, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)
    # the factor: at t = 1 the same logits / t give 2 * (ctr + ctr) with ctr at t = 1
    at1 = 2 * (info_nce(q1, k2, 1.0) + info_nce(q2, k1, 1.0))
    assert moco_v3_loss(q1, q2, k1, k2, temperature=1.0).item() == pytest.approx(at1.item(), abs=1e-6)


# ---------------------------------------------------------------- SimSiam

def test_simsiam_loss_hand_computed():
    # D(p1, z2): cos((1,0),(1,1)) = 1/sqrt(2), cos((0,1),(0,-1)) = -1 -> -(0.70711 - 1) / 2 = 0.14645
    # D(p2, z1): cos((3,4),(4,-3)) = 0, cos((1,0),(2,0)) = 1          -> -(0 + 1) / 2 = -0.5
    p1, z2 = t([[1, 0], [0, 1]]), t([[1, 1], [0, -1]])
    p2, z1 = t([[3, 4], [1, 0]]), t([[4, -3], [2, 0]])
    d12 = -(1 / math.sqrt(2) - 1) / 2
    assert negative_cosine(p1, z2).item() == pytest.approx(d12, abs=1e-6)
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(0.5 * d12 - 0.25, abs=1e-6)


# ---------------------------------------------------------------- NNCLR

def test_nearest_neighbour_pick():
    support = t([[1, 0], [0, 1], [-1, 0], [0.6, 0.8]])
    z = t([[0.9, 0.1], [0.1, 0.9], [-5, 1]])
    # cosines of z0 with the rows: 0.994, 0.110, -0.994, 0.684 -> row 0; z1 -> row 1; z2 -> row 2
    assert torch.equal(nearest_neighbour(z, support), support[[0, 1, 2]])
    valid = torch.tensor([False, True, True, True])  # row 0 not written yet: z0's next best is row 3
    assert torch.allclose(nearest_neighbour(z, support, valid), support[[3, 1, 2]])
    none = torch.zeros(4, dtype=torch.bool)  # an empty support set: the normalized query itself
    assert torch.allclose(nearest_neighbour(z, support, none), torch.nn.functional.normalize(z, dim=1))


def test_nnclr_loss_hand_computed():
    # t = 0.5. InfoNCE(nn1, p2): logits [[2, 0], [0, 2]] -> log(1 + e^-2)
    #          InfoNCE(nn2, p1): logits [[2, -2], [2, -2]] -> (-2 + L, 2 + L) / 2 = L, L = log(e^2 + e^-2)
    nn1, p2 = t([[1, 0], [0, 1]]), t([[1, 0], [0, 1]])
    nn2, p1 = t([[1, 0], [1, 0]]), t([[1, 0], [-1, 0]])
    expected = 0.5 * (math.log(1 + E(-2)) + math.log(E(2) + E(-2)))
    assert nnclr_loss(nn1, nn2, p1, p2, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- DCL, DCLW

def test_dcl_hand_computed():
    # The nt_xent example: a=(1,0), b=(0,1) | c=(1,0), d=(-1,0), positives a-c and b-d, logits = cos / 0.5.
    # Decoupled: the positive leaves the denominator, so each anchor's sum runs over the 2 others.
    # a: -2 + log(e^0 + e^-2)   b: -0 + log(e^0 + e^0)   c: as a   d: -0 + log(e^-2 + e^-2)
    la = -2 + math.log(1 + E(-2))
    expected = (2 * la + math.log(2) + math.log(2) - 2) / 4
    z1, z2 = t([[1, 0], [0, 1]]), t([[1, 0], [-1, 0]])
    assert dcl(z1, z2, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)
    assert dcl(z1, z2, temperature=0.5).item() < nt_xent(z1, z2, temperature=0.5).item()  # a smaller denominator


def test_dclw_hand_computed():
    # Pair cosines: (a, c) = 1, (b, d) = 0; sigma = 0.5 -> exp(2), exp(0); their mean (e^2 + 1) / 2.
    # w0 = 2 - 2 e^2 / (e^2 + 1), w1 = 2 - 2 / (e^2 + 1) (they average to 1); w1 multiplies a zero logit.
    w0 = 2 - 2 * E(2) / (E(2) + 1)
    expected = (2 * (-2 * w0 + math.log(1 + E(-2))) + 2 * math.log(2) - 2) / 4
    z1, z2 = t([[1, 0], [0, 1]]), t([[1, 0], [-1, 0]])
    assert dclw(z1, z2, temperature=0.5, sigma=0.5).item() == pytest.approx(expected, abs=1e-6)


def test_dclw_with_equal_pairs_is_dcl():
    z1 = t([[1, 0], [0, 1], [0.6, 0.8]])
    z2 = t([[0.8, 0.6], [0.6, 0.8], [0.96, 0.28]])  # every pair has cosine 0.8: all weights are 1
    assert dclw(z1, z2, 0.1).item() == pytest.approx(dcl(z1, z2, 0.1).item(), rel=1e-6)


# ---------------------------------------------------------------- SupCon

def supcon_reference(z1: np.ndarray, z2: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Slow loop over anchors and their positives: the paper's Eq. 2 (L_out) as written."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = np.concatenate([labels, labels])
    total = 0.0
    for i in range(len(z)):
        den = sum(math.exp(z[i] @ z[a] / temperature) for a in range(len(z)) if a != i)
        positives = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        total += -sum(math.log(math.exp(z[i] @ z[p] / temperature) / den) for p in positives) / len(positives)
    return total / len(z)


def test_supcon_hand_computed():
    z1, z2 = t([[1, 0], [0, 1]]), t([[1, 0], [-1, 0]])
    # All four embeddings in one class: every other one is a positive; t = 0.5.
    # a: others (0, 2, -2): -mean + logsumexp = log(1 + e^2 + e^-2); b: log 3; c: as a; d: 4/3 + log(1 + 2 e^-2)
    la = math.log(1 + E(2) + E(-2))
    expected = (2 * la + math.log(3) + 4 / 3 + math.log(1 + 2 * E(-2))) / 4
    assert supcon(z1, z2, torch.tensor([0, 0]), 0.5).item() == pytest.approx(expected, abs=1e-6)
    # Distinct classes: the only positive is the other view, which is NT-Xent (0.406005, tests/test_losses.py).
    assert supcon(z1, z2, torch.tensor([3, 7]), 0.5).item() == pytest.approx(0.406005, abs=1e-6)


def test_supcon_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    got = supcon(z1, z2, labels, temperature=0.1)
    assert got.item() == pytest.approx(supcon_reference(z1.numpy(), z2.numpy(), labels.numpy(), 0.1), rel=1e-5)


# ---------------------------------------------------------------- the FIFO queue

def test_queue_is_fifo_and_wraps_around():
    queue = FeatureQueue(5, 2, filled=False)
    assert int(queue.count) == 0 and not queue.valid().any()
    rows = torch.arange(20, dtype=torch.float32).view(10, 2)  # row r = (2r, 2r + 1)
    queue.push(rows[:3])
    assert int(queue.ptr) == 3 and int(queue.count) == 3
    assert queue.valid().tolist() == [True, True, True, False, False]
    queue.push(rows[3:6])  # rows 3, 4 go to slots 3, 4; row 5 wraps to slot 0
    assert int(queue.ptr) == 1 and int(queue.count) == 5
    assert torch.equal(queue.entries, rows[[5, 1, 2, 3, 4]])
    queue.push(torch.cat([rows[6:10], rows[:3]]))  # 7 rows into 5 slots: the newest 5, from slot 1 on
    newest = torch.cat([rows[8:10], rows[:3]])  # rows 8, 9, 0, 1, 2
    assert torch.equal(queue.entries, newest[[4, 0, 1, 2, 3]]) and int(queue.ptr) == 1


def test_filled_queue_starts_with_unit_rows_and_round_trips():
    torch.manual_seed(0)
    queue = FeatureQueue(6, 3, filled=True)
    assert int(queue.count) == 6 and torch.allclose(queue.entries.norm(dim=1), torch.ones(6))
    queue.push(torch.ones(4, 3))
    copy = FeatureQueue(6, 3, filled=False)
    copy.load_state_dict(queue.state_dict())
    assert set(queue.state_dict()) == {"entries", "ptr", "count"}
    for a, b in zip(queue.state_dict().values(), copy.state_dict().values()):
        assert torch.equal(a, b)
    queue.push(torch.full((3, 3), 2.0))
    copy.push(torch.full((3, 3), 2.0))
    assert torch.equal(queue.entries, copy.entries) and int(queue.ptr) == int(copy.ptr) == 1
