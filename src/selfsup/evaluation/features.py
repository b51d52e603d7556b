"""Frozen-encoder features, extracted once per (encoder weights, dataset split) and cached.

Every protocol works on these features, so an evaluation costs one forward pass over the data;
the cache makes re-running a protocol (or another one) on the same encoder free. Extraction runs
in fixed chunks of FORWARD_CHUNK rows, so features do not depend on the batch size or the thread
count (see :func:`extract_features`), and :func:`extract_to_file` writes them resumably (``embed``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..files import display_path
from ..samples import count, take, tensors, to
from ..errors import ConfigError

# Rows per forward pass. Every forward sees exactly this many rows (the last chunk is padded), so
# a row's features never depend on the batch size asked for: oneDNN picks its kernels by input
# shape, and batches of one or two rows take other code paths than larger ones (measured: convnet6
# and resnet18 in fp32 differ in the last bits at batch 1, vit_tiny in bf16 at batches 1 and 2).
# Changing it changes the bits of every embedding, so it is part of the embed resume key.
FORWARD_CHUNK = 64
PROGRESS_FORMAT = "selfsup-features-progress/1"  # the progress record of extract_to_file


def _autocast(device: torch.device, amp: bool):
    # bf16 autocast: about 2.5x faster on CPUs with AMX, and the same precision the trainer uses.
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _block_rows(batch_size: int) -> int:
    """`batch_size` rounded up to a whole number of forward chunks (at least one)."""
    try:
        rows = 0 if isinstance(batch_size, bool) else operator.index(batch_size)  # ints, numpy ints
    except TypeError:
        rows = 0
    if rows < 1:
        raise ConfigError(f"batch size {batch_size!r} is not a positive integer.", "pass e.g. --batch-size 256.")
    return -(-rows // FORWARD_CHUNK) * FORWARD_CHUNK


@contextlib.contextmanager
def _frozen(encoder: nn.Module, device: torch.device):
    """The encoder on `device` in eval mode without autograd; its train/eval mode is restored after."""
    first = next(iter(encoder.parameters()), None)
    if first is not None and first.device != device:
        encoder.to(device)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        encoder.train(was_training)


def _forward_block(encoder: nn.Module, samples, start: int, stop: int, device: torch.device, amp: bool) -> torch.Tensor:
    """Features of samples[start:stop] (`start` a multiple of FORWARD_CHUNK) as float32 on the CPU.

    `samples` is a tensor or a ragged batch (``selfsup.samples``): every forward takes FORWARD_CHUNK
    samples, the last chunk padded with copies of its first sample."""
    out = []
    for first in range(start, stop, FORWARD_CHUNK):
        n = min(FORWARD_CHUNK, stop - first)
        index = torch.arange(first, first + n)
        if n < FORWARD_CHUNK:  # pad with copies of the first row: the shape, hence the kernels, stay fixed
            index = torch.cat([index, index[:1].expand(FORWARD_CHUNK - n)])
        x = to(take(samples, index), device, non_blocking=True)
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            out.append(encoder(x)[:n].float().cpu())
    return torch.cat(out)


class _RowProgress:
    """Progress lines for a long extraction (src/selfsup/progress.py), decided after the first
    block: work expected to take under SILENT_SECONDS says nothing (tests, small sets, a cache hit)."""

    SILENT_SECONDS = 3.0

    def __init__(self, label: str | None, total: int, done: int = 0):
        import time

        self.label, self.total, self.done = label, total, done
        self.t0, self.bar, self.decided = time.perf_counter(), None, not label

    def advance(self, rows: int) -> None:
        import time

        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
        elif not self.decided:
            self.decided = True
            left = (time.perf_counter() - self.t0) / rows * (self.total - self.done)
            if left > self.SILENT_SECONDS:
                from ..progress import Progress

                self.bar = Progress(self.total, self.label, unit="rows", initial=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def extract_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                     device: str | torch.device = "cpu", amp: bool = False, progress: str | None = None) -> torch.Tensor:
    """Features of `images` (N, C, H, W) uint8 (or any input the encoder takes) -> float32 (N, D) on CPU.

    The encoder runs in eval mode without gradients (its train/eval mode is restored afterwards);
    it is moved to `device` when its parameters live elsewhere. `batch_size` is how many images
    go to the device at once (rounded up to a multiple of FORWARD_CHUNK); the forward passes
    themselves always take FORWARD_CHUNK rows at fixed offsets.

    Determinism: on the CPU the result is bit-identical across `batch_size`, across torch thread
    counts and across reruns (tests/test_output_determinism.py), for a given torch build and CPU
    instruction set; it differs between fp32 and `amp` (bf16), and between devices. On CUDA the
    fixed shapes keep cuDNN's choice stable within a process, but bit equality is not promised.
    `progress`: a label (e.g. "features of fashion-mnist test") for progress lines on stderr when
    the extraction takes more than a few seconds; None is silent.
    """
    return _extract_rows(encoder, images, 0, count(images), batch_size, device, amp, progress)


def _extract_rows(encoder: nn.Module, samples, first: int, last: int, batch_size: int, device, amp: bool,
                  progress: str | None) -> torch.Tensor:
    """Features of samples[first:last] (`first` a multiple of FORWARD_CHUNK), see extract_features."""
    device = torch.device(device)
    rows = _block_rows(batch_size)
    if last <= first:
        return torch.zeros(0, getattr(encoder, "dim", 0))
    report = _RowProgress(progress, last - first)
    chunks = []
    with _frozen(encoder, device):
        for start in range(first, last, rows):
            chunks.append(_forward_block(encoder, samples, start, min(start + rows, last), device, amp))
            report.advance(len(chunks[-1]))
    report.close()
    # torch.cat outside inference mode gives an ordinary tensor that autograd (the linear probe) accepts.
    return torch.cat(chunks)


_SHARES: list = []  # the RankShare rank 0 is inside (cached_features asks it)


class RankShare:
    """Feature extraction split over the ranks of a torchrun launch, for evaluation: every rank
    builds one with the same encoder weights and the same `datasets` (the train and test splits);
    rank 0 enters it (``with share:``) and runs the protocols and the report as one process would,
    while every other rank calls :meth:`serve`. Whenever rank 0's :func:`cached_features` misses its
    cache for one of `datasets` with this encoder, it broadcasts which, each rank extracts a
    contiguous share of the rows (cut at multiples of FORWARD_CHUNK, so every forward pass holds
    the rows it holds on one process: the features are bit-identical to one process's on the same
    CPU), and rank 0 gathers them in row order. Leaving the ``with`` (also by an exception) tells
    the others to stop; they write nothing. Outside a process group it does nothing, and
    ``main`` is True."""

    def __init__(self, encoder: nn.Module, datasets, device: str | torch.device):
        from ..distributed import world

        self.rank, self.size = world()
        self.main = self.rank == 0
        self.encoder, self.device = encoder, torch.device(device)
        self.datasets = [d for d in datasets if d is not None]

    def __enter__(self) -> "RankShare":
        if self.size > 1:
            _SHARES.append(self)
        return self

    def __exit__(self, *exc) -> None:
        from ..distributed import object_from_rank0

        if self.size > 1:
            _SHARES.remove(self)
            object_from_rank0(None)  # the other ranks stop serving

    def serve(self) -> None:
        """On ranks other than 0: take part in rank 0's extractions until it leaves the share."""
        from ..distributed import object_from_rank0

        while (request := object_from_rank0(None)) is not None:
            index, batch_size, amp = request
            self._extract(self.datasets[index], batch_size, amp, None)

    def extract(self, encoder: nn.Module, dataset, batch_size: int, amp: bool, progress: str | None) -> torch.Tensor | None:
        """On rank 0: the features of `dataset`, extracted by every rank; None when this share does
        not cover it (another encoder or dataset: the caller extracts alone)."""
        from ..distributed import object_from_rank0

        index = next((i for i, d in enumerate(self.datasets) if d is dataset), None)
        if encoder is not self.encoder or index is None:
            return None
        object_from_rank0((index, batch_size, amp))
        return self._extract(dataset, batch_size, amp, progress)

    def _extract(self, dataset, batch_size: int, amp: bool, progress: str | None) -> torch.Tensor | None:
        from ..distributed import gather_rows, rank_rows

        first, last = rank_rows(count(dataset.samples), self.rank, self.size, FORWARD_CHUNK)
        return gather_rows(_extract_rows(self.encoder, dataset.samples, first, last, batch_size, self.device, amp,
                                         progress))


