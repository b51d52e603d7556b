"""IDX files: the format of MNIST, Fashion-MNIST and KMNIST, raw or gzip-compressed.

Layout (big-endian): two zero bytes, a type byte, a byte with the number of dimensions `k`,
then `k` uint32 sizes, then the values. Images are ``(N, H, W)`` uint8, labels ``(N,)``.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset
from ..files import display_path

# IDX type byte -> big-endian numpy dtype.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_BYTES = 1 << 40  # no real IDX file comes near; bounds the read of a header declaring absurd sizes


def _open(path: str):
    """A binary stream of the file, decompressed when it starts with the gzip magic (files are often
    renamed or decompressed in place, so the content decides, not the name)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"IDX file {display_path(path)} does not exist.", "check the path.") from None
    except OSError as e:  # permissions, a folder under the file's name...
        raise DataError(f"IDX file {display_path(path)} cannot be read ({e.strerror}).", "check its permissions.") from None
    if f.read(2) == _GZIP_MAGIC:
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb")
    f.seek(0)
    return f


def _read(stream, n: int) -> bytes:
    """Up to `n` bytes (fewer only at the end of the stream)."""
    parts, left = [], n
    while left > 0:
        part = stream.read(min(left, 1 << 24))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_idx(path: str) -> np.ndarray:
    """The array stored in the IDX file at `path` (gzip or raw), with its header's shape and dtype.

    Raises DataError naming the file when the magic, the type byte or the size does not match.
    Only as many bytes as the header declares (plus one, to detect trailing data) are read or
    decompressed, so a gzip bomb behind a small header costs nothing.
    """
    path = os.fspath(path)
    shown = display_path(path)
    try:
        with _open(path) as stream:
            head = _read(stream, 4)
            rank = head[3] if len(head) == 4 else 0
            data = head + _read(stream, 4 * rank)
            if len(data) == 4 + 4 * rank and data[:2] == b"\0\0" and data[2] in _DTYPES:
                dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
                size = int(np.prod(dims, dtype=object)) * _DTYPES[data[2]].itemsize
                # a header declaring more than the file can hold is reported as truncated below
                data += _read(stream, min(size, _MAX_BYTES) + 1)
    except DataError:
        raise
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"IDX file {shown} is truncated or not valid gzip ({e}).",
            "download it again; a complete file is gzip-compressed or raw IDX.",
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{shown} is not an IDX file (its first bytes are {data[:4].hex() or 'empty'}, expected 0000 then type and rank).",
            "pass an MNIST-style IDX file such as train-images-idx3-ubyte.gz.",
        )
    type_byte, rank = data[2], data[3]
    if type_byte not in _DTYPES:
        raise DataError(
            f"{shown} has unknown IDX type byte 0x{type_byte:02x}.",
            f"a valid IDX file uses one of {', '.join(f'0x{t:02x}' for t in _DTYPES)}.",
        )
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataError(f"{shown} is truncated: its header declares {rank} dimensions but the file has {len(data)} bytes.",
                        "download the file again.")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
    dtype = _DTYPES[type_byte]
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(data) < expected:
        raise DataError(
            f"{shown} is truncated: shape {dims} needs {expected} bytes, the file has {len(data)}.",
            "download the file again.",
        )
    if len(data) > expected:
        raise DataError(
            f"{shown} has bytes after the data of shape {dims}.",
            "the file is damaged or not IDX; download it again.",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # Native byte order and a writable copy, so torch can take it without a warning.
    return array.astype(dtype.newbyteorder("="), copy=True)


def load_idx(
    images_path: str,
    labels_path: str | None = None,
    *,
    name: str | None = None,
    classes: list[str] | None = None,
    id_prefix: str | None = None,
) -> ImageDataset:
    """Images ``(N, 1, H, W)`` uint8 from an IDX image file, with labels from an IDX label file.

    Ids are ``f"{id_prefix}/{i}"`` (the image file's name by default).
    """
    images_path = os.fspath(images_path)
    images = read_idx(images_path)
    shown = display_path(images_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{shown} holds {images.dtype} of shape {images.shape}; images must be uint8 (N, H, W).",
            "pass the images file (…-images-idx3-ubyte), not the labels file.",
        )
    if len(images) == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{shown} holds no images (shape {images.shape}).", "download the file again.")
    labels = None
    if labels_path is not None:
        labels_path = os.fspath(labels_path)
        raw = read_idx(labels_path)
        shown_labels = display_path(labels_path)
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise DataError(
                f"{shown_labels} holds {raw.dtype} of shape {raw.shape}; labels must be integers of shape (N,).",
                "pass the labels file (…-labels-idx1-ubyte).",
            )
        if len(raw) != len(images):
            raise DataError(
                f"{shown_labels} has {len(raw)} labels but {shown} has {len(images)} images.",
                "use the label file of the same split (train or t10k).",
            )
        if raw.min() < 0:
            raise DataError(f"{shown_labels} holds a negative label ({raw.min()}).", "labels must be 0..K-1.")
        if raw.max() >= 2**31:
            raise DataError(f"{shown_labels} holds a label of {raw.max()}.", "labels must be 0..K-1 class indices.")
        labels = torch.from_numpy(raw.astype(np.int64))
    prefix = id_prefix or os.path.basename(shown)
    return ImageDataset(
        images=torch.from_numpy(images).unsqueeze(1),  # (N, H, W) -> (N, 1, H, W)
        labels=labels,
        ids=[f"{prefix}/{i}" for i in range(len(images))],
        name=name or os.path.basename(shown),
        source=shown,
        classes=classes,
    )
