"""Feature extraction split over 2 gloo processes (one spawn, a tiny convnet): evaluation's
``cached_features`` inside a ``RankShare`` and ``embed``'s ``extract_to_file`` give rank 0 the
features one process computes, bit for bit, for row counts that do not split evenly (a rank with no
rows at all included); the other rank gets nothing and writes nothing.

The shares are cut at multiples of FORWARD_CHUNK, so every forward pass holds the same rows at the
same positions as on one process (the last chunk padded alike): BatchNorm in eval mode is per
sample, and the same input shapes pick the same kernels, so equality is exact, not approximate.
"""
from __future__ import annotations

import datetime
import os
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfsup.distributed import rank_rows
from selfsup.evaluation.features import FORWARD_CHUNK, cached_features, extract_features, extract_to_file

SIZES = (1, 36, 64, 130, 200)  # with chunks of 64 over 2 ranks: 36 leaves rank 1 nothing, 130 and 200 split unevenly


def encoder():
    from selfsup.backbones.base import build_backbone

    torch.manual_seed(0)
    return build_backbone("convnet4", in_channels=1, image_size=16, width=8).eval()


def samples(n: int) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(n))


def _worker(rank: int, store: str, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=120))
    from selfsup.distributed import end
    from selfsup.evaluation.features import RankShare

    try:
        net = encoder()
        datasets = [SimpleNamespace(samples=samples(n)) for n in SIZES]
        out = {}
        share = RankShare(net, datasets, "cpu")
        if share.main:
            with share:
                for n, data in zip(SIZES, datasets):
                    out[f"share{n}"] = cached_features(net, data, batch_size=64)
                out["other"] = cached_features(net, SimpleNamespace(samples=samples(3)))  # not shared: rank 0 alone
        else:
            share.serve()
        mine = os.path.join(folder, f"rank{rank}")  # each rank names its own folder: rank 1's must stay empty
        os.makedirs(mine)
        for n, data in zip(SIZES, datasets):
            got = extract_to_file(net, data.samples, os.path.join(mine, f"work{n}"), key="k", batch_size=64)
            out[f"file{n}"] = None if got is None else torch.from_numpy(np.array(got))
        torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        end()


def test_rank_rows_cover_every_row_once_at_chunk_boundaries():
    for n in (0, 1, 63, 64, 65, 130, 1000):
        for size in (1, 2, 3, 5):
            cuts = [rank_rows(n, r, size, FORWARD_CHUNK) for r in range(size)]
            assert cuts[0][0] == 0 and cuts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
            assert all(start % FORWARD_CHUNK == 0 or start == n for start, _ in cuts)


def test_two_ranks_extract_what_one_process_extracts(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(work)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / "work" / f"rank{r}.pt", weights_only=False) for r in range(2))
    net = encoder()
    for n in SIZES:
        mine = extract_features(net, samples(n), batch_size=64)
        assert torch.equal(first[f"share{n}"], mine), n
        assert torch.equal(first[f"file{n}"], mine), n
        assert second[f"file{n}"] is None
    assert torch.equal(first["other"], extract_features(net, samples(3)))
    assert "share1" not in second
    # rank 0 alone wrote the work files and their progress records
    assert sorted(os.listdir(work / "rank0")) == sorted([f"work{n}" for n in SIZES] + [f"work{n}.json" for n in SIZES])
    assert os.listdir(work / "rank1") == []
