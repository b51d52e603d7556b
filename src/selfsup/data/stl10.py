"""STL-10 from the official binary archive (``stl10_binary``).

``*_X.bin`` holds uint8 images of 3x96x96, each channel stored column-major (the archive was
written from MATLAB), so a reshape to (N, 3, 96, 96) gives (N, C, W, H) and needs a transpose.
``*_y.bin`` holds one uint8 label per image, 1-based. ``unlabeled_X.bin`` has 100,000 images
(2.8 GB in memory).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset
from ..files import display_path

_SIDE = 96
_IMAGE_BYTES = 3 * _SIDE * _SIDE
STL10_FILES = {
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
    "unlabeled": ("unlabeled_X.bin", None),
}


def _unreadable(path: str, e: OSError) -> DataError:
    return DataError(f"STL-10 file {display_path(path)} cannot be read ({e.strerror or e}).",
                     "check its permissions, or extract the official stl10_binary archive again.")


def _read_images(path: str) -> np.ndarray:
    try:
        size = os.path.getsize(path)
        if size == 0 or size % _IMAGE_BYTES:
            raise DataError(
                f"STL-10 file {display_path(path)} has {size} bytes, not a positive multiple of {_IMAGE_BYTES} (3x96x96).",
                "the file is truncated; extract the official stl10_binary archive again.",
            )
        # Mapped, not read: the transposed copy is then the only full-size allocation (2.8 GB for unlabeled).
        raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // _IMAGE_BYTES, 3, _SIDE, _SIDE))  # (N, C, W, H)
        images = np.ascontiguousarray(raw.transpose(0, 1, 3, 2))  # -> (N, C, H, W)
    except OSError as e:
        raise _unreadable(path, e) from None
    del raw
    return images


def _read_labels(path: str, n: int) -> np.ndarray:
    try:
        labels = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    except OSError as e:
        raise _unreadable(path, e) from None
    if len(labels) != n:
        raise DataError(f"STL-10 file {display_path(path)} has {len(labels)} labels for {n} images.",
                        "extract the official stl10_binary archive again.")
    if n and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"STL-10 file {display_path(path)} holds labels outside 1..10 ({labels.min()}..{labels.max()}).",
                        "extract the official stl10_binary archive again.")
    return labels - 1  # 1-based on disk


def _class_names(directory: str) -> list[str] | None:
    """The ten names in class_names.txt, or None when it is missing, unreadable or not ten lines."""
    path = os.path.join(directory, "class_names.txt")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError:
        return None
    return names if len(names) == 10 else None


def load_stl10(directory: str, split: str = "train") -> ImageDataset:
    """STL-10 images ``(N, 3, 96, 96)`` uint8 for `split` in train, test, unlabeled, train+unlabeled.

    ``train+unlabeled`` (105,000 images, the usual pretraining set) has no labels.
    """
    directory = os.fspath(directory)
    if split == "train+unlabeled":
        parts = [load_stl10(directory, s) for s in ("train", "unlabeled")]
        return ImageDataset(
            images=torch.cat([p.images for p in parts]),
            labels=None,
            ids=parts[0].ids + parts[1].ids,
            name="stl10",
            source=directory,
            classes=parts[0].classes,
        )
    if split not in STL10_FILES:
        raise DataError(f"stl10 has no split {split!r}.", f"use one of: {', '.join(STL10_FILES)}, train+unlabeled.")
    x_name, y_name = STL10_FILES[split]
    x_path = os.path.join(directory, x_name)
    if not os.path.exists(x_path):
        raise DataError(f"STL-10 file {display_path(x_path)} does not exist.", "extract the official stl10_binary archive there.")
    images = _read_images(x_path)
    labels = None
    if y_name is not None:
        y_path = os.path.join(directory, y_name)
        if not os.path.exists(y_path):
            raise DataError(f"STL-10 file {display_path(y_path)} does not exist.", "extract the official stl10_binary archive there.")
        labels = torch.from_numpy(_read_labels(y_path, len(images)))
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=labels,
        ids=[f"stl10/{split}/{i}" for i in range(len(images))],
        name="stl10",
        source=directory,
        classes=_class_names(directory),
    )
