"""Named datasets and the one entry point, :func:`load_dataset`.

A name (fashion-mnist, mnist, kmnist, cifar10, cifar100, stl10; the table adult) is looked up, in this order, in
the `root` argument (the folder itself or a subfolder named after the dataset), ``$SELFSUP_DATA``,
``/usr/share/datasets`` and the user cache ``$XDG_CACHE_HOME/selfsup`` (default
``~/.cache/selfsup``). In each place the usual folder names are tried (``fashion-mnist``,
``FashionMNIST/raw``, ``cifar-10-batches-py``, ``stl10_binary`` ...), so a torchvision data
folder works as it is. Nothing is ever downloaded: a missing file is a DataError that names
it, the places looked in and how to get it.

Anything else is a path: a ``.npy``/``.npz`` file (see :mod:`.arrays`), a table (``.csv``,
``.tsv``, ``.parquet``; see :mod:`.table`), a folder holding the
official files of a named dataset, or an image folder (see :mod:`.folder`). For an image folder,
`split` picks the subfolder ``path/<split>`` when it exists (``root/train``, ``root/test``); a
folder without split subfolders is used as it is for any split; a folder that has some split
subfolders but not the one asked for is a DataError.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from typing import Callable

import torch

from ..errors import DataError, closest
from .arrays import load_arrays
from .cifar import CIFAR10_FILES, CIFAR100_FILES, load_cifar10, load_cifar100
from .dataset import ImageDataset
from ..files import display_path
from .folder import load_image_folder, parse_image_size
from .idx import load_idx
from .graph import GRAPH_SPLITS, NAMED_GRAPHS
from .series import find_named_series, load_named_series, series_sets
from .stl10 import STL10_FILES, load_stl10
from .table import TableDataset, TableSchema, load_table

SYSTEM_DIR = "/usr/share/datasets"
_SPLIT_FOLDERS = ("train", "test", "val", "valid", "validation", "unlabeled")


@dataclass(frozen=True)
class NamedDataset:
    """Where a named dataset lives and how to read it.

    `files[split]` lists the files a split needs; an entry with alternatives (a tuple) is found
    when any of them exists, e.g. the gzip or the raw IDX file.
    """

    name: str
    folders: tuple[str, ...]
    files: dict[str, tuple]
    read: Callable[..., ImageDataset | TableDataset]  # (directory, split, found files, **data options)
    how_to_get: str
    aliases: tuple[str, ...] = ()
    modality: str = "image"

    @property
    def splits(self) -> list[str]:
        return list(self.files)


def _idx_files(prefix: str) -> tuple:
    images, labels = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    return ((images + ".gz", images), (labels + ".gz", labels))


def _idx_reader(name: str, classes: list[str]):
    def read(directory: str, split: str, found: dict[str, str]) -> ImageDataset:
        images, labels = found.values()
        return load_idx(images, labels, name=name, classes=classes, id_prefix=f"{name}/{split}")

    return read


def _images(read):
    """A named image dataset's reader, resized to the data config's image_size; other options ignored."""
    def read_resized(directory: str, split: str, found: dict[str, str], image_size=None, **_) -> ImageDataset:
        return _resize(read(directory, split, found), parse_image_size(image_size))

    return read_resized


def _idx_dataset(name: str, folders: tuple[str, ...], classes: list[str], how: str, aliases=()) -> NamedDataset:
    return NamedDataset(name, folders, {"train": _idx_files("train"), "test": _idx_files("t10k")},
                        _images(_idx_reader(name, classes)), how, aliases)


def _idx_how(name: str, url: str) -> str:
    return (f"download the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from {url} into $SELFSUP_DATA/{name}")


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KMNIST_CLASSES = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]

CATALOGUE: dict[str, NamedDataset] = {
    d.name: d
    for d in (
        _idx_dataset("fashion-mnist", ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
                     FASHION_CLASSES,
                     "on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (puts it in /usr/share/datasets), or "
                     + _idx_how("fashion-mnist", "https://github.com/zalandoresearch/fashion-mnist"),
                     aliases=("fashion_mnist", "fashionmnist", "fmnist")),
        _idx_dataset("mnist", ("mnist", "MNIST/raw", "MNIST"), [str(i) for i in range(10)],
                     _idx_how("mnist", "http://yann.lecun.com/exdb/mnist/ (or a mirror)")),
        _idx_dataset("kmnist", ("kmnist", "KMNIST/raw", "KMNIST"), KMNIST_CLASSES,
                     _idx_how("kmnist", "https://github.com/rois-codh/kmnist"), aliases=("k-mnist",)),
        NamedDataset("cifar10", ("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
                     {s: tuple(f) for s, f in CIFAR10_FILES.items()},
                     _images(lambda d, split, found: load_cifar10(d, split)),
                     "download the CIFAR-10 python version (cifar-10-python.tar.gz) from "
                     "https://www.cs.toronto.edu/~kriz/cifar.html and extract it into $SELFSUP_DATA "
                     "(giving $SELFSUP_DATA/cifar-10-batches-py)",
                     aliases=("cifar-10", "cifar_10")),
        NamedDataset("cifar100", ("cifar-100-python", "cifar100/cifar-100-python", "cifar100"),
                     {s: tuple(f) for s, f in CIFAR100_FILES.items()},
                     _images(lambda d, split, found: load_cifar100(d, split)),
                     "download the CIFAR-100 python version (cifar-100-python.tar.gz) from "
                     "https://www.cs.toronto.edu/~kriz/cifar.html and extract it into $SELFSUP_DATA "
                     "(giving $SELFSUP_DATA/cifar-100-python)",
                     aliases=("cifar-100", "cifar_100")),
        NamedDataset("stl10", ("stl10_binary", "stl10/stl10_binary", "stl10"),
                     {**{s: tuple(f for f in fs if f) for s, fs in STL10_FILES.items()},
                      "train+unlabeled": ("train_X.bin", "train_y.bin", "unlabeled_X.bin")},
                     _images(lambda d, split, found: load_stl10(d, split)),
                     "download the STL-10 binary archive (stl10_binary.tar.gz) from "
                     "https://cs.stanford.edu/~acoates/stl10/ and extract it into $SELFSUP_DATA "
                     "(giving $SELFSUP_DATA/stl10_binary)",
                     aliases=("stl-10", "stl_10")),
    )
}


def _read_adult(directory: str, split: str, found: dict[str, str], schema: TableSchema | None = None,
                **_) -> TableDataset:  # the data config's other options (label, image_size, ...) do not apply
    # This file (OpenML's layout) holds UCI's adult.test first (16,281 rows), then adult.data
    # (32,561 rows, the conventional training split): row 16,281 is adult.data's first row.
    rows = slice(16_281, None) if split == "train" else slice(0, 16_281)
    return load_table(found["adult.parquet"], label="income", schema=schema, rows=rows, name="adult")


CATALOGUE["adult"] = NamedDataset(
    "adult", ("adult", "adult-census", "uci-adult"), {"train": ("adult.parquet",), "test": ("adult.parquet",)},
    _read_adult, "put adult.parquet (UCI Adult / Census Income, 48,842 rows with the column `income`, as OpenML "
    "serves it) into $SELFSUP_DATA/adult", aliases=("census-income", "adult-income"), modality="table")
_ALIASES = {alias: d.name for d in CATALOGUE.values() for alias in (d.name, *d.aliases)}


def guess_modality(name_or_path: str, root: str | None = None) -> str:
    """The modality a named dataset or a path belongs to, from the name alone (reads nothing; for
    config checks): the first plug-in that claims the path, else the last one asked (images)."""
    from ..modalities.base import plugins

    text = os.fspath(name_or_path)
    key = text.strip().lower().replace("_", "-")
    name = _ALIASES.get(key) or _ALIASES.get(key.replace("-", ""))
    if name is not None:
        return CATALOGUE[name].modality
    from .shards import is_shard_dir, read_manifest

    if is_shard_dir(text):  # shards written by `selfsup shard`: the manifest says their kind
        return read_manifest(text)[1]["modality"]
    if text.strip().lower().replace("-", "_") in NAMED_GRAPHS:
        return "graph"
    ordered = plugins()
    found = next((m.name for m in ordered if m.claims(os.path.expanduser(text))), None)
    if found is None and not os.path.exists(os.path.expanduser(text)):
        from .series import find_named_series

        if find_named_series(text, root) is not None:  # a named archive set (GunPoint): a folder check, no data read
            return "series"
    return found or ordered[-1].name


def dataset_names() -> list[str]:
    """The names :func:`load_dataset` knows, sorted (UCR/UEA series sets are found on disk instead:
    :func:`describe_series`)."""
    return sorted([*CATALOGUE, *NAMED_GRAPHS])


def search_dirs(root: str | None = None) -> list[str]:
    """The places named datasets are looked for, in order: `root`, $SELFSUP_DATA, system, cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    places = [root, os.environ.get("SELFSUP_DATA"), SYSTEM_DIR, os.path.join(cache, "selfsup")]
    out = []
    for p in places:
        if p and os.path.expanduser(p) not in out:
            out.append(os.path.expanduser(p))
    return out


