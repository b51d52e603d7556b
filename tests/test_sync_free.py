"""A training step with ``train.nonfinite_check=device`` never makes the host wait for the device.

On a GPU a host read (``.item()``, ``bool(t)``, ``float(t)``, an op whose output size depends on the
data: ``nonzero``, boolean-mask indexing, ``unique``, ``masked_select``) or a tensor built from host
data and copied to the device blocks Python until every queued kernel has run, and the GPU then
idles while Python launches the next ones. Three checks:

- on any machine: a dispatcher-level probe (every aten op the step runs, on the CPU) finds none of
  those reads, and no tensor built from host data for a device (``torch.tensor(..., device=...)``),
  in the steps of a ``device`` run once its lazy state is built, for every image method (graph
  views read their graphs' sizes by design); the ``host`` mode's two reads per step (loss and
  gradient norm) are found, so the probe sees them;
- on CUDA: ``torch.cuda.set_sync_debug_mode`` counts no synchronization per step (skipped without CUDA);
- data parallel: a NaN on one rank only stops both ranks at the same step with the same state, in
  both modes (the device mode takes the code's maximum over the ranks on the device).
"""
from __future__ import annotations

import collections
import datetime
import os
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from selfsup import config as C
from selfsup import registry
from selfsup.errors import NonFiniteLossError
from selfsup.train import loop

# aten ops that wait for the device on CUDA: a scalar read, or an output whose size depends on values
_READS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim",
          "unique_consecutive", "repeat_interleave"}
_FROM_HOST = {"tensor", "as_tensor", "from_numpy"}

# Reads the probe cannot tell from a device read: a tensor that is on the CPU on every device.
ON_THE_CPU = {"mixed_barlow_twins": "methods/mixed_barlow_twins.py"}  # its mixing coefficient, drawn from the CPU RNG
OPTIONS = {"swav": ["method.queue_length=32", "method.queue_start=0"],  # a queue full after 2 steps: then no read
           "mae": ["backbone.name=vit_tiny", "backbone.patch_size=7", "backbone.dim=32", "backbone.depth=1",
                   "backbone.heads=2"]}

IMAGE_METHODS = ["barlow_twins", "byol", "dcl", "dclw", "dino", "mae", "mixed_barlow_twins", "moco_v2", "moco_v3",
                 "msbreg", "mugs", "nnclr", "simclr", "simsiam", "supcon", "swav", "vicreg"]


class _Probe(TorchDispatchMode):
    """Counts the host reads of the ops run while `on`, by op and by the selfsup line that caused them."""

    def __init__(self):
        super().__init__()
        self.on, self.reads = False, collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        masked = name == "index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()))
        if self.on and (name in _READS or masked):
            self.reads[(name, _caller())] += 1
        return func(*args, **(kwargs or {}))


class _FromHost(TorchFunctionMode):
    """Counts tensors built from host data for a device (``torch.tensor(..., device=...)``): on CUDA a
    copy that waits. (A CPU tensor for a logged scalar, built without a device, stays on the host.)"""

    def __init__(self):
        super().__init__()
        self.on, self.calls = False, collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.on and getattr(func, "__name__", "") in _FROM_HOST and kwargs.get("device") is not None:
            self.calls[(func.__name__, _caller())] += 1
        return func(*args, **kwargs)


def _caller() -> str:
    frames = [f for f in traceback.extract_stack() if "/selfsup/" in f.filename]
    return " <- ".join(f"{f.filename.split('/selfsup/')[-1]}:{f.lineno}" for f in frames[-2:][::-1]) or "?"


def _config(data, out, method, check, steps, extra=()):
    return C.load(overrides=[*OPTIONS.get(method, []), *extra, f"data.name={data}", f"out={out}", f"method.name={method}", f"train.steps={steps}",
                             "train.batch_size=16", "train.checkpoint_every=1000", "train.log_every=1000",
                             "train.progress=false", "train.precision=fp32", "train.threads=1",
                             *(["backbone.width=8"] if method != "mae" else []),
                             "train.collapse_check_every=0", f"train.nonfinite_check={check}"])


