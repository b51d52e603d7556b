"""Data parallel: 2 CPU processes (gloo) at batch B/2 each give the single-process loss and gradients
at batch B (issue 12's equivalence), starting with the autograd-aware gather and NT-Xent."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfsup.distributed import gather, world
from selfsup.losses.contrastive import nt_xent
from selfsup.losses.redundancy import barlow_twins, vicreg

LOSSES = {"nt_xent": lambda a, b: nt_xent(a, b, temperature=0.5), "barlow_twins": barlow_twins, "vicreg": vicreg}

N, D_IN, D = 8, 6, 4  # the global batch, input and embedding widths


def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D_IN, generator=g), torch.randn(N, D_IN, generator=g)


def model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(D_IN, 16), torch.nn.ReLU(), torch.nn.Linear(16, D))


def _worker(rank: int, size: int, store: str, out: str, name: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        net = torch.nn.parallel.DistributedDataParallel(model())
        x1, x2 = data()
        rows = slice(rank * N // size, (rank + 1) * N // size)
        loss = LOSSES[name](net(x1[rows]), net(x2[rows]))
        loss.backward()
        losses = [torch.zeros(()) for _ in range(size)]
        dist.all_gather(losses, loss.detach())
        assert world() == (rank, size)
        assert gather(torch.full((2,), float(rank))).tolist() == [r for r in range(size) for _ in range(2)]
        if rank == 0:
            torch.save({"losses": torch.stack(losses), "grads": [p.grad for p in net.module.parameters()]}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", list(LOSSES))
def test_two_gloo_processes_give_the_single_process_loss_and_gradients(name, tmp_path):
    """NT-Xent's negatives, and Barlow Twins' and VICReg's batch statistics, come from both ranks."""
    net = model()
    x1, x2 = data()
    loss = LOSSES[name](net(x1), net(x2))
    loss.backward()
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(out), name), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert got["losses"].mean() == pytest.approx(loss.item(), rel=1e-6)  # the mean of the ranks' losses
    for mine, theirs in zip((p.grad for p in net.parameters()), got["grads"]):
        torch.testing.assert_close(theirs, mine, rtol=1e-5, atol=1e-6)


def test_outside_a_process_group_gather_is_the_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert world() == (0, 1) and gather(x) is x


def _statistics_worker(rank: int, size: int, store: str, out: str) -> None:
    from selfsup.methods.queue import FeatureQueue
    from selfsup.losses.clustering import sinkhorn
    from selfsup.losses.distillation import dino_center

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        scores, logits, center = statistics_data()
        rows = slice(rank * N // size, (rank + 1) * N // size)
        codes = sinkhorn(scores[rows], epsilon=0.05, iterations=3)
        new_center = dino_center(center, logits[:, rows], momentum=0.9)
        queue = FeatureQueue(6, 5, filled=False)
        queue.push(scores[rows])
        queue.push(scores[rows] * 2)
        parts = [torch.zeros_like(codes) for _ in range(size)]
        dist.all_gather(parts, codes)
        if rank == 0:
            torch.save({"codes": torch.cat(parts), "center": new_center, "queue": queue.state_dict()}, out)
    finally:
        dist.destroy_process_group()


def statistics_data():
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(N, 5, generator=g) * 2 - 1  # cosines to 5 prototypes
    logits = torch.randn(2, N, 5, generator=g)  # 2 teacher views
    return scores, logits, torch.randn(1, 5, generator=g)


def test_sinkhorn_codes_the_dino_center_and_queues_use_every_ranks_samples(tmp_path):
    """SwAV's Sinkhorn marginals and DINO's center are batch statistics, and a queue takes every
    rank's rows: over 2 ranks each equals the single-process value at the global batch."""
    from selfsup.losses.clustering import sinkhorn
    from selfsup.losses.distillation import dino_center
    from selfsup.methods.queue import FeatureQueue

    scores, logits, center = statistics_data()
    out = tmp_path / "rank0.pt"
    mp.spawn(_statistics_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    torch.testing.assert_close(got["codes"], sinkhorn(scores, epsilon=0.05, iterations=3), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["center"], dino_center(center, logits, momentum=0.9), rtol=1e-5, atol=1e-6)
    queue = FeatureQueue(6, 5, filled=False)  # MoCo's keys, NNCLR's support set: the whole batch of every rank
    queue.push(scores)
    queue.push(scores * 2)
    for key, value in queue.state_dict().items():
        torch.testing.assert_close(got["queue"][key], value, rtol=0, atol=0, msg=key)
