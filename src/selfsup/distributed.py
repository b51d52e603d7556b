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
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


_GROUP: list = []  # (the process group object, its WORLD) once made


def _group():
    """A process group of all ranks for these helpers alone: DDP all-reduces gradient buckets on the
    default group while the backward of a gather or of GlobalBatchNorm runs, and collectives of two
    sources interleaved on one group may pair up differently on different ranks."""
    world_group = dist.group.WORLD
    if not _GROUP or _GROUP[0][1] is not world_group:
        _GROUP[:] = [(dist.new_group(backend=dist.get_backend()), world_group)]
    return _GROUP[0][0]


def end() -> None:
    """Leave the process group (and drop the helpers' own group first, so that no gloo thread
    outlives it at exit)."""
    if _GROUP:
        group = _GROUP.pop()[0]
        if dist.is_initialized():
            dist.destroy_process_group(group)
    if dist.is_initialized():
        dist.destroy_process_group()


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous(), group=_group())
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=_group())
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
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=_group())
    return x


def max_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of `x` over the ranks (no gradient); `x` outside a process group."""
    if world()[1] == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.MAX, group=_group())
    return x


def from_rank0(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's `x` on every rank (no gradient): a draw that every rank must share, such as TS-TCC's
    time step, when each rank's RNG is seeded apart; `x` outside a process group."""
    if world()[1] == 1:
        return x
    x = x.detach().clone()
    dist.broadcast(x, src=0, group=_group())
    return x


def object_from_rank0(obj):
    """Rank 0's `obj` (any picklable value) on every rank; `obj` itself outside a process group."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_group())
    return box[0]


def rank_rows(n: int, rank: int, size: int, align: int = 1) -> tuple[int, int]:
    """[start, stop): rank `rank`'s contiguous share of `n` rows over `size` ranks, cut only at
    multiples of `align` (whole blocks of `align` rows, as even as they go; a rank may get none)."""
    blocks = -(-n // align)
    return min(n, blocks * rank // size * align), min(n, blocks * (rank + 1) // size * align)


def gather_rows(x: torch.Tensor, dst: int = 0) -> torch.Tensor | None:
    """Every rank's rows (n_r, ...) concatenated in rank order on rank `dst`, None on the others;
    `x` itself outside a process group. The ranks' row counts may differ (0 too: such a rank may
    pass any (0, ...) tensor of the same dimensions and dtype): each share is padded to the largest,
    gathered and trimmed. No gradient. On NCCL the rows travel through this rank's GPU."""
    rank, size = world()
    if size == 1:
        return x
    group = _group()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend(group) == "nccl" else torch.device("cpu")
    shape = torch.tensor([x.shape[0], *x.shape[1:]], dtype=torch.int64, device=device)
    shapes = [torch.empty_like(shape) for _ in range(size)]
    dist.all_gather(shapes, shape, group=group)
    counts = [int(s[0]) for s in shapes]
    trailing = torch.stack(shapes)[:, 1:].amax(0).tolist()  # a rank without rows may not know the width
    padded = torch.zeros([max(counts), *trailing], dtype=x.dtype, device=device)
    if x.shape[0]:
        padded[:x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(size)] if rank == dst else None
    dist.gather(padded, parts, dst=dst, group=group)
    if rank != dst:
        return None
    return torch.cat([part[:n] for part, n in zip(parts, counts)]).to(x.device)


