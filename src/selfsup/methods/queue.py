"""A FIFO queue of embeddings (MoCo's negative keys, NNCLR's support set), kept in buffers.

The entries, the write pointer and the fill count are registered buffers, so the queue is part of
the method's ``state_dict`` and of every checkpoint: a resumed run sees exactly the queue the
uninterrupted run would have seen. Updates are tensor operations only (no ``.item()``), so pushing
never waits on the device. Data parallel: every rank pushes the rows of every rank (rank-major, the
global batch order), so the ranks' queues stay identical to a single process's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class FeatureQueue(nn.Module):
    """Q rows of dimension D, oldest overwritten first.

    filled=True starts full of random unit vectors (MoCo: random negatives are harmless and the
    paper starts that way); filled=False starts empty and only the rows written so far count
    (NNCLR: a random vector must never be picked as a nearest neighbour).
    """

    def __init__(self, size: int, dim: int, filled: bool = True):
        super().__init__()
        if size < 1 or dim < 1:
            raise ConfigError(f"a queue needs a positive size and dim, got size={size}, dim={dim}.", "use e.g. 4096 entries.")
        entries = F.normalize(torch.randn(size, dim), dim=1) if filled else torch.zeros(size, dim)
        self.register_buffer("entries", entries)  # (Q, D)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next row to write
        self.register_buffer("count", torch.tensor(size if filled else 0, dtype=torch.long))  # valid rows

    @property
    def size(self) -> int:
        return self.entries.shape[0]

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Write the rows of x (n, D) at the pointer, wrapping around; only the newest Q are kept if n > Q.
        Under data parallelism the rows of every rank are written (each rank passes its own)."""
        from ..distributed import gather

        x = gather(x.detach())[-self.size:]
        n = x.shape[0]
        rows = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.size  # (n,)
        self.entries[rows] = x.to(self.entries.dtype)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.count.copy_(torch.clamp(self.count + n, max=self.size))

    def valid(self) -> torch.Tensor:
        """(Q,) bool: the rows written so far (all of them for a queue that starts full)."""
        return torch.arange(self.size, device=self.entries.device) < self.count

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D): for each row of z, the valid entry of highest cosine similarity
        (the nearest neighbour of z / |z| among unit entries); z / |z| itself while the queue is empty."""
        return nearest_neighbour(z, self.entries, self.valid())


@torch.no_grad()
def nearest_neighbour(z: torch.Tensor, support: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest neighbour by cosine similarity of each row of z (B, D) in support (Q, D), normalized.

    valid: (Q,) bool mask of usable rows; where no row is valid the normalized z itself is returned.
    """
    z = F.normalize(z.float(), dim=1)  # (B, D)
    support = F.normalize(support.float(), dim=1)  # (Q, D)
    with torch.autocast(device_type=z.device.type, enabled=False):  # a bf16 search would pick near-ties at random
        sim = z @ support.T  # (B, Q)
    if valid is not None:
        sim = sim.masked_fill(~valid, float("-inf"))
    picked = support[sim.argmax(dim=1)]  # (B, D)
    if valid is None:
        return picked
    return torch.where(valid.any(), picked, z)