def host_reads(data, out, method: str, check: str, steps: int = 6, first: int = 3, extra=()):
    """The host reads and device tensors built from host data of the steps `first`..`steps` - 2
    (0-based) of a run: the first steps build lazy state (optimizer moments, a queue filling up), the
    last one logs and exports."""
    probe, from_host = _Probe(), _FromHost()
    seed_of = loop.step_seed

    def mark(seed, step):  # the loop calls this once per step, before the step's views
        probe.on = from_host.on = first <= step < steps - 1
        return seed_of(seed, step)

    loop.step_seed = mark
    try:
        with from_host, probe:
            loop.train(_config(data, out, method, check, steps, extra))
    finally:
        loop.step_seed = seed_of
    allowed = ON_THE_CPU.get(method)
    reads = collections.Counter({k: n for k, n in probe.reads.items() if not (allowed and k[1].startswith(allowed))})
    return reads, from_host.calls


def test_the_probe_sees_the_host_modes_two_reads_per_step(fmnist_npz, tmp_path):
    # SGD: torch's foreach AdamW reads its step counts, CPU tensors on every device, on the CPU
    reads, _ = host_reads(fmnist_npz, tmp_path / "r", "simclr", "host", steps=5, first=1, extra=["optim.name=sgd"])
    assert sorted(reads.values()) == [3, 3] and all(op == "_local_scalar_dense" for op, _ in reads), reads


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_a_device_checked_step_reads_nothing_on_the_host(fmnist_npz, tmp_path, method):
    reads, calls = host_reads(fmnist_npz, tmp_path / "r", method, "device")
    assert not reads, f"{method}: host reads in the step: {dict(reads)}"
    assert not calls, f"{method}: tensors built from host data in the step: {dict(calls)}"


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_colour_views_read_nothing_on_the_host(tmp_path, method):
    """RGB images: hue, saturation, grayscale, blur and solarization (BYOL), DINO's local crops."""
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "rgb.npz"
    np.savez(data, x=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 64))
    reads, calls = host_reads(data, tmp_path / "r", method, "device")
    assert not reads and not calls, (dict(reads), dict(calls))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="counts CUDA synchronizations; needs a GPU")
def test_no_cuda_synchronization_inside_a_step(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.integers(0, 256, (512, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 512))
    counts = {}
    for steps in (4, 8):
        config = C.load(overrides=[f"data.name={data}", f"out={tmp_path / str(steps)}", "method.name=simclr",
                                   "backbone.name=resnet18", "backbone.stem=cifar", f"train.steps={steps}",
                                   "train.batch_size=64", "train.device=cuda", "train.precision=bf16",
                                   "train.checkpoint_every=1000", "train.log_every=1000", "train.progress=false",
                                   "train.collapse_check_every=0"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                loop.train(config)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts[steps] = sum("synchroniz" in str(w.message) for w in caught)
    assert counts[8] == counts[4], f"{(counts[8] - counts[4]) / 4} synchronizations per step"


def _nan_on_rank1_worker(rank: int, size: int, folder: str, data: str, check: str) -> None:
    os.environ.update(WORLD_SIZE=str(size), RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=120))
    cls = registry.get("method", "byol")
    forward = cls.forward

    def faulty(self, batch):  # rank 1's loss is NaN at step 3 (progress 2/6)
        out = forward(self, batch)
        if rank == 1 and round(batch.progress * 6) == 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    result = {}
    try:
        clean = _config(data, f"{folder}/clean", "byol", check, 6)
        loop.train(clean, stop_after=2)
        cls.forward = faulty
        try:
            loop.train(_config(data, f"{folder}/bad", "byol", check, 6))
            result["error"] = None
        except NonFiniteLossError as exc:
            result["error"] = str(exc)
    finally:
        cls.forward = forward
        torch.save(result, f"{folder}/rank{rank}.pt")
        dist.destroy_process_group()


@pytest.mark.parametrize("check", ["host", "device"])
def test_a_nan_on_one_rank_stops_every_rank_with_the_last_good_state(fmnist_npz, tmp_path, check):
    mp.spawn(_nan_on_rank1_worker, args=(2, str(tmp_path), str(fmnist_npz), check), nprocs=2, join=True)
    errors = [torch.load(tmp_path / f"rank{r}.pt")["error"] for r in range(2)]
    assert all(e is not None and "at step 3;" in e and "step-00000002.pt" in e for e in errors), errors
    saved = torch.load(tmp_path / "bad" / "checkpoints" / "step-00000002.pt", weights_only=True)
    clean = torch.load(tmp_path / "clean" / "checkpoints" / "step-00000002.pt", weights_only=True)
    for name, value in clean["method"].items():  # weights, EMA teacher, BatchNorm statistics: as after step 2
        assert torch.equal(saved["method"][name], value), name
