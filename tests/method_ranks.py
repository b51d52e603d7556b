"""One multi-process spawn that runs a function for every method on each rank: what the registry-wide
data-parallel tests (test_distributed_registry, test_ddp_unused_parameters) share."""
from __future__ import annotations

import datetime
import os
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, run, size: int, folder: str, names: list[str]) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(folder, 'store')}", rank=rank,
                            world_size=size, timeout=datetime.timedelta(seconds=120))
    from selfsup.distributed import end

    try:
        results = {}
        for name in names:
            try:
                results[name] = run(name, rank, size)
            except Exception:  # one method's failure is its own test's failure, not every method's
                results[name] = {"error": traceback.format_exc()}
                dist.barrier()  # the other rank may have failed elsewhere: meet before the next method
        torch.save(results, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        end()


def spawn_methods(run, names: list[str], folder: Path, size: int = 2) -> list[dict]:
    """``run(name, rank, size) -> dict`` for every name on each of `size` gloo processes (one spawn);
    returns each rank's {name: its dict, or {"error": traceback}}. `run` must be a module-level function."""
    mp.spawn(_worker, args=(run, size, str(folder), names), nprocs=size, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(size)]
