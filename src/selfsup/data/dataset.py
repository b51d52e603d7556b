"""The in-memory image dataset every reader returns.

Images are kept as uint8 ``(N, C, H, W)`` tensors (about 47 MB for Fashion-MNIST's 60k train
images) so that they can live on the compute device and views are drawn there in batches.
Labels are optional: unlabeled data is the normal case.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


def check_samples(samples: torch.Tensor | None, dtype: torch.dtype | None, dims: int | None, layout: str, n: int,
                  noun: str, **per_sample) -> None:
    """The checks every dataset kind makes on construction: `samples` (when given) has `dtype` and
    `dims` dimensions (`layout` names them, e.g. "(N, C, T)"), and each of `per_sample` (labels,
    ids, targets, ...; None = absent) has one entry per sample, of which there are `n` (`noun`).
    Raises ValueError naming what disagrees: these are programming errors in a reader, not bad input."""
    if samples is not None and (samples.dtype != dtype or samples.dim() != dims):
        raise ValueError(f"samples must be {str(dtype).removeprefix('torch.')} {layout}, got "
                         f"{samples.dtype} {tuple(samples.shape)}")
    for what, values in per_sample.items():
        if values is not None and len(values) != n:
            raise ValueError(f"{len(values)} {what} for {n} {noun}")


@dataclass
class ImageDataset:
    """images: (N, C, H, W) uint8; labels: (N,) int64 or None; ids: one string id per sample.

    `skipped` lists ``(file, reason)`` for inputs a reader could not decode (they are left out,
    counted and reported, never fatal); `source` says where the data came from.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    ids: list[str]
    name: str
    source: str
    classes: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    modality = "image"  # the other kind is data.table.TableDataset; generic code reads `samples`

    def __post_init__(self):
        check_samples(self.images, torch.uint8, 4, "(N, C, H, W)", len(self.images), "images", labels=self.labels,
                      ids=self.ids)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def samples(self) -> torch.Tensor:
        return self.images

    def input_spec(self) -> dict:
        """The backbone arguments the data fixes."""
        return {"in_channels": self.channels, "image_size": self.image_size[0]}

    def normalization(self) -> tuple[list[float], list[float]]:
        return self.mean_std()

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    @property
    def num_classes(self) -> int | None:
        if self.labels is None:
            return None
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def mean_std(self, max_samples: int = 10_000) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of pixels scaled to [0, 1], from at most `max_samples` images."""
        step = max(1, len(self) // max_samples)
        x = self.images[::step].float().div_(255)
        return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()

    def subset(self, index: torch.Tensor) -> "ImageDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageDataset(
            self.images[index],
            None if self.labels is None else self.labels[index],
            [self.ids[i] for i in index.tolist()],
            self.name,
            self.source,
            self.classes,
            list(self.skipped),
        )
