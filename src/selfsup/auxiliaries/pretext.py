"""ScatSimCLR's pretext-task regularizer: predict the rotation or jigsaw permutation of an image."""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..losses.precision import full_precision
from ..methods.base import Batch, Method
from ..registry import register
from .base import Auxiliary

TASKS = ("rotation", "jigsaw")
APPLY_TO = ("copies", "views")
PERMUTATION_SEED = 0  # the fixed jigsaw permutation set is a function of (grid, count) and this seed
CANDIDATE_POOL = 100_000  # grids above 3x3 pick their permutations from this many random ones ((4x4)! is too many)


# ---------------------------------------------------------------- transforms (pure, batched)

def rotate(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate each image of x (N, C, S, S) by k[i] * 90 degrees counterclockwise (``torch.rot90``
    over the (H, W) axes); k: (N,) int64 in 0..3. No loop over samples: one ``where`` per angle."""
    if x.shape[-1] != x.shape[-2]:
        raise ConfigError(f"the rotation pretext task needs square views, got {tuple(x.shape[-2:])}.",
                          "use square views (views.size) or tasks=[jigsaw].")
    out = x
    for r in (1, 2, 3):
        out = torch.where((k == r).view(-1, 1, 1, 1), torch.rot90(x, r, dims=(2, 3)), out)
    return out


def shuffle_tiles(x: torch.Tensor, order: torch.Tensor, grid: int) -> torch.Tensor:
    """Cut each image of x (N, C, H, W) into grid x grid tiles (raster order) and put tile
    ``order[i, p]`` at position p; order: (N, grid * grid) int64. One gather over tiles, no loop.

    Tiles are ``H // grid`` by ``W // grid`` pixels; the bottom and right rows and columns that do
    not fill a tile (H or W not divisible by `grid`) stay where they are.
    """
    N, C, H, W = x.shape
    th, tw = H // grid, W // grid
    if th == 0 or tw == 0:
        raise ConfigError(f"jigsaw_grid={grid} does not fit views of {H}x{W} pixels.", "use a smaller jigsaw_grid.")
    body = x[:, :, :grid * th, :grid * tw]
    tiles = body.reshape(N, C, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(N, grid * grid, C, th, tw)
    tiles = tiles.gather(1, order[:, :, None, None, None].expand(-1, -1, C, th, tw))  # (N, g*g, C, th, tw)
    body = tiles.reshape(N, grid, grid, C, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(N, C, grid * th, grid * tw)
    if grid * th == H and grid * tw == W:
        return body
    out = x.clone()
    out[:, :, :grid * th, :grid * tw] = body
    return out


@lru_cache(maxsize=8)
def _permutation_set(n_tiles: int, count: int, seed: int) -> torch.Tensor:
    candidates = _candidates(n_tiles, seed)  # (M, n_tiles) int8
    columns = candidates.T.contiguous()  # (n_tiles, M): reductions over the short axis are faster

    def hamming(index: int) -> torch.Tensor:  # (M,) distance of every candidate to candidates[index]
        return (columns != columns[:, index:index + 1]).to(torch.uint8).sum(0, dtype=torch.uint8).int()

    g = torch.Generator().manual_seed(seed)
    first = int(torch.randint(len(candidates), (1,), generator=g))
    nearest = hamming(first)  # (M,) Hamming distance to the closest chosen one
    total = nearest.clone()  # (M,) summed Hamming distance to the chosen ones
    chosen = [first]
    for _ in range(count - 1):
        # the farthest candidate: largest distance to its nearest chosen permutation, ties by the
        # largest summed distance, then the lowest index (argmax returns the first maximum)
        score = nearest * (n_tiles * count + 1) + total
        score[chosen] = -1
        chosen.append(int(score.argmax()))
        distance = hamming(chosen[-1])
        nearest, total = torch.minimum(nearest, distance), total + distance
    return candidates[chosen].long()


def _candidates(n_tiles: int, seed: int) -> torch.Tensor:
    if n_tiles <= 9:  # up to 3x3 (9! = 362880): every permutation, built by inserting one element at a time
        perms = torch.zeros(1, 0, dtype=torch.int8)
        for k in range(n_tiles):
            new = torch.full((len(perms), 1), k, dtype=torch.int8)
            perms = torch.cat([torch.cat([perms[:, :i], new, perms[:, i:]], 1) for i in range(k + 1)])
        return perms
    g = torch.Generator().manual_seed(seed + 1)
    return torch.rand(CANDIDATE_POOL, n_tiles, generator=g).argsort(dim=1).to(torch.int8)


def max_hamming_permutations(grid: int, count: int, seed: int = PERMUTATION_SEED) -> torch.Tensor:
    """``count`` permutations of grid * grid tiles, (count, grid * grid) int64, far apart in Hamming distance.

    Greedy farthest-point selection, after Noroozi and Favaro (arXiv:1603.09246, Algorithm 1):
    start from one permutation drawn with `seed`, then repeatedly add the candidate whose Hamming
    distance to its nearest chosen permutation is largest (ties: the largest summed distance).
    Their algorithm ranks by the summed distance alone, which can admit two permutations one
    swap apart; the nearest-distance rank keeps every pair of classes far apart. Deterministic:
    the same arguments give the same set.
    """
    return _permutation_set(grid * grid, count, seed).clone()


@full_precision
def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of logits (N, K) against labels (N,) in float32, and the accuracy (detached)."""
    return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).float().mean().detach()


