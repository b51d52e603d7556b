"""The collapse alarm: a cheap look at the step's own batch, every few steps.

A joint-embedding method can lower its loss while its representations collapse: to one point
(every image gets the same vector), or into a few dimensions (the rest carry nothing). Neither
shows in the loss, and both waste the rest of the run. Every ``collapse_check_every`` steps the
trainer hands this alarm the method's forward output (see ``methods/base.py``), so nothing is
recomputed, and it measures two things on the L2-normalized rows of the ``embeddings`` (the
projector outputs the objective acts on), or of the ``features`` for a method without a projector
(DINO, OBoW):

- ``collapse_std``: the per-dimension standard deviation over the batch, averaged over dimensions
  and multiplied by sqrt(dim), so that it does not depend on the width: about 1 for vectors spread
  evenly over the sphere, 0 for a point.
- ``collapse_rank``: the effective rank (Roy & Vetterli 2007; RankMe uses it too): exp of the
  entropy of the normalized singular values, between 1 and min(rows, dim).

Why the embeddings and not the backbone features: measured on Fashion-MNIST (convnet6, 64-d
projections), a SimSiam run without stop-gradient ends with projector outputs of effective rank
1.2-2.5 of 64, while its backbone features keep 10-20% of their dimensions, no fewer than a randomly
initialized ResNet-18 has on the same images (8%). Healthy projector outputs stayed at 7% or more
(SimCLR at lr 0.05; 12-40% for SimCLR, BYOL, MoCo v2, VICReg and SimSiam at the default lr, 11-30%
at initialization on a ResNet-18). The default alarm, 5% of min(rows, dim, 64), sits between; on
the features no fraction would. The 64 caps the bound for wide projectors: healthy embeddings of
256 to 8192 dimensions span a few dozen effective dimensions early in training, not a fixed share
of their width (BYOL on the fmnist-cpu recipe, 256-d: effective rank 7.4 at step 75, 2.9% of 256,
on its way to a kNN accuracy of 0.76), while collapsed ones stay near 1-3 whatever the width.

The rank comes from the eigenvalues of a (dim x dim) or (rows x rows) Gram matrix of at most
``MAX_ROWS`` rows (the squared singular values), decomposed on the CPU in float64 (under 10 ms on
one core for 256 x 2048; benchmarks/collapse_overhead.py measures the cost per step); eigenvalues
under the float32 round-off of the Gram matrix (matrix_rank's tolerance) count as zero. The alarm
fires once per run, after ``patience`` checks in a row below a threshold, so one odd batch does not
raise it. A method with neither output (MAE) is not checked.
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

MAX_ROWS = 256  # rows checked (view 0 first): bounds the eigen-decomposition at 256 x 256
RANK_CAP = 64  # the rank threshold is train.collapse_min_rank x min(rows, dim, RANK_CAP): see above


@torch.no_grad()
def collapse_stats(x: torch.Tensor) -> tuple[float, float, int]:
    """(std x sqrt(dim), effective rank, min(rows, dim)) of the L2-normalized rows of `x` (N, D, ...)."""
    x = F.normalize(x.detach()[:MAX_ROWS].flatten(1).float(), dim=1)  # (N, D)
    n, d = x.shape
    std = float(x.std(dim=0).mean()) * math.sqrt(d)
    with torch.autocast(device_type=x.device.type, enabled=False):
        gram = x.T @ x if d <= n else x @ x.T  # (min(N, D),)^2, eigenvalues = squared singular values
    eig = torch.linalg.eigvalsh(gram.double().cpu())
    eig = torch.where(eig > eig[-1] * max(n, d) * torch.finfo(torch.float32).eps, eig, 0.0)
    s = eig.sqrt()
    p = s / s.sum().clamp_min(1e-300)
    entropy = -float((p * torch.log(p.clamp_min(1e-300))).sum())
    return std, math.exp(entropy), min(n, d)


class CollapseAlarm:
    """``alarm(done, out)`` after a step returns the values to log when a check was due (else None),
    and once, when it fires, also a ``collapse_warning`` with the line it printed."""

    def __init__(self, every: int, min_std: float, min_rank: float, patience: int, print_fn=None):
        self.every, self.min_std, self.min_rank, self.patience = every, min_std, min_rank, patience
        self.low = 0  # checks in a row below a threshold
        self.fired = False
        self.print = print_fn or (lambda message: print(message, file=sys.stderr))

    def due(self, done: int) -> bool:
        return self.every > 0 and not self.fired and done % self.every == 0

    def __call__(self, done: int, out: dict) -> dict | None:
        name = "embeddings" if "embeddings" in out else "features"
        x = out.get(name)
        if not self.due(done) or not torch.is_tensor(x) or x.dim() < 2 or len(x) < 2:
            return None
        std, rank, bound = collapse_stats(x)
        record = {"collapse_std": std, "collapse_rank": rank}
        bound = min(bound, RANK_CAP)
        point, flat = std < self.min_std, rank < self.min_rank * bound
        self.low = self.low + 1 if (point or flat) else 0
        if self.low >= self.patience:
            self.fired = True
            what = []
            if point:
                what.append(f"their std x sqrt(dim) is {std:.3g} (alarm below train.collapse_min_std={self.min_std:g}): "
                            f"they are collapsing to a point")
            if flat:
                what.append(f"their effective rank is {rank:.3g} (alarm below train.collapse_min_rank={self.min_rank:g} "
                            f"x {bound} = {self.min_rank * bound:.3g}): they span few dimensions")
            message = (f"warning: the {name} collapse at step {done}, {self.low} checks in a row: {'; '.join(what)}. "
                       f"The loss can still fall; check the method's settings (stop-gradient, predictor, temperature, "
                       f"learning rate) before training longer.")
            self.print(message)
            record["collapse_warning"] = message
        return record


class OnlineKNN:
    """Online weighted kNN (train.monitor_every): a labelled bank of train samples votes for other,
    held-out train samples, through the encoder being trained (features in eval mode, mode restored)."""

    def __init__(self, dataset, stored, plugin, bank: int, queries: int, seed: int, device: torch.device, k: int = 20,
                 t: float = 0.07):
        g = torch.Generator().manual_seed(seed + 99)
        perm = torch.randperm(len(dataset), generator=g)
        bank = min(bank, len(dataset) - 1)
        queries = min(queries, len(dataset) - bank)
        self.bank_idx, self.query_idx = perm[:bank], perm[bank:bank + queries]
        self.stored, self.plugin, self.device = stored, plugin, device
        self.labels = dataset.labels.to(device)
        self.k, self.t = k, t

    def __call__(self, encoder, dtype) -> float:
        from ..evaluation.features import extract_features
        from ..evaluation.knn import knn_accuracy

        was_training = encoder.training
        amp = dtype is not None
        bank = extract_features(encoder, self.plugin.gather(self.stored, self.bank_idx), device=self.device, amp=amp)
        query = extract_features(encoder, self.plugin.gather(self.stored, self.query_idx), device=self.device, amp=amp)
        encoder.train(was_training)
        return float(knn_accuracy(bank, self.labels[self.bank_idx.to(self.labels.device)], query,
                                  self.labels[self.query_idx.to(self.labels.device)], k=self.k, temperature=self.t))
