"""Mugs: its losses against hand-computed values and loops, neighbour retrieval against brute force,
the local-group aggregator against a direct attention computation, the method's wiring (terms,
weights, memories, queues, center, teacher), learning, state round trip and exact resume."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup import config as C
from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.errors import ConfigError
from selfsup.losses.contrastive import info_nce, multi_crop_info_nce
from selfsup.losses.distillation import crop_balanced_mean, dino_loss, mugs_group_loss
from selfsup.methods.mugs import LocalGroupAggregator, RelationBlock, top_k_neighbours
from tests.conftest import assert_resume_bit_identical, fmnist_arrays
from tests.test_distillation_methods import multicrop_batch
from tests.test_methods import make_batch

SMALL = dict(hidden_dim=64, out_dim=32, pred_hidden_dim=64, bottleneck_dim=32, n_prototypes=48,
             queue_size=64, memory_size=24, top_k=4)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def mugs(**options):
    torch.manual_seed(0)
    backbone = build_backbone("convnet6", in_channels=1, image_size=28, width=8)  # 32-d features
    return registry.get("method", "mugs")(backbone, **{**SMALL, **options})


# ---------------------------------------------------------------- losses

def test_multi_crop_info_nce_hand_computed():
    # D = 2, B = 1, temperature 1, one negative n = (-1, 0). Targets y0 = (1, 0), y1 = (0, 1);
    # predictions p0 = (1, 0), p1 = (0, 1) (global), p2 = (1, 0), p3 = (0, 1) (local).
    # pair (t, v): log(exp(p.y) + exp(p.n)) - p.y
    # global pairs: (y0, p1) = log(1 + 1) = ln 2; (y1, p0) = log(1 + e^-1)
    # local pairs: (y0, p2) = log(e + e^-1) - 1; (y1, p2) = log(1 + e^-1); (y0, p3) = ln 2; (y1, p3) = log(e + 1) - 1
    a, b, c, d = math.log(2), math.log(1 + math.exp(-1)), math.log(math.e + math.exp(-1)) - 1, math.log(math.e + 1) - 1
    expected = 0.5 * ((a + b) / 2 + (c + b + a + d) / 4)
    predictions = t([[[1, 0]], [[0, 1]], [[1, 0]], [[0, 1]]])  # (V=4, B=1, D=2)
    targets = t([[[1, 0]], [[0, 1]]])  # (T=2, B=1, D=2)
    got = multi_crop_info_nce(predictions, targets, t([[-1, 0]]), temperature=1.0)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # without local views: the mean of the two global pairs
    assert multi_crop_info_nce(predictions[:2], targets, t([[-1, 0]]), 1.0).item() == pytest.approx((a + b) / 2, abs=1e-6)


def test_multi_crop_info_nce_matches_loop_over_pairs():
    torch.manual_seed(0)
    V, T, B, D, Q, tau = 5, 2, 6, 8, 11, 0.2
    predictions, targets, negatives = torch.randn(V, B, D), torch.randn(T, B, D), torch.randn(Q, D)
    global_pairs, local_pairs = [], []
    for i in range(T):
        for v in range(V):
            if v != i:
                (global_pairs if v < T else local_pairs).append(info_nce(predictions[v], targets[i], tau, negatives).item())
    expected = 0.5 * (np.mean(global_pairs) + np.mean(local_pairs))
    assert multi_crop_info_nce(predictions, targets, negatives, tau).item() == pytest.approx(expected, rel=1e-5)


def test_group_loss_hand_computed():
    # K = 2, B = 1, as test_dino_loss_hand_computed plus a fourth (local) student view with p3 = (1/2, 1/2).
    # teacher targets q0 = (3/4, 1/4), q1 = (1/2, 1/2); student p0 = (2/3, 1/3), p1 = (1/2, 1/2), p2 = (1/4, 3/4)
    # global pairs (q0,p1) = ln 2, (q1,p0) = ln 3 - ln(2)/2                -> mean (ln 2 + 2 ln 3) / 4
    # local pairs (q0,p2) = 2 ln 2 - ln(3)/4, (q1,p2) = 2 ln 2 - ln(3)/2, (q0,p3) = (q1,p3) = ln 2 -> mean (6 ln 2 - 0.75 ln 3) / 4
    # half each: (7 ln 2 + 1.25 ln 3) / 8 (DINO's uniform mean over the 6 pairs would be (6.5 ln 2 + 0.25 ln 3) / 6)
    center = t([[0.02, -0.02]])
    teacher = t([[[0.02 + 0.04 * math.log(3), -0.02]], [[0.02, -0.02]]])  # (T=2, B=1, K=2)
    student = t([[[0.1 * math.log(2), 0.0]], [[0.0, 0.0]], [[0.0, 0.1 * math.log(3)]], [[0.0, 0.0]]])  # (V=4, B=1, K=2)
    got = mugs_group_loss(student, teacher, center, student_temperature=0.1, teacher_temperature=0.04)
    assert got.item() == pytest.approx((7 * math.log(2) + 1.25 * math.log(3)) / 8, abs=1e-6)
    # without local views it is DINO's loss
    torch.manual_seed(1)
    s, te, c = torch.randn(2, 5, 7), torch.randn(2, 5, 7), torch.randn(1, 7)
    assert mugs_group_loss(s, te, c, 0.1, 0.04).item() == pytest.approx(dino_loss(s, te, c, 0.1, 0.04).item(), rel=1e-6)


def test_crop_balanced_mean_loop():
    torch.manual_seed(2)
    T, V = 2, 6
    pairs = torch.rand(T, V)
    glob = [pairs[i, v].item() for i in range(T) for v in range(T) if v != i]
    loc = [pairs[i, v].item() for i in range(T) for v in range(T, V)]
    assert crop_balanced_mean(pairs).item() == pytest.approx(0.5 * (np.mean(glob) + np.mean(loc)), rel=1e-6)


# ---------------------------------------------------------------- neighbours and aggregation

@pytest.mark.parametrize("n_valid", [30, 3, 0])
def test_top_k_neighbours_matches_brute_force(n_valid):
    torch.manual_seed(3)
    N, M, D, k = 7, 30, 5, 4
    query, memory = torch.randn(N, D), torch.randn(M, D) * 3
    valid = torch.arange(M) < n_valid
    neighbours, found, index = top_k_neighbours(query, memory, valid, k)
    assert neighbours.shape == (N, k, D) and found.shape == index.shape == (N, k)
    for i in range(N):
        sims = []
        for j in range(M):
            if valid[j]:
                q, m = query[i].tolist(), memory[j].tolist()
                dot = sum(a * b for a, b in zip(q, m))
                sims.append((dot / math.sqrt(sum(a * a for a in q)) / math.sqrt(sum(b * b for b in m)), j))
        best = [j for _, j in sorted(sims, reverse=True)[:k]]
        assert index[i, :len(best)].tolist() == best
        assert found[i].tolist() == [True] * len(best) + [False] * (k - len(best))
        torch.testing.assert_close(neighbours[i, :len(best)], memory[best])  # as stored, not normalized
        assert (neighbours[i, len(best):] == 0).all()


def attention_reference(block: RelationBlock, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Position 0's output of one pre-norm block, head by head with explicit softmax over the valid tokens."""
    L, D = x.shape
    H = block.heads
    d = D // H
    h = F.layer_norm(x, (D,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
    qkv = h @ block.qkv.weight.T + block.qkv.bias  # (L, 3D)
    heads = []
    for j in range(H):
        q, k, v = (qkv[:, s * D + j * d: s * D + (j + 1) * d] for s in range(3))
        scores = [(q[0] @ k[i]).item() / math.sqrt(d) if mask[i] else -math.inf for i in range(L)]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        heads.append(sum(w * v[i] for i, w in enumerate(weights)) / sum(weights))
    y = x[0] + block.proj(torch.cat(heads))
    return y + block.mlp(block.norm2(y))


def test_relation_block_matches_direct_attention():
    torch.manual_seed(4)
    block = RelationBlock(8, heads=2)
    x = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        full = block(x, mask)
        first = block(x, mask, first_only=True)
        for n in range(3):
            torch.testing.assert_close(full[n, 0], attention_reference(block, x[n], mask[n]), rtol=1e-5, atol=1e-5)
    assert first.shape == (3, 1, 8)
    torch.testing.assert_close(first[:, 0], full[:, 0])  # the shortcut of the last block is exact


def test_aggregator_ignores_missing_neighbours_and_uses_found_ones():
    torch.manual_seed(5)
    agg = LocalGroupAggregator(8, depth=2, heads=2)
    x, neighbours = torch.randn(4, 8), torch.randn(4, 3, 8)
    none = torch.zeros(4, 3, dtype=torch.bool)
    with torch.no_grad():
        alone = agg(x, neighbours, none)
        assert torch.allclose(alone, agg(x, torch.randn(4, 3, 8), none))  # masked neighbours change nothing
        tokens = x[:, None]
        for block in agg.blocks:
            tokens = block(tokens, torch.ones(4, 1, dtype=torch.bool))
        torch.testing.assert_close(alone, agg.norm(tokens[:, 0]))  # = the blocks on the feature alone
        assert not torch.allclose(agg(x, neighbours, ~none), alone)  # found neighbours do change it


# ---------------------------------------------------------------- the method

def recompute_terms(m, batch):
    """The three loss terms from the method's parts (train-mode BatchNorm: same inputs, same outputs)."""
    B, V = batch.views[0].shape[0], len(batch.views)
    with torch.no_grad():
        globals_ = torch.cat(batch.views[:2])
        h = torch.cat([m.backbone(globals_), m.backbone(torch.cat(batch.views[2:]))])
        inst = m.instance_predictor(F.normalize(m.instance_projector(h), dim=-1)).view(V, B, -1)
        nb, found, _ = top_k_neighbours(h, m.student_memory.entries, m.student_memory.valid(), m.top_k)
        lg = m.local_group_predictor(F.normalize(m.local_group_projector(m.relation(h, nb, found)), dim=-1)).view(V, B, -1)
        grp = m.group_head(h).view(V, B, -1)
        ht = m.teacher["backbone"](globals_)
        t_inst = m.teacher["instance_projector"](ht).view(2, B, -1)
        nb, found, _ = top_k_neighbours(ht, m.teacher_memory.entries, m.teacher_memory.valid(), m.top_k)
        t_lg = m.teacher["local_group_projector"](m.teacher["relation"](ht, nb, found)).view(2, B, -1)
        t_grp = m.teacher["group_head"](ht).view(2, B, -1)
        return (h, ht, t_inst, t_lg, t_grp,
                (multi_crop_info_nce(inst, t_inst, m.instance_queue.entries, 0.2),
                 multi_crop_info_nce(lg, t_lg, m.local_group_queue.entries, 0.2),
                 mugs_group_loss(grp, t_grp, m.center, 0.1, 0.04)))


def train_steps(m, n, seed0=0):
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05)
    for step in range(n):
        opt.zero_grad()
        m(multicrop_batch(n=8, n_local=2, seed=seed0 + step))["loss"].backward()
        opt.step()
        m.on_step_end((step + 1) / 10)


def test_forward_terms_weights_and_state_updates():
    m = mugs(group_weight=2.0)
    train_steps(m, 2)  # memories partly filled (16 of 24 rows), queues partly overwritten
    assert int(m.student_memory.count) == int(m.teacher_memory.count) == 16
    batch = multicrop_batch(n=8, n_local=2, seed=7)
    h, ht, t_inst, t_lg, t_grp, expected = recompute_terms(m, batch)
    center, inst_queue = m.center.clone(), m.instance_queue.entries.clone()
    out = m(batch)
    for key, term in zip(("instance_loss", "local_group_loss", "group_loss"), expected):
        assert out[key].item() == pytest.approx(term.item(), rel=1e-5), key
        assert not out[key].requires_grad
    assert out["loss"].item() == pytest.approx((expected[0] + expected[1] + 2 * expected[2]).item() / 4, rel=1e-5)
    torch.testing.assert_close(out["features"], h[:16])  # the global views' backbone features, with their graph
    assert out["features"].requires_grad
    torch.testing.assert_close(m.center, 0.9 * center + 0.1 * t_grp.reshape(-1, 48).mean(0, keepdim=True))
    assert torch.equal(m.instance_queue.entries, inst_queue)  # nothing enqueued before the optimizer step
    out["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert all(p.grad is not None for p in m.relation.parameters())
    m.on_step_end(0.5)
    # memories: rows 16..23 take global view 0's features (student and teacher), the memory is now full
    torch.testing.assert_close(m.student_memory.entries[16:], h[:8])
    torch.testing.assert_close(m.teacher_memory.entries[16:], ht[:8])
    assert int(m.student_memory.count) == 24 and int(m.student_memory.ptr) == 0
    # queues (64 rows, 16 a step, pointer at 32): both global views' normalized teacher embeddings
    torch.testing.assert_close(m.instance_queue.entries[32:48], F.normalize(t_inst.reshape(16, -1), dim=1))
    torch.testing.assert_close(m.local_group_queue.entries[32:48], F.normalize(t_lg.reshape(16, -1), dim=1))
    assert torch.equal(m.instance_queue.entries[48:], inst_queue[48:])


def test_teacher_is_an_ema_of_the_student():
    m = mugs()
    student = m._student()
    for s, te in zip(student.state_dict().values(), m.teacher.state_dict().values()):
        assert torch.equal(s, te)
    assert not any(k.startswith("teacher.") for k, p in m.named_parameters() if p.requires_grad)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    m(multicrop_batch(n=8, n_local=2))["loss"].backward()
    opt.step()
    old = [p.clone() for p in m.teacher.parameters()]
    m.on_step_end(0.5)
    mom = m.momentum_at(0.5)
    assert mom == pytest.approx(0.995)
    for o, s, new in zip(old, student.parameters(), m.teacher.parameters()):
        torch.testing.assert_close(new, o * mom + s.detach() * (1 - mom), rtol=0, atol=1e-6)
    assert any(not torch.equal(o, n) for o, n in zip(old, m.teacher.parameters()))


def test_first_step_has_no_neighbours():
    m = mugs()
    assert int(m.student_memory.count) == 0 and int(m.teacher_memory.count) == 0
    x = torch.randn(3, 32)
    _, found, _ = top_k_neighbours(x, m.student_memory.entries, m.student_memory.valid(), 4)
    assert not found.any()
    out = m(multicrop_batch(n=8, n_local=2))
    assert torch.isfinite(out["loss"])


def test_last_layer_frozen_early_and_eval_leaves_state():
    m = mugs()
    m(multicrop_batch(n=8, n_local=2, progress=0.0))["loss"].backward()  # progress < freeze_last_layer
    assert m.group_head.prototypes.grad is None and m.group_head.mlp[0].weight.grad is not None
    m.on_step_end(0.1)
    m.eval()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        m(multicrop_batch(n=8, n_local=2))
    m.on_step_end(0.5)  # nothing pending from an eval forward; only the EMA moves the teacher
    for key, value in m.state_dict().items():
        if not key.startswith("teacher."):
            assert torch.equal(value, state[key]), key


def test_state_dict_round_trip():
    a = mugs()
    train_steps(a, 4)  # memories wrap around (32 writes into 24 rows)
    state = a.state_dict()
    for key in ("center", "instance_queue.entries", "local_group_queue.ptr", "student_memory.entries",
                "teacher_memory.count", "teacher.relation.blocks.0.qkv.weight"):
        assert key in state
    assert int(state["student_memory.count"]) == 24 and int(state["student_memory.ptr"]) == 8
    torch.manual_seed(123)
    b = registry.get("method", "mugs")(build_backbone("convnet6", in_channels=1, image_size=28, width=8), **SMALL)
    b.load_state_dict(state)
    batch = multicrop_batch(n=8, n_local=2, seed=9, progress=0.6)
    out_a, out_b = a(batch), b(batch)
    for key in ("loss", "instance_loss", "local_group_loss", "group_loss"):
        assert out_a[key].item() == out_b[key].item(), key
    a.on_step_end(0.7)
    b.on_step_end(0.7)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), key  # the same state afterwards too (memories, queues, center, teacher)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.from_numpy(fmnist_arrays(48)[0]).unsqueeze(1)


def test_learns_against_fixed_queues(images):
    # On one fixed batch the queues would fill with this batch's own teacher embeddings (see
    # NOT_ON_A_FIXED_BATCH in test_methods.py); with the queues held fixed the loss must fall.
    m = mugs(hidden_dim=128, out_dim=64, pred_hidden_dim=128, bottleneck_dim=64, n_prototypes=256,
             queue_size=512, memory_size=512, top_k=8, center_momentum=0.99)
    m.instance_queue.push = m.local_group_queue.push = lambda x: None
    batch = make_batch(type(m), images, n=48)
    optimizer = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(10):
        batch.progress = step / 10
        out = m(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        m.on_step_end((step + 1) / 10)
        losses.append([out[k].item() for k in ("loss", "instance_loss", "local_group_loss")])
    first, last = np.mean(losses[:3], axis=0), np.mean(losses[-3:], axis=0)
    assert (last < 0.8 * first).all(), losses  # the total and both InfoNCE terms
    assert int(m.student_memory.count) == 48 * 10 and int(m.teacher_memory.count) == 480


def test_bf16_autocast():
    m = mugs()
    train_steps(m, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(multicrop_batch(n=8, n_local=2))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    m.on_step_end(0.5)
    assert m.student_memory.entries.dtype == torch.float32


def test_options_rejected():
    with pytest.raises(ConfigError, match="temperatures"):
        mugs(instance_temperature=0)
    with pytest.raises(ConfigError, match="top_k"):
        mugs(top_k=30)  # more than memory_size=24
    with pytest.raises(ConfigError, match="relation_heads"):
        mugs(relation_heads=5)  # does not divide 32
    with pytest.raises(ConfigError, match="weights"):
        mugs(instance_weight=0, local_group_weight=0, group_weight=0)
    with pytest.raises(ConfigError, match="queue_size"):
        mugs(queue_size=8)(multicrop_batch(n=8, n_local=2))  # 16 teacher embeddings a step


def tiny(data, out, steps=6):
    return C.load(overrides=[f"data.name={data}", f"out={out}", "method.name=mugs", f"train.steps={steps}",
                             "train.batch_size=64", "train.checkpoint_every=3", "train.progress=false",
                             "backbone.width=8", "views.n_local=2", "optim.warmup_steps=2",
                             "method.hidden_dim=32", "method.out_dim=16", "method.pred_hidden_dim=32",
                             "method.bottleneck_dim=16", "method.n_prototypes=32", "method.queue_size=256",
                             "method.memory_size=96"])


def test_resume_is_bit_identical(fmnist_npz, tmp_path):
    sa = assert_resume_bit_identical(lambda out: tiny(fmnist_npz, out), tmp_path)
    # the state really moved: memories wrapped (6 x 64 writes into 96 rows), queues and center written
    assert int(sa["student_memory.count"]) == 96 and int(sa["teacher_memory.ptr"]) == 6 * 64 % 96
    assert int(sa["instance_queue.ptr"]) == 6 * 128 % 256 and sa["center"].abs().sum() > 0


def test_bn_head_option():
    m = mugs(use_bn_in_head=True)
    assert sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.instance_projector) == 2
    assert sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.teacher["group_head"].mlp) == 2
    out = m(multicrop_batch(n=8, n_local=2))
    out["loss"].backward()
    m.on_step_end(0.5)  # the EMA sees the same parameters and buffers in student and teacher
    for s, te in zip(m.instance_projector.buffers(), m.teacher["instance_projector"].buffers()):
        assert torch.equal(s, te)  # BatchNorm statistics copied
    assert torch.isfinite(out["loss"])