def _features_of(encoder: nn.Module, dataset, batch_size: int, device, amp: bool, progress: str | None) -> torch.Tensor:
    """extract_features of `dataset.samples`, split over the ranks inside a RankShare that covers it."""
    if _SHARES:
        features = _SHARES[-1].extract(encoder, dataset, batch_size, amp, progress)
        if features is not None:
            return features
    return extract_features(encoder, dataset.samples, batch_size, device, amp, progress)


def extract_to_file(encoder: nn.Module, images: torch.Tensor, work: str | os.PathLike, key: str,
                    batch_size: int = 1024, device: str | torch.device = "cpu", amp: bool = False,
                    progress: str | None = None) -> np.ndarray:
    """Features of `images` appended to the raw float32 file `work` block by block; resumable.

    After each block the rows are written and fsynced, then ``<work>.json`` (the progress record:
    `key`, rows done, total, dim) is replaced atomically. A process killed at any moment therefore
    leaves a record that only counts rows fully on disk; a later call with the same `key` cuts off
    whatever follows them (a block written but not yet recorded) and continues from there, and
    because rows are computed in fixed chunks (see :func:`extract_features`) the finished file is
    byte-identical to an uninterrupted one, whatever `batch_size` either call used. A record with
    another key (other weights, data, device or torch version), or a damaged one, starts over.
    `key` must cover everything the features depend on. Returns the (N, D) rows, memory-mapped.

    In a process group (torchrun) every rank calls it: the ranks take blocks of `batch_size` rows
    in turn (rank r the r-th block of each round of N blocks), rank 0 gathers each round in row
    order and alone writes the file and the record; it returns None on the other ranks. Blocks
    start at multiples of FORWARD_CHUNK, so the file holds one process's bytes (on the same CPU), and
    a partial file resumes with any number of processes.
    """
    from ..distributed import gather_rows, object_from_rank0, world
    from ..files import atomic_write

    device = torch.device(device)
    rows = _block_rows(batch_size)
    rank, size = world()
    work = Path(work)
    record = work.with_name(work.name + ".json")
    total = count(images)
    done, dim = object_from_rank0(_resume_point(work, record, key, total) if rank == 0 else None)
    if done and rank == 0:
        print(f"resuming from {display_path(work)}: {done} of {total} rows were done", file=sys.stderr)
    with open(work, "r+b" if done else "wb") if rank == 0 else contextlib.nullcontext() as f:
        if dim is not None and f is not None:
            f.truncate(done * dim * 4)
            f.seek(done * dim * 4)
        if done < total:
            report = _RowProgress(progress if rank == 0 else None, total, done)
            with _frozen(encoder, device):
                for start in range(done, total, rows * size):  # each rank a block of `rows` in turn
                    first = min(start + rank * rows, total)
                    last = min(first + rows, total)
                    part = _forward_block(encoder, images, first, last, device, amp) if first < last else torch.zeros(0, 0)
                    block = gather_rows(part)
                    if rank != 0:
                        continue
                    block = block.numpy()
                    report.advance(len(block))
                    dim = block.shape[1]
                    f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
                    f.flush()
                    os.fsync(f.fileno())
                    state = {"format": PROGRESS_FORMAT, "key": key, "rows": start + len(block), "total": total, "dim": dim}
                    atomic_write(record, lambda tmp, state=state: Path(tmp).write_text(json.dumps(state)))
            report.close()
    if rank != 0:
        return None
    if total == 0:
        return np.zeros((0, getattr(encoder, "dim", 0)), np.float32)
    return np.memmap(work, dtype="<f4", mode="r", shape=(total, dim))


