"""Images from numpy files: one ``.npy`` array, or an ``.npz`` archive with images and labels.

Accepted image layouts: (N, H, W), (N, H, W, C) and (N, C, H, W) with C = 1 or 3; uint8, integers
in 0..255, or floats in [0, 1] (scaled to uint8). Files are loaded with ``allow_pickle=False``.
Anything else (other channel counts such as RGBA, NaN or out-of-range values, bool, complex or
structured dtypes, labels that are not one non-negative integer per image, damaged or truncated
files) is a DataError naming the file, the array and what was found; nothing is converted by guess.
"""
from __future__ import annotations

import contextlib
import os
import warnings
import zipfile

import numpy as np
import torch

from ..errors import DataError
from .dataset import ImageDataset
from ..files import display_path

LAYOUTS = "(N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
_CHANNELS = (1, 3)
IMAGE_KEYS = ("x", "images", "data", "X", "imgs", "arr_0")
LABEL_KEYS = ("y", "labels", "targets", "Y", "arr_1")
CLASS_KEYS = ("classes", "class_names")


def _to_nchw(array: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) | (N, H, W, C) | (N, C, H, W) -> (N, C, H, W)."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim == 4:
        first, last = array.shape[1] in _CHANNELS, array.shape[3] in _CHANNELS
        if first and last:  # e.g. (N, 3, 3, 3): take the reading with square images, else channels-first
            last = array.shape[1] == array.shape[2] and array.shape[2] != array.shape[3]
            first = not last
        if first:
            return array
        if last:
            return array.transpose(0, 3, 1, 2)
    raise DataError(f"{where} has shape {array.shape}; images must be {LAYOUTS}.",
                    "reshape the array to one of these layouts.")


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iu":
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where} holds {array.dtype} values in {lo}..{hi}; integer images must be in 0..255.",
                            "scale the images to 0..255 (uint8) or to floats in [0, 1].")
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        finite = np.isfinite(array).all()
        lo, hi = (float(array.min()), float(array.max())) if finite else (float("nan"), float("nan"))
        if not finite or lo < 0.0 or hi > 1.0:
            raise DataError(f"{where} holds {array.dtype} values in [{lo:g}, {hi:g}]; float images must be finite and in [0, 1].",
                            "divide 0..255 images by 255, or store them as uint8.")
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise DataError(f"{where} has dtype {array.dtype}; images must be uint8, integers in 0..255 or floats in [0, 1].",
                    "convert the array with numpy before saving it.")


def images_from_array(array: np.ndarray, where: str = "array") -> torch.Tensor:
    """A numpy image array in any accepted layout and dtype -> (N, C, H, W) uint8 tensor."""
    array = np.asarray(array)
    nchw = _to_nchw(array, where)
    if 0 in nchw.shape:
        raise DataError(f"{where} has shape {array.shape} and holds no images.", "pass a non-empty array.")
    return torch.from_numpy(np.ascontiguousarray(_to_uint8(nchw, where)))


def _labels_from_array(array: np.ndarray, n: int, where: str) -> torch.Tensor:
    if array.ndim != 1 or array.dtype.kind not in "iu" or len(array) != n:
        raise DataError(f"{where} has {array.dtype} of shape {array.shape}; labels must be integers of shape ({n},).",
                        "store one integer label per image.")
    if n and array.min() < 0:
        raise DataError(f"{where} holds a negative label ({array.min()}).", "labels must be 0..K-1.")
    if n and array.max() >= 2**31:
        raise DataError(f"{where} holds a label of {array.max()}.", "labels must be 0..K-1 class indices.")
    return torch.from_numpy(array.astype(np.int64))


