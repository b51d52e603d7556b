"""Data-parallel helpers over ``torch.distributed`` (launched with torchrun; gloo on CPUs, NCCL on
GPUs). Nothing here is home-made communication: it is the one autograd-aware all-gather that the
losses with batch-level terms use, so that N processes at batch B/N compute what one process
computes at batch B.

Gradient bookkeeping: DDP averages parameter gradients over the N ranks, and each rank's loss is
the mean over its own B/N anchors (against negatives or statistics of the whole gathered batch),
so the average of the ranks' losses is the single-process loss over B. A rank's embeddings also
enter the other ranks' losses, so the gather's backward sums the gradients of the gathered tensor
over the ranks (all-reduce) and keeps this rank's rows: with DDP's average this gives exactly the
gradient of the single-process loss.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather(x: torch.Tensor) -> torch.Tensor:
    """(B_local, ...) on every rank -> (N * B_local, ...), rank-major, with gradients flowing back to
    each rank's own rows; `x` itself outside a process group. Every rank must pass the same shape
    (the sampler drops the last incomplete batch)."""
    if world()[1] == 1:
        return x
    return _Gather.apply(x)


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The sum of `x` over the ranks (no gradient: statistics such as DINO's center or Sinkhorn's
    marginals); `x` itself outside a process group."""
    if world()[1] == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def max_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of `x` over the ranks (no gradient); `x` outside a process group."""
    if world()[1] == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def start(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group that torchrun describes ($WORLD_SIZE > 1, $RANK, $LOCAL_RANK, the
    rendezvous in $MASTER_ADDR/$MASTER_PORT): NCCL on CUDA, gloo on the CPU; each rank's device is
    cuda:$LOCAL_RANK on GPUs. Returns (the device to use, whether this call started the group, so
    that the caller ends it). Outside torchrun: (`device`, False)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


class Ranks:
    """The few decisions every rank must take alike (skip a step, stop, the budget's rate), each one
    collective; on a single process every call is local and free."""

    def __init__(self, device: torch.device):
        self.rank, self.size = world()
        self.main = self.rank == 0
        self.device = device

    def any(self, flag: bool) -> bool:
        if self.size == 1:
            return flag
        t = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def max(self, value: float) -> float:
        if self.size == 1:
            return value
        t = torch.tensor(value, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()