def how_to_get(spec: NamedDataset, root: str | None = None) -> str:
    """`spec.how_to_get` with ``$SELFSUP_DATA`` made concrete: `root` when given, else the variable's
    value when it is set, else the user cache folder (which is always searched)."""
    text = spec.how_to_get
    if "$SELFSUP_DATA" not in text:
        return text
    if root:
        return text.replace("$SELFSUP_DATA", display_path(os.path.expanduser(os.fspath(root))))
    if os.environ.get("SELFSUP_DATA"):
        return text.replace("$SELFSUP_DATA", display_path(os.environ["SELFSUP_DATA"]))
    cache = search_dirs()[-1]
    return (text.replace("$SELFSUP_DATA", display_path(cache))
            + " (or into any folder named by $SELFSUP_DATA or --root; $SELFSUP_DATA is not set here)")


def _candidates(spec: NamedDataset, root: str | None) -> list[str]:
    dirs = [os.path.expanduser(os.fspath(root))] if root else []  # root may be the dataset folder itself
    dirs += [os.path.join(base, folder) for base in search_dirs(root) for folder in spec.folders]
    return dirs


def _find_files(directory: str, needed: tuple) -> tuple[dict[str, str], str | None]:
    """(found files by first name, first missing name) for the files `needed` in `directory`."""
    found = {}
    for entry in needed:
        options = entry if isinstance(entry, tuple) else (entry,)
        hit = next((os.path.join(directory, o) for o in options if os.path.isfile(os.path.join(directory, o))), None)
        if hit is None:
            return found, options[0]
        found[options[0]] = hit
    return found, None


