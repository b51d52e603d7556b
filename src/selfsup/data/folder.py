"""Images from a folder tree, decoded with Pillow.

Two layouts:

- labelled: ``root/<class>/.../image.png``; every non-hidden subfolder of `root` that holds an
  image (at any depth) is a class, classes are sorted by name; images directly in `root` next to
  class folders are left out and listed in ``skipped``.
- unlabeled: ``root/*.png`` (no subfolder holds an image).

Unreadable files (corrupt, truncated, unreadable by permissions, not regular files) and
decompression bombs (more than ``max_pixels`` pixels declared, default :data:`MAX_PIXELS`, or
Pillow's own limit ``Image.MAX_IMAGE_PIXELS``) are left out and listed in ``skipped`` as
``(file, reason)``; a subfolder that cannot be listed is listed there too. Only a folder where no
image at all can be read is a DataError. All images get one channel count (1 when every image is
grayscale: L, 1, LA, 16-bit and float modes; else 3: palette images are expanded through their
palette, CMYK and YCbCr converted, alpha dropped) and one size: `image_size`, or else the most
common size among the images, ties going to the size met first in sorted file order (others are
resized with bilinear filtering, aspect ratio not kept). File names that are not UTF-8 are read
like any other; in ids, classes and messages their bytes are shown as backslash escapes.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, DataError
from ..files import display_path
from .dataset import ImageDataset

# Images declaring more pixels than this are skipped before any pixel is decoded (a tiny PNG can
# declare 100000 x 100000). Explicit, so that it holds whatever Image.MAX_IMAGE_PIXELS is set to.
MAX_PIXELS = 8192 * 8192
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"}


def parse_image_size(image_size) -> tuple[int, int] | None:
    """None | int | (h, w) -> None | (h, w); anything else is a ConfigError."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size):
        raise ConfigError(f"image_size {image_size!r} is not a positive int or an (height, width) pair.",
                          "pass e.g. image_size=32 or image_size=(32, 48).")
    return int(size[0]), int(size[1])


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_images(folder: str, skipped: list[tuple[str, str]]) -> list[str]:
    """Regular image files under `folder` at any depth, sorted; hidden files and folders are left
    out. Subfolders that cannot be listed and image names that are not regular files (a FIFO would
    block the reader) are added to `skipped`."""
    found = []

    def unlisted(e: OSError) -> None:
        skipped.append((display_path(e.filename or folder), f"folder cannot be listed: {e.strerror}"))

    for here, dirs, files in os.walk(folder, onerror=unlisted):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if _is_image(f):
                path = os.path.join(here, f)
                if os.path.isfile(path):
                    found.append(path)
                else:
                    skipped.append((display_path(path), "not a regular file"))
    return found


def _list(root: str) -> tuple[list[str], list[int] | None, list[str] | None, list[tuple[str, str]]]:
    """(files, labels or None, classes or None, skipped) for the folder `root`."""
    entries = sorted(os.listdir(root))
    unlisted: list[tuple[str, str]] = []
    loose = []
    for e in entries:
        path = os.path.join(root, e)
        if _is_image(e) and os.path.isfile(path):
            loose.append(path)
        elif _is_image(e) and not os.path.isdir(path):  # a FIFO, socket or device would block or mislead
            unlisted.append((display_path(path), "not a regular file"))
    per_class = {}
    for e in entries:
        path = os.path.join(root, e)
        if not e.startswith(".") and os.path.isdir(path):
            files = _walk_images(path, unlisted)
            if files:
                per_class[e] = files
    if not per_class:
        return loose, None, None, unlisted
    classes = sorted(per_class)
    files, labels = [], []
    for k, c in enumerate(classes):
        files.extend(per_class[c])
        labels.extend([k] * len(per_class[c]))
    skipped = [(display_path(f), "image outside the class folders") for f in loose]
    return files, labels, [display_path(c) for c in classes], skipped + unlisted


class _TooLarge(Exception):
    """An image declaring more pixels than the cap (its message is the skip reason)."""


def _header(path: str, max_pixels: int) -> tuple[tuple[int, int], str]:
    with Image.open(path) as im:
        if im.width * im.height > max_pixels:
            raise _TooLarge(f"decompression bomb: {im.width}x{im.height} = {im.width * im.height} pixels declared, "
                            f"over the limit of {max_pixels} (selfsup.data.folder.MAX_PIXELS)")
        return (im.height, im.width), im.mode


def _pixels(path: str, size: tuple[int, int], gray: bool) -> np.ndarray:
    """The decoded image as (H, W) or (H, W, 3) uint8 at `size`."""
    with Image.open(path) as im:
        im.load()
        if im.mode == "P" and not gray:
            im = im.convert("RGBA")  # through RGBA: Pillow warns when a transparent palette goes to RGB directly
        if im.mode.startswith("I;16"):
            im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))  # 16-bit -> 8-bit
        elif im.mode in ("I", "F"):
            values = np.asarray(im, dtype=np.float64)
            if im.mode == "F" and values.size and np.nanmax(values) <= 1.0:
                values = values * 255.0  # float images are usually stored in [0, 1]
            im = Image.fromarray(np.rint(np.clip(np.nan_to_num(values), 0, 255)).astype(np.uint8))
        im = im.convert("L" if gray else "RGB")
        if (im.height, im.width) != size:
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _reason(e: BaseException) -> str:
    """Why a file was skipped, as printable one-line text without the file's path (shown beside it)."""
    if isinstance(e, _TooLarge):
        text = str(e)
    elif isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        text = f"decompression bomb: {e}"
    elif isinstance(e, Image.UnidentifiedImageError):
        text = "not an image format Pillow can read (corrupt, empty or mislabelled)"
    elif isinstance(e, OSError) and e.strerror:
        text = f"{type(e).__name__}: {e.strerror}"  # str(e) would repeat the path
    elif isinstance(e, MemoryError):
        text = "MemoryError: not enough memory to decode it"
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.encode("utf-8", "backslashreplace").decode("utf-8").split())