@contextlib.contextmanager
def _quiet():
    """Silence the warnings numpy's header parser (ast) gives for a damaged header ("invalid escape
    sequence"); the damage itself becomes a DataError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _member(loaded, key: str, path: str) -> np.ndarray:
    """One array of an open .npz; a damaged member (bad zip entry, CRC, truncated data, a size the
    memory cannot hold, a compression method zipfile lacks...) is a DataError."""
    try:
        with _quiet():
            return loaded[key]
    except Exception as e:  # zipfile, zlib and numpy raise many kinds for damaged archives
        raise DataError(f"{path}[{key}] is damaged ({type(e).__name__}: {e}).", "save the arrays again.") from None


def _class_names(array: np.ndarray, where: str) -> list[str]:
    if array.dtype.kind not in "USiu":
        raise DataError(f"{where} has dtype {array.dtype}; class names must be strings.",
                        "store the class names as a string array, e.g. np.array(['cat', 'dog']).")
    return [c.decode("utf-8", "backslashreplace") if isinstance(c, bytes) else str(c) for c in array.reshape(-1).tolist()]


def _pick(keys, candidates):
    return next((k for k in candidates if k in keys), None)


def load_arrays(path: str, split: str = "train") -> ImageDataset:
    """Images (and labels) from a ``.npy`` or ``.npz`` file.

    In an ``.npz`` the images are under ``x_<split>`` (Keras style: x_train/x_test) or else one of
    x, images, data, X, imgs, arr_0; labels under ``y_<split>`` or y, labels, targets, Y, arr_1;
    class names, optional, under classes or class_names.
    """
    shown = display_path(os.fspath(path))
    path = os.fspath(path)
    name = os.path.splitext(os.path.basename(shown))[0]
    try:
        with _quiet():
            loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"array file {shown} does not exist.", "check the path.") from None
    except (PermissionError, IsADirectoryError) as e:
        raise DataError(f"array file {shown} cannot be read ({e.strerror}).", "check its permissions.") from None
    except ValueError as e:
        if "pickle" not in str(e):
            raise DataError(f"{shown} is not a readable .npy/.npz file (ValueError: {e}).",
                            "save the images with np.save or np.savez.") from None
        raise DataError(f"{shown} cannot be read without pickle ({e}).",
                        "save plain numeric arrays (np.save / np.savez), not object arrays.") from None
    except Exception as e:  # truncated or foreign files raise OSError, EOFError, MemoryError, zipfile errors...
        raise DataError(f"{shown} is not a readable .npy/.npz file ({type(e).__name__}: {e}).",
                        "save the images with np.save or np.savez.") from None
    path = shown
    labels = classes = None
    try:
        if isinstance(loaded, np.ndarray):
            images = images_from_array(loaded, path)
        else:
            with loaded:
                keys = set(loaded.files)
                x_key = _pick(keys, (f"x_{split}", f"{split}_images", *IMAGE_KEYS))
                if x_key is None:
                    raise DataError(
                        f"{path} has no images array for split {split!r} (keys: {', '.join(sorted(keys)) or 'none'}).",
                        f"store the images under x_{split} or one of: {', '.join(IMAGE_KEYS)}.",
                    )
                where = f"{path}[{x_key}]"
                images = images_from_array(_member(loaded, x_key, path), where)
                y_key = _pick(keys, (f"y_{split}", f"{split}_labels", *LABEL_KEYS))
                if y_key is not None:
                    labels = _labels_from_array(_member(loaded, y_key, path), len(images), f"{path}[{y_key}]")
                c_key = _pick(keys, CLASS_KEYS)
                if c_key is not None:
                    classes = _class_names(_member(loaded, c_key, path), f"{path}[{c_key}]")
                    if labels is not None and int(labels.max()) >= len(classes):
                        raise DataError(f"{path}[{y_key}] holds label {int(labels.max())} but {path}[{c_key}] "
                                        f"names {len(classes)} classes.", "give one name per class 0..K-1.")
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:  # damaged archive directory
        raise DataError(f"{path} is damaged ({type(e).__name__}: {e}).", "save the arrays again.") from None
    return ImageDataset(
        images=images,
        labels=labels,
        ids=[f"{name}/{i}" for i in range(len(images))],
        name=name,
        source=path,
        classes=classes,
    )
