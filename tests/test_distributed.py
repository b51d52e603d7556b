"""Data parallel: 2 CPU processes (gloo) at batch B/2 each give the single-process loss and gradients
at batch B (issue 12's equivalence), starting with the autograd-aware gather and NT-Xent."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfsup.distributed import end, gather, world
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
        end()


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
        end()


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


METHODS = ["simclr", "barlow_twins", "vicreg", "byol", "simsiam", "moco_v3", "dino", "swav"]


def method_and_views(name):
    """A method on convnet6 (BatchNorm in the backbone and the heads) and fixed views of N images."""
    from selfsup import registry
    from selfsup.backbones.base import build_backbone
    from selfsup.distributed import global_batchnorm

    torch.manual_seed(3)
    method = global_batchnorm(registry.get("method", name)(build_backbone("convnet6", in_channels=1, image_size=16)))
    g = torch.Generator().manual_seed(4)
    views = [torch.randn(N, 1, 16, 16, generator=g) for _ in range(2)]
    return method, views


def method_loss(method, views, rows):
    from selfsup.methods.base import Batch

    vs = [v[rows] for v in views]
    index = torch.arange(N)[rows]
    return method(Batch(vs, {}, vs[0], None, index, 0.5, 2, 0))["loss"]


def _method_worker(rank: int, size: int, store: str, out: str, name: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        method, views = method_and_views(name)
        net = torch.nn.parallel.DistributedDataParallel(method)
        rows = slice(rank * N // size, (rank + 1) * N // size)
        from selfsup.methods.base import Batch

        vs = [v[rows] for v in views]
        loss = net(Batch(vs, {}, vs[0], None, torch.arange(N)[rows], 0.5, 2, 0))["loss"]
        loss.backward()
        losses = [torch.zeros(()) for _ in range(size)]
        dist.all_gather(losses, loss.detach())
        if rank == 0:
            torch.save({"losses": torch.stack(losses), "grads": {k: p.grad for k, p in method.named_parameters()
                                                               if p.grad is not None},
                        "buffers": dict(method.named_buffers())}, out)
    finally:
        end()


@pytest.mark.parametrize("name", METHODS)
def test_a_method_on_two_ranks_matches_one_process_with_global_batchnorm(name, tmp_path):
    """Whole methods, BatchNorm included (GlobalBatchNorm: statistics over both ranks): loss, every
    parameter's gradient and the BatchNorm running statistics after one step equal one process at
    the global batch."""
    method, views = method_and_views(name)
    loss = method_loss(method, views, slice(0, N))
    loss.backward()
    out = tmp_path / "rank0.pt"
    mp.spawn(_method_worker, args=(2, str(tmp_path / "store"), str(out), name), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert got["losses"].mean() == pytest.approx(loss.item(), rel=1e-5)
    grads = {k: p.grad for k, p in method.named_parameters() if p.grad is not None}
    assert grads.keys() == got["grads"].keys()
    scale = max(g.abs().max().item() for g in grads.values())  # float error is relative to the largest gradient
    for key in grads:
        torch.testing.assert_close(got["grads"][key], grads[key], rtol=1e-4, atol=1e-4 * scale, msg=key)
    for key, value in method.named_buffers():
        torch.testing.assert_close(got["buffers"][key], value, rtol=1e-4, atol=1e-5, msg=key)


# GlobalBatchNorm against BatchNorm on the whole batch: (input shape, memory format, affine, input offset)
BN_CASES = {
    "2d": ((8, 3, 5, 5), torch.contiguous_format, True, 0.0),
    "2d-channels-last": ((8, 3, 5, 5), torch.channels_last, True, 0.0),
    "1d": ((8, 6), torch.contiguous_format, True, 0.0),
    "no-affine": ((8, 3, 5, 5), torch.contiguous_format, False, 0.0),
    "large-mean": ((8, 3, 5, 5), torch.channels_last, True, 1000.0),  # the variance is combined stably
}


def _bn_inputs(case: str):
    shape, fmt, affine, offset = BN_CASES[case]
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) + offset).float()
    dy = torch.randn(shape, generator=g)
    bn = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(shape[1], affine=affine)
    if affine:
        with torch.no_grad():
            bn.weight.copy_(torch.rand(shape[1], generator=g) + 0.5)
            bn.bias.copy_(torch.randn(shape[1], generator=g))
    if len(shape) == 4:
        x, dy = x.contiguous(memory_format=fmt), dy.contiguous(memory_format=fmt)
    return x, dy, bn


def _bn_state(bn, x, y):
    return {"y": y.detach(), "dx": x.grad, "running": torch.cat([bn.running_mean, bn.running_var]),
            **({"dw": bn.weight.grad, "db": bn.bias.grad} if bn.affine else {})}


def _bn_worker(rank: int, size: int, store: str, out: str, case: str) -> None:
    from selfsup.distributed import global_batchnorm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=size)
    try:
        x, dy, bn = _bn_inputs(case)
        bn = global_batchnorm(bn)
        rows = slice(rank * len(x) // size, (rank + 1) * len(x) // size)
        xr = x[rows].detach().requires_grad_(True)
        y = bn(xr)
        (y * dy[rows]).sum().backward()
        state = _bn_state(bn, xr, y)
        everyone = [None] * size
        dist.all_gather_object(everyone, state)
        if rank == 0:
            torch.save(everyone, out)
    finally:
        end()


@pytest.mark.parametrize("case", list(BN_CASES))
def test_global_batchnorm_on_two_ranks_is_batchnorm_on_the_whole_batch(case, tmp_path):
    """Output, input gradient, running statistics (both ranks) and the weight and bias gradients
    (summed over ranks, as DDP's average of them times the rank count) against BatchNorm on the
    whole batch in one process, in float64 (the same float32 inputs), so that the large-mean case
    also checks how the statistics are combined."""
    x, dy, bn = _bn_inputs(case)
    x, dy, bn = x.double().requires_grad_(True), dy.double(), bn.double()
    y = bn(x)
    (y * dy).sum().backward()
    want = _bn_state(bn, x, y)
    out = tmp_path / "ranks.pt"
    mp.spawn(_bn_worker, args=(2, str(tmp_path / "store"), str(out), case), nprocs=2, join=True)
    ranks = [{k: v.double() for k, v in r.items()} for r in torch.load(out, weights_only=True)]
    # float32 inputs near 1000 carry 6e-5 of rounding each: the bound grows with the offset
    tol = dict(rtol=1e-4 + 2e-7 * BN_CASES[case][3], atol=1e-4 + 2e-7 * BN_CASES[case][3])
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), want["y"], **tol)
    torch.testing.assert_close(torch.cat([r["dx"] for r in ranks]), want["dx"], **tol)
    for r in ranks:
        torch.testing.assert_close(r["running"], want["running"], **tol)
    if "dw" in want:
        torch.testing.assert_close(sum(r["dw"] for r in ranks), want["dw"], **tol)
        torch.testing.assert_close(sum(r["db"] for r in ranks), want["db"], **tol)