def _resume_point(work: Path, record: Path, key: str, total: int) -> tuple[int, int | None]:
    """(rows already in `work`, dim) from a matching progress record, else (0, None)."""
    try:
        state = json.loads(record.read_text())
        rows, dim = int(state["rows"]), int(state["dim"])
        ok = (state.get("format") == PROGRESS_FORMAT and state.get("key") == key and state.get("total") == total
              and 0 < rows <= total and (rows % FORWARD_CHUNK == 0 or rows == total) and dim > 0
              and work.stat().st_size >= rows * dim * 4)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing or damaged record
        ok = False
    return (rows, dim) if ok else (0, None)


def weights_hash(encoder: nn.Module) -> str:
    """sha256 over every tensor of the encoder (parameters, buffers and normalization constants)."""
    digest = hashlib.sha256()
    tensors = dict(encoder.state_dict())
    # Encoder keeps mean/std as non-persistent buffers; they change the features, so hash them too.
    tensors.update({f"buffer:{name}": b for name, b in encoder.named_buffers()})
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return digest.hexdigest()


def _data_hash(samples) -> str:
    # Hashing the pixels or table values (about 0.1 s for 47 MB) guards against two datasets sharing a name.
    digest = hashlib.sha256()
    for t in tensors(samples):
        x = t.detach().cpu().contiguous()
        digest.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return digest.hexdigest()