def _head(in_dim: int, hidden_dim: int, n_classes: int, dropout: float) -> nn.Sequential:
    """The authors' rotation head: Linear-ReLU-Dropout, Linear-ReLU-Dropout, Linear (512, 128 wide)."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, hidden_dim // 4), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim // 4, n_classes))


# ---------------------------------------------------------------- the auxiliary

@register("auxiliary", "pretext")
class Pretext(Auxiliary):
    """Classify which pretext transform was applied to an image from its backbone features h.

    ScatSimCLR regularizes SimCLR with a pretext task, ``L = L_contrastive + lambda * L_pretext``:
    a small classifier on the representation h (not the projection z) predicts the parameter of
    a transform, the rotation angle (0/90/180/270 degrees, 4-way cross-entropy) or the jigsaw
    permutation (one of P fixed permutations, P-way cross-entropy). With both ``tasks`` the two
    cross-entropies are summed.

    Where the transform goes (``apply_to``). In the authors' code the pretext inputs are extra
    copies: the contrastive pair stays as it is, and separately augmented rotated (or tiled)
    copies of the image go through the same encoder. ``"copies"`` (default) does that: ``before``
    draws one label per image and task and records it in ``batch.params[0]`` as
    ``"rotation_copy"`` / ``"jigsaw_copy"`` (int64); ``forward`` transforms a copy of view 0 (an
    augmented view, which is distributed like the authors' augmented transformed image: crop,
    flip and colour commute with the transform in distribution) and encodes it with the
    method's backbone, B extra images per task and step. ``"views"`` transforms the views
    themselves in place (every view, jigsaw first, then rotation), records the labels as
    ``"rotation"`` / ``"jigsaw"`` in ``batch.params[i]`` and classifies the method's own
    ``features``, at no extra encoder cost; the method's objective then also has to match
    differently rotated views, which is a different regularizer from the paper's.

    Deviations from the paper, for small images and CPUs: the authors feed all four rotations of
    every image (4B extra images); here each image gets one random rotation, an unbiased
    estimate of the same loss at a quarter of the cost. Their jigsaw follows Noroozi and Favaro's
    context-free network, each of the 9 tiles encoded separately (9B extra images) and the tile
    features concatenated; here the tiles are shuffled inside one image that is encoded once
    (tiles of a 28 px image are 9 px, too small for the encoder on their own). The permutation
    set is Noroozi and Favaro's maximal-Hamming-distance set, 35 permutations as in the authors'
    config, built deterministically and stored as the ``permutations`` buffer. Heads are
    ``hidden_dim``, ``hidden_dim // 4`` wide with dropout 0.5 (the authors' rotation head, 512 and
    128), also for jigsaw. The default weight 0.3 is ``lambda`` in the authors' released config.
    """

    requires = ("pixels",)  # rotations, jigsaw tiles and crop parameters are pixel operations (see the docstring)
    paper = ("Kinakh, Taran, Voloshynovskiy. ScatSimCLR: self-supervised contrastive learning with pretext task "
             "regularization for small-scale datasets. ICCV Workshops 2021, arXiv:2108.13939")
    needs = ("features",)
    default_weight = 0.3

    def __init__(self, method: Method, tasks: tuple[str, ...] = ("rotation",), apply_to: str = "copies",
                 jigsaw_grid: int = 3, n_permutations: int | None = None, hidden_dim: int = 512, dropout: float = 0.5):
        super().__init__(method)
        tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        if not tasks or any(t not in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
            raise ConfigError(f"auxiliary pretext tasks={list(tasks)} is not a list of distinct tasks.",
                              f"choose one or both of: {', '.join(TASKS)}.")
        if apply_to not in APPLY_TO:
            raise ConfigError(f"auxiliary pretext apply_to={apply_to!r} is not valid.", f"choose one of: {', '.join(APPLY_TO)}.")
        if not isinstance(jigsaw_grid, int) or jigsaw_grid < 2:
            raise ConfigError(f"auxiliary pretext jigsaw_grid={jigsaw_grid!r} must be an integer >= 2.", "use 2 (2x2 tiles) or 3.")
        n_tiles = jigsaw_grid * jigsaw_grid
        available = min(math.factorial(n_tiles), CANDIDATE_POOL) if n_tiles > 9 else math.factorial(n_tiles)
        if n_permutations is None:
            n_permutations = min(35, available)
        if not 2 <= n_permutations <= available:
            raise ConfigError(f"auxiliary pretext n_permutations={n_permutations} is out of range for a "
                              f"{jigsaw_grid}x{jigsaw_grid} grid.", f"use 2 to {available} permutations.")
        if hidden_dim < 4 or not 0 <= dropout < 1:
            raise ConfigError(f"auxiliary pretext needs hidden_dim >= 4 and 0 <= dropout < 1, got {hidden_dim}, {dropout}.",
                              "use e.g. hidden_dim=512, dropout=0.5.")
        self.tasks, self.apply_to, self.grid = tasks, apply_to, jigsaw_grid
        # A plain reference, not a submodule: the backbone's weights belong to (and are saved with) the method.
        object.__setattr__(self, "backbone", method.backbone)
        dim = method.backbone.dim
        n_classes = {"rotation": 4, "jigsaw": n_permutations}
        self.heads = nn.ModuleDict({t: _head(dim, hidden_dim, n_classes[t], dropout) for t in tasks})
        self.register_buffer("permutations", max_hamming_permutations(jigsaw_grid, n_permutations))  # (P, g*g)

    def transform(self, x: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """x (N, C, H, W) with the tasks in ``labels`` applied: jigsaw first, then rotation."""
        if "jigsaw" in labels:
            x = shuffle_tiles(x, self.permutations[labels["jigsaw"]], self.grid)
        if "rotation" in labels:
            x = rotate(x, labels["rotation"])
        return x

    def _draw(self, n: int, device: torch.device) -> dict[str, torch.Tensor]:
        classes = {"rotation": 4, "jigsaw": len(self.permutations)}
        return {t: torch.randint(classes[t], (n,), device=device) for t in self.tasks}

    def before(self, batch: Batch) -> None:
        while len(batch.params) < len(batch.views):
            batch.params.append({})
        if self.apply_to == "copies":
            labels = self._draw(batch.views[0].shape[0], batch.views[0].device)
            batch.params[0].update({f"{t}_copy": k for t, k in labels.items()})
            return
        for view, params in zip(batch.views, batch.params):
            labels = self._draw(view.shape[0], view.device)
            with torch.no_grad():
                view.copy_(self.transform(view, labels))  # in place: keeps the view's memory format
            params.update(labels)

    def copies(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The extra inputs of ``apply_to="copies"``: (T * B, C, H, W), one transformed copy of view 0
        per task (in ``tasks`` order), and the labels drawn for them by ``before``."""
        x = batch.views[0]
        labels = {t: batch.params[0][f"{t}_copy"] for t in self.tasks}
        copies = torch.cat([self.transform(x, {t: labels[t]}) for t in self.tasks])
        if not x.is_contiguous():  # channels_last views: feed the encoder the same layout
            copies = copies.contiguous(memory_format=torch.channels_last)
        return copies, labels

    def forward(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        B = batch.views[0].shape[0]
        if self.apply_to == "copies":
            inputs, labels = self.copies(batch)
            h = dict(zip(self.tasks, self.backbone(inputs).chunk(len(self.tasks))))  # each (B, D)
        else:
            features = out["features"]  # (n * B, D), view-major
            n = len(features) // B
            labels = {t: torch.cat([batch.params[i][t] for i in range(n)]) for t in self.tasks}  # (n * B,)
            h = {t: features for t in self.tasks}
        terms, loss = {}, 0.0
        for task in self.tasks:
            task_loss, accuracy = classification_loss(self.heads[task](h[task]), labels[task])
            loss = loss + task_loss
            terms[f"{task}_loss"], terms[f"{task}_acc"] = task_loss.detach(), accuracy
        return {"loss": loss, **terms}