def _try(fn, *args):
    try:
        return fn(*args), None
    except Exception as e:  # Pillow raises many kinds for bad files; all mean "unreadable"
        return None, _reason(e)


def _check_memory(root: str, shape: tuple[int, ...], chosen: bool) -> None:
    """A DataError, before decoding, when the decoded images cannot fit in this machine's memory."""
    need = int(np.prod(shape, dtype=np.int64))
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not available on this system
        return
    if need > have:
        size = "x".join(map(str, shape[1:3]))
        why = "the most common size" if chosen else "the requested data.image_size"
        raise DataError(f"image folder {display_path(root)}: {shape[0]} images at {size} ({why}) need "
                        f"{need / 2**30:.1f} GiB, more than this machine's {have / 2**30:.1f} GiB of memory.",
                        "set data.image_size (e.g. --set data.image_size=64) to load them smaller.")


def load_image_folder(root: str, image_size=None, *, workers: int | None = None,
                      max_pixels: int = MAX_PIXELS) -> ImageDataset:
    """Images ``(N, C, H, W)`` uint8 from the folder `root` (layouts in the module docstring).

    `image_size` is an int or (h, w); by default the most common size. `workers` threads decode
    (Pillow releases the GIL while decoding); default min(4, CPU count); the result does not
    depend on it. Images declaring more than `max_pixels` pixels are skipped as decompression bombs.
    """
    root = os.fspath(root)
    target = parse_image_size(image_size)
    if not os.path.isdir(root):
        raise DataError(f"image folder {display_path(root)} does not exist.", "check the path.")
    try:
        files, labels, classes, skipped = _list(root)
    except OSError as e:
        raise DataError(f"image folder {display_path(root)} cannot be listed ({e.strerror}).",
                        "check its permissions.") from None
    if not files:
        raise DataError(
            f"image folder {display_path(root)} holds no image files.",
            f"put images with one of the extensions {' '.join(IMAGE_EXTENSIONS)} in it, "
            "directly or in one subfolder per class.",
        )
    workers = workers or min(4, os.cpu_count() or 1)
    # Pillow warns (instead of raising) between MAX_IMAGE_PIXELS and twice that; make it an error
    # so such files are skipped like any other unreadable one. The filter is process-wide, so it
    # also reaches the worker threads.
    with warnings.catch_warnings(), ThreadPoolExecutor(workers) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Pillow's warnings about damaged metadata (TIFF tags, EXIF) would print several lines per
        # file; such a file is read or skipped like any other.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        headers = list(pool.map(_try, [_header] * len(files), files, [max_pixels] * len(files)))
        bad = [(display_path(files[i]), why) for i, (h, why) in enumerate(headers) if h is None]
        keep = [i for i, (h, _) in enumerate(headers) if h is not None]
        if keep:
            gray = all(headers[i][0][1] in _GRAY_MODES for i in keep)
            size = target or Counter(headers[i][0][0] for i in keep).most_common(1)[0][0]
            shape = (len(keep), *size) if gray else (len(keep), *size, 3)
            _check_memory(root, shape, target is None)
            out = np.empty(shape, dtype=np.uint8)

            def decode(j: int) -> str | None:
                px, why = _try(_pixels, files[keep[j]], size, gray)
                if px is not None:
                    out[j] = px
                return why

            reasons = list(pool.map(decode, range(len(keep))))
            bad += [(display_path(files[keep[j]]), why) for j, why in enumerate(reasons) if why is not None]
            good = [j for j, why in enumerate(reasons) if why is None]
    if not keep or not good:
        raise DataError(
            f"image folder {display_path(root)}: none of its {len(files)} image files could be read "
            f"(first: {bad[0][0]}: {bad[0][1]}).",
            "check that the files are complete, readable images.",
        )
    if len(good) < len(keep):
        out = out[good]
    # (N, H, W) -> (N, 1, H, W) or (N, H, W, 3) -> (N, 3, H, W)
    images = torch.from_numpy(out[:, None] if gray else out.transpose(0, 3, 1, 2)).contiguous()
    chosen = [keep[j] for j in good]
    return ImageDataset(
        images=images,
        labels=None if labels is None else torch.tensor([labels[i] for i in chosen], dtype=torch.int64),
        ids=[display_path(os.path.relpath(files[i], root)) for i in chosen],
        name=display_path(os.path.basename(os.path.normpath(root))),
        source=display_path(os.path.abspath(root)),
        classes=classes,
        skipped=skipped + bad,
    )
