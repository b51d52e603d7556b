"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

The official files are Python pickles by format (``cifar-10-batches-py/data_batch_1`` ...,
``cifar-100-python/train`` ...), so they are read with :mod:`pickle`, and only these files. The
unpickler is restricted to the handful of numpy names the official files use, so a tampered file
cannot run code; anything else is a DataError.

Each record holds ``data`` (N, 3072) uint8, the 1024 red, then green, then blue values of a 32x32
image in row-major order, so a plain reshape gives ``(N, 3, 32, 32)``.
"""
from __future__ import annotations

import codecs
import os
import pickle

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset
from ..files import display_path


def _numpy_reconstructors() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar}
    if hasattr(numeric, "_frombuffer"):
        allowed["_frombuffer"] = numeric._frombuffer
    # _codecs.encode is how Python 3 writes bytes at protocol 2 (re-saved copies use it); it only encodes text.
    table = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"):
        for attr, obj in allowed.items():
            table[(module, attr)] = obj
    return table


class _ArrayUnpickler(pickle.Unpickler):
    _allowed = _numpy_reconstructors()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR file") from None


def _read_record(path: str) -> dict:
    shown = display_path(path)
    try:
        with open(path, "rb") as f:
            # latin1: the official files were written by Python 2 (numpy arrays need this encoding).
            record = _ArrayUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR file {shown} does not exist.", "extract the official python tarball there.") from None
    except (PermissionError, IsADirectoryError) as e:
        raise DataError(f"CIFAR file {shown} cannot be read ({e.strerror}).", "check its permissions.") from None
    except Exception as e:  # a damaged pickle can raise almost anything (MemoryError, RecursionError...)
        raise DataError(
            f"CIFAR file {shown} is damaged or not an official CIFAR python file ({type(e).__name__}: {_short(e)}).",
            "extract the official python version tarball again.",
        ) from None
    if not isinstance(record, dict):
        raise DataError(f"CIFAR file {shown} holds a {type(record).__name__}, expected a dict.",
                        "extract the official python version tarball again.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in record.items()}


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:200] + "..."


def _array(value, what: str, shown: str) -> np.ndarray:
    """`value` from a record as a numpy array; ragged lists or odd objects are a DataError."""
    try:
        return np.asarray(value)
    except Exception as e:  # ragged nesting, objects numpy cannot hold...
        raise DataError(f"CIFAR file {shown} holds {what} numpy cannot read ({type(e).__name__}: {_short(e)}).",
                        "use the official python version of the dataset.") from None


def _images_labels(path: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    shown = display_path(path)
    record = _read_record(path)
    if "data" not in record or label_key not in record:
        keys = sorted(display_path(str(k)) for k in record)
        raise DataError(f"CIFAR file {shown} lacks the keys 'data' and '{label_key}' (it has {keys}).",
                        "use the official python version of the dataset.")
    data = _array(record["data"], "data", shown)
    labels = _array(record[label_key], "labels", shown)
    if (data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1
            or len(labels) != len(data) or labels.dtype.kind not in "iu"):
        raise DataError(
            f"CIFAR file {shown} holds data {data.dtype} {data.shape} with labels {labels.dtype} {labels.shape}; "
            "expected uint8 (N, 3072) and N integer labels.",
            "use the official python version of the dataset.",
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"CIFAR file {shown} holds labels {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}.",
                        "use the official python version of the dataset.")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)  # (N, 3072) -> (N, C, H, W)


def _label_names(path: str, key: str, num_classes: int) -> list[str] | None:
    """Class names from the meta file, or None when it is missing or does not name every class."""
    if not os.path.exists(path):
        return None
    names = _read_record(path).get(key)
    if not isinstance(names, (list, tuple)) or len(names) != num_classes:
        return None  # names are optional: a meta file with the wrong count gives none
    return [n.decode("utf-8", "backslashreplace") if isinstance(n, bytes) else str(n) for n in names]


def _dataset(parts, name: str, split: str, directory: str, classes) -> ImageDataset:
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        ids=[f"{name}/{split}/{i}" for i in range(len(images))],
        name=name,
        source=directory,
        classes=classes,
    )


CIFAR10_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR100_FILES = {"train": ["train"], "test": ["test"]}


def _check_split(split: str, files: dict, name: str) -> None:
    if split not in files:
        raise DataError(f"{name} has no split {split!r}.", f"use one of: {', '.join(files)}.")


def load_cifar10(directory: str, split: str = "train") -> ImageDataset:
    """CIFAR-10 from ``cifar-10-batches-py``: train (50,000) or test (10,000), (N, 3, 32, 32) uint8."""
    _check_split(split, CIFAR10_FILES, "cifar10")
    directory = os.fspath(directory)
    parts = [_images_labels(os.path.join(directory, f), "labels", 10) for f in CIFAR10_FILES[split]]
    classes = _label_names(os.path.join(directory, "batches.meta"), "label_names", 10)
    return _dataset(parts, "cifar10", split, display_path(directory), classes)


def load_cifar100(directory: str, split: str = "train") -> ImageDataset:
    """CIFAR-100 from ``cifar-100-python`` with the 100 fine labels: train (50,000) or test (10,000)."""
    _check_split(split, CIFAR100_FILES, "cifar100")
    directory = os.fspath(directory)
    parts = [_images_labels(os.path.join(directory, f), "fine_labels", 100) for f in CIFAR100_FILES[split]]
    classes = _label_names(os.path.join(directory, "meta"), "fine_label_names", 100)
    return _dataset(parts, "cifar100", split, display_path(directory), classes)