def _locate(spec: NamedDataset, split: str, root: str | None) -> tuple[str, dict[str, str]]:
    needed = spec.files[split]
    partial = None  # first folder that exists but lacks a file: the most useful thing to report
    for directory in _candidates(spec, root):
        if not os.path.isdir(directory):
            continue
        found, missing = _find_files(directory, needed)
        if missing is None:
            return directory, found
        # root itself is usually a collection folder: blame it only when it holds some of the files
        if partial is None and (found or not root or directory != os.path.expanduser(os.fspath(root))):
            partial = os.path.join(directory, missing)
    first = needed[0][0] if isinstance(needed[0], tuple) else needed[0]
    places = ", ".join(display_path(p) for p in search_dirs(root))
    folders = ", ".join(spec.folders)
    what = f"{display_path(partial)} is missing" if partial else f"{first} was not found"
    raise DataError(
        f"{spec.name} ({split}): {what}; looked in {places} (subfolders {folders}).",
        how_to_get(spec, root) + ".",
    )


def _resize(ds: ImageDataset, size: tuple[int, int] | None) -> ImageDataset:
    if size is None or ds.image_size == size:
        return ds
    images = torch.empty((len(ds), ds.channels, *size), dtype=torch.uint8)
    for start in range(0, len(ds), 4096):  # chunks bound the float copy's memory
        chunk = ds.images[start:start + 4096].float()
        chunk = torch.nn.functional.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False)
        images[start:start + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return replace(ds, images=images)


def _detect_named(path: str, split: str) -> ImageDataset | None:
    """The dataset in a folder that holds a named dataset's official files (e.g. a cifar-10-batches-py copy)."""
    base = os.path.basename(os.path.normpath(path))
    tail = "/".join(os.path.normpath(path).split(os.sep)[-2:])  # e.g. FashionMNIST/raw
    for spec in CATALOGUE.values():
        if split not in spec.files:
            continue
        found, missing = _find_files(path, spec.files[split])
        if missing is not None:
            continue
        # mnist, fashion-mnist and kmnist use the same file names: only the folder name tells them apart.
        lookalikes = [s for s in CATALOGUE.values() if s.files == spec.files]
        named = [s for s in lookalikes if {base, tail} & set(s.folders) or _ALIASES.get(base.lower()) == s.name]
        if named:
            return named[0].read(path, split, found)
        if len(lookalikes) == 1:
            return spec.read(path, split, found)
        images, labels = found.values()
        return load_idx(images, labels, name=display_path(base), id_prefix=f"{display_path(base)}/{split}")
    return None


def _folder_split(path: str, split: str) -> str:
    sub = os.path.join(path, split)
    if os.path.isdir(sub):
        return sub
    present = [s for s in _SPLIT_FOLDERS if os.path.isdir(os.path.join(path, s))]
    if present:
        raise DataError(
            f"image folder {display_path(path)} has split folders {', '.join(present)} but no {split!r}.",
            f"choose a split from {', '.join(present)}, or add {display_path(sub)}.",
        )
    return path


def load_image_path(path: str, split: str, image_size=None) -> ImageDataset:
    """Images at a path: an .npy/.npz array file, a folder holding a named dataset's official files,
    or an image folder (``path/<split>`` when it has split folders)."""
    size = parse_image_size(image_size)
    if os.path.isfile(path):
        return _resize(load_arrays(path, split), size)
    named = _detect_named(path, split)
    if named is not None:
        return _resize(named, size)
    folder = _folder_split(path, split)
    ds = load_image_folder(folder, size)
    # root/test is named after root, not "test"
    return ds if folder == path else replace(ds, name=display_path(os.path.basename(os.path.normpath(path))))


def _formats() -> str:
    from ..modalities.base import plugins

    return "; ".join(m.formats for m in plugins() if m.formats)


def load_dataset(name_or_path: str, split: str = "train", root: str | None = None, image_size=None, *,
                 label: str | None = None, schema: TableSchema | None = None, categorical=(), numeric=(),
                 modality: str | None = None):
    """A named dataset (see :func:`dataset_names`) or the data at a path, read by the modality that
    claims it (``selfsup.modalities``: an image folder or array file, a table, ...).

    `split`: train, test (and unlabeled, train+unlabeled for stl10); for a path, the subfolder or
    the npz keys of that split (a table file is one split: pass another file as the test split).
    `image_size` (int or (h, w)) resizes every image to that size. Tables: `label` names the label
    column, `schema` is the encoding of the training data (pass ``train.schema`` when reading its
    test split or new data), `categorical` / `numeric` force column kinds (see :mod:`.table`).
    A modality ignores the options that are not its own. A known name wins over a folder of the
    same name: write ``./mnist`` for the folder. A name that is neither a catalogue entry nor an
    existing path is looked up as a UCR/UEA time-series set (``GunPoint``, ``ucr:GunPoint``; see
    :func:`.series.load_named_series`). `modality` (not None or "auto") reads a path with that
    plug-in whatever its kind looks like (a float (N, H, W) array as series, say).
    """
    from ..modalities.base import plugins

    parse_image_size(image_size)  # a bad size fails before any file is looked for
    options = {"image_size": image_size, "label": label, "schema": schema, "categorical": tuple(categorical),
               "numeric": tuple(numeric)}
    text = os.fspath(name_or_path)
    key = text.strip().lower().replace("_", "-")
    name = _ALIASES.get(key) or _ALIASES.get(key.replace("-", ""))
    if name is not None:
        spec = CATALOGUE[name]
        if split not in spec.files:
            raise DataError(f"{name} has no split {split!r}.{closest(split, spec.splits)}",
                            f"use one of: {', '.join(spec.splits)}.")
        directory, found = _locate(spec, split, root)
        return spec.read(directory, split, found, **options)
    path = os.path.expanduser(text)
    from .shards import is_shard_dir, load_shard_split

    if is_shard_dir(path):  # in memory: the source's split, or the shards read back (a run streams them instead)
        return load_shard_split(path, split, root=root, image_size=image_size, schema=schema)
    if os.path.exists(path):
        if modality not in (None, "auto"):
            from ..modalities import modality_of

            return modality_of(modality).load(path, split, **options)
        for plugin in plugins():
            if plugin.claims(path):
                return plugin.load(path, split, **options)
        raise DataError(f"cannot read the file {display_path(path)}: no modality reads it.",
                        f"pass a named dataset ({', '.join(dataset_names())}) or one of: {_formats()}.")
    graph_name = text.strip().lower().replace("-", "_")
    if graph_name in NAMED_GRAPHS:  # molecules inside the RDKit wheel, the karate club (data/graph.py)
        from ..modalities import modality_of

        return modality_of("graph").load_named(graph_name, split)
    # a time-series set of the UCR/UEA archive by name (GunPoint, ucr:GunPoint), see data/series.py
    if text.strip().lower().startswith(("ucr:", "uea:")) or find_named_series(text, root) is not None:
        return load_named_series(text, split, root)
    raise DataError(
        f"no dataset or path '{display_path(text)}'.{closest(key, dataset_names())}",
        f"pass one of the named datasets ({', '.join(dataset_names())}), a UCR/UEA set by name (found under "
        f"--set data.root=DIR, $SELFSUP_DATA or their ucr/ folder; `selfsup datasets` lists those found) "
        f"or one of: {_formats()}.",
    )


def describe_datasets(root: str | None = None) -> list[dict]:
    """One dict per named dataset: name, splits, where (the folder with its train files, or
    "missing"), how_to_get, and status (one line for `selfsup datasets`). Reads no data."""
    rows = []
    for spec in CATALOGUE.values():
        try:
            where, _ = _locate(spec, "train", root)
            status = f"found in {display_path(where)}"
        except DataError:
            where = "missing"
            status = f"missing: {how_to_get(spec, root)}"
        rows.append({"name": spec.name, "splits": spec.splits, "where": where, "how_to_get": how_to_get(spec, root),
                     "status": status})
    for name, what in NAMED_GRAPHS.items():  # inside installed packages: found when the package is
        found = importlib.util.find_spec("networkx" if name == "karate" else "rdkit") is not None
        rows.append({"name": name, "splits": list(GRAPH_SPLITS), "where": "installed package" if found else "missing",
                     "how_to_get": "pip install 'selfsup[graph]'",
                     "status": f"{'found' if found else 'missing'}: {what}" + ("" if found else
                                                                             "; pip install 'selfsup[graph]'")})
    for row in series_sets(root):
        rows.append({"name": row["name"], "splits": row["splits"], "where": row["where"], "how_to_get": "",
                     "status": row["status"]})
    return rows


def describe_series(root: str | None = None) -> list[dict]:
    """One dict per time-series set of the UCR/UEA archive found where :func:`load_dataset` looks for
    one by name (`root` and `root/ucr`, $SELFSUP_DATA and its ucr/, /usr/share/datasets/ucr, the
    user cache's ucr/, an installed aeon's or sktime's data folder; the first place wins for a
    name): name, splits, where, origin, format, channels, length (int, "variable" or None), classes
    (count; 0 unlabelled) and status (one line for `selfsup datasets`). Reads file headers only."""
    return series_sets(root)