class FeatureCache:
    """Float32 feature matrices stored as ``<key>.npy`` files in `directory`, written atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def key(self, encoder: nn.Module, dataset, split_key: str | None = None, amp: bool = False) -> str:
        parts = [weights_hash(encoder), str(dataset.name), str(split_key or ""), str(len(dataset)),
                 _data_hash(dataset.samples), f"amp={bool(amp)}"]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            return None  # a damaged cache file is only a cache miss; it is rewritten below

    def put(self, key: str, features: torch.Tensor) -> Path:
        from ..files import atomic_write  # readers never see a half-written file

        array = features.detach().cpu().float().numpy()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npy" to the temp name
                np.save(handle, array, allow_pickle=False)

        self.directory.mkdir(parents=True, exist_ok=True)
        return atomic_write(self.path(key), write)


def cached_features(encoder: nn.Module, dataset, split_key: str | None = None,
                    cache_dir: str | os.PathLike | None = None, batch_size: int = 1024, device: str | torch.device = "cpu",
                    amp: bool = False, progress: str | None = None) -> torch.Tensor:
    """Features (N, D) float32 of `dataset.samples`, from `cache_dir` when this encoder saw this split before.

    `cache_dir=None` disables caching. The key covers the encoder's weights, the dataset name,
    `split_key` (optional: the pixel hash already tells splits apart), its length and pixels, and
    `amp`, so any change there re-extracts. Inside a :class:`RankShare` (rank 0 of a torchrun launch)
    an extraction is split over the ranks.
    """
    if cache_dir is None:
        return _features_of(encoder, dataset, batch_size, device, amp, progress)
    cache = FeatureCache(cache_dir)
    key = cache.key(encoder, dataset, split_key, amp)
    features = cache.get(key)
    if features is None or len(features) != len(dataset):
        features = _features_of(encoder, dataset, batch_size, device, amp, progress)
        cache.put(key, features)
    return features