def start(device: torch.device) -> tuple[torch.device, bool]:
    """Join the process group that torchrun describes ($WORLD_SIZE > 1, $RANK, $LOCAL_RANK, the
    rendezvous in $MASTER_ADDR/$MASTER_PORT): NCCL on CUDA, gloo on the CPU; each rank's device is
    cuda:$LOCAL_RANK on GPUs. Returns (the device to use, whether this call started the group, so
    that the caller ends it). Outside torchrun: (`device`, False). In a group started already (pretrain
    keeps it for the evaluation after training) it only picks the device."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return device, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, True


class Ranks:
    """The few decisions every rank must take alike (skip a step, stop, the budget's rate), each one
    collective; on a single process every call is local and free.

    They are host values, so on GPUs they travel through a gloo group of the same processes, on CPU
    tensors: an NCCL all-reduce of a flag would need a copy to the GPU and a read back, a
    synchronization every step (the stop-signal check runs once per step)."""

    def __init__(self, device: torch.device):
        self.rank, self.size = world()
        self.main = self.rank == 0
        self.device = device
        self._group = None
        if self.size > 1 and device.type != "cpu":
            self._group = dist.new_group(backend="gloo")  # every rank builds its Ranks at the same point

    def _reduce_max(self, value: float, dtype: torch.dtype) -> float:
        t = torch.tensor(value, dtype=dtype, device="cpu" if self._group is not None else self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self._group)
        return float(t.item())

    def any(self, flag: bool) -> bool:
        if self.size == 1:
            return flag
        return bool(self._reduce_max(float(flag), torch.float32))

    def max(self, value: float) -> float:
        if self.size == 1:
            return value
        return self._reduce_max(value, torch.float64)

    def objects(self, obj) -> list:
        """Every rank's `obj` (picklable), in rank order."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj, group=self._group)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


class _GlobalBatchNormFn(torch.autograd.Function):
    """BatchNorm with statistics over every rank, forward and backward in torch's fused BatchNorm
    kernels plus two small collectives (the CPU has no SyncBatchNorm kernels).

    Forward: each rank's per-channel mean and biased variance (BatchNorm's own statistics kernel), gathered
    and combined with the parallel-variance formula (stable where the mean is large against the
    spread), then the input normalized with the global statistics by ``batch_norm`` in inference
    form (one fused pass). Backward: the per-channel sums of dy and dy * x_hat from
    ``native_batch_norm_backward`` (one fused pass, its weight and bias gradients), all-reduced,
    and dx = a * dy + b * x + c per channel with N the global count:
    a = w / sigma, b = -a * sum(dy x_hat) / (N sigma), c = -a * sum(dy) / N - b * mean. The weight
    and bias get this rank's sums, as autograd through the unfused formula gives them (DDP then
    averages them over ranks)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, group):
        mean, var = torch.batch_norm_update_stats(x, None, None, 0.0)  # biased; 20x faster than var_mean on a CPU
        local = torch.cat([mean, var, mean.new_full((1,), x.numel() // x.shape[1])])
        every = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
        dist.all_gather(every, local, group=group)
        every = torch.stack(every)  # (ranks, 2C + 1)
        channels = x.shape[1]
        means, variances, counts = every[:, :channels], every[:, channels:2 * channels], every[:, -1:]
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / total  # biased, as BatchNorm normalizes
        y = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, mean, invstd, total)
        ctx.eps, ctx.group = eps, group
        ctx.mark_non_differentiable(mean, var, total)
        return y, mean, var, total

    @staticmethod
    def backward(ctx, dy, _mean, _var, _total):
        x, weight, mean, invstd, total = ctx.saved_tensors
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        dy = dy.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        _, sum_dy_xhat, sum_dy = torch.ops.aten.native_batch_norm_backward(
            dy, x, None, None, None, mean, invstd, True, ctx.eps, [False, True, True])
        sums = torch.cat([sum_dy, sum_dy_xhat])
        dist.all_reduce(sums, group=ctx.group)
        channels = x.shape[1]
        a = invstd if weight is None else invstd * weight
        b = -a * invstd * sums[channels:] / total
        c = -a * sums[:channels] / total - b * mean
        shape = [1, channels] + [1] * (x.dim() - 2)
        dx = torch.addcmul(c.view(shape), dy, a.view(shape)).addcmul_(x, b.view(shape))
        grad_weight = sum_dy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_dy if ctx.needs_input_grad[2] else None
        return dx, grad_weight, grad_bias, None, None


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over the samples of every rank, on any device (torch's
    SyncBatchNorm runs on GPUs only): the input is normalized with the global mean and biased
    variance, the gradients flow through them to every rank's samples, and the running statistics
    are updated with the unbiased variance, as BatchNorm does on one process (``_GlobalBatchNormFn``:
    torch's fused kernels and two small collectives a layer). Outside a process group, in eval mode,
    or without batch statistics it is plain BatchNorm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world()[1] > 1):
            return super().forward(x)
        dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):  # statistics and normalization in fp32
            y, mean, var, total = _GlobalBatchNormFn.apply(x.float(), self.weight, self.bias, self.eps, _group())
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * total / (total - 1).clamp_min(1.0), m)
        return y.to(dtype)


def global_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with every BatchNorm1d/2d/3d replaced by a GlobalBatchNorm sharing its parameters and
    statistics (the optimizer's parameters stay the same objects)."""
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        converted = global_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
