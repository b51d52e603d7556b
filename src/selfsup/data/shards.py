"""Sharded tar archives (WebDataset layout) for training sets larger than memory.

``selfsup shard DATA --out DIR`` (:func:`write_shards`) reads a dataset with the usual readers, shuffles
it once (seeded) and writes it as ``shard-000000.tar``, ``shard-000001.tar``, ... of a chosen number of
samples, one sample per key: ``<key>.npy`` (the sample as the dataset stores it: uint8 (C, H, W) images,
float32 (F,) rows or (C, T) series) and ``<key>.json`` (``{"id": ..., "label": ...}``, the label when
there are labels); the key is the sample's index in the data the shards were written from. ``DIR/manifest.json`` records the modality, the sample shape and dtype, the normalization,
input spec and schema the encoder needs, the class names, the counts, each shard's name, size and
SHA-256, and where the data came from (so evaluation can read its test split).

Pretraining with ``data.name=DIR`` (or ``DIR/manifest.json``) streams: :class:`ShardSet` stands in for
the in-memory dataset (its first readable shard, ``head``, answers what the modality asks of the data:
channels, image size, a table's rows for SCARF's marginals, the online kNN's bank), and
:class:`ShardStream` gives the step loop one batch of raw samples per step; the views are drawn on the
device from that batch, as in memory. DataLoader workers (``data.workers``) read, check and decode
whole shards off the training process.

The order is a function of the seed: epoch e visits the shards in a permutation drawn from (seed, e),
the samples of each shard in a permutation drawn from (seed, e, shard), and consecutive batches are
cut from that sequence (across shard boundaries; an epoch's last partial batch is dropped). The
position (epoch, shard, offset) is saved with every checkpoint and a resumed run starts there, so it
draws the same batches as an uninterrupted run, whatever the number of workers. Under torchrun rank r
of N reads only the shards at positions p % N == r of each epoch's order, its share of the batch at a
time, and each rank's position is saved (step loop: ``stream_position``).

A shard whose size, tar headers or sample count disagree with the manifest is skipped before training
(a truncated copy, an interrupted write); one whose bytes or samples turn out bad when a worker reads
it (SHA-256 mismatch, an undecodable sample) is skipped when it is reached. Either way a warning names
it, and the run's ``results.json`` counts and lists it; it never stops the run. A directory with no
readable shard is a DataError.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..files import atomic_write, display_path

MANIFEST = "manifest.json"
FORMAT = "selfsup-shards/1"
_FIX_WEBDATASET = "pip install 'selfsup[stream]' (webdataset)"


def _webdataset():
    try:
        import webdataset
    except ImportError:
        raise DataError("reading or writing shards needs the webdataset package, which is not installed.",
                        _FIX_WEBDATASET + ".") from None
    return webdataset


def _seed(*parts: int) -> int:
    value = 0x5EED
    for p in parts:
        value = (value * 1_000_003 + int(p) * 7_919 + 12_345) % (2**62)
    return value


# ---------------------------------------------------------------------------------------------- writing


def write_shards(dataset, out: str | os.PathLike, samples_per_shard: int, source: dict, seed: int = 0,
                 progress=None) -> dict:
    """Write `dataset` (a dense in-memory dataset: images, table rows or series) into tar shards of
    `samples_per_shard` samples under `out`, in an order shuffled by `seed`, and the manifest; returns
    the manifest. `source` records how to read the data again ({data, root, split, image_size, label}),
    for evaluation. Refuses an `out` that already holds shards."""
    from ..modalities import modality_of

    wds = _webdataset()
    plugin = modality_of(dataset)
    samples = dataset.samples
    if not torch.is_tensor(samples):
        plugin.from_samples(None, None, [], "", "")  # a ragged kind: the plug-in's refusal (DataError)
    if samples_per_shard < 1:
        raise ConfigError(f"--samples-per-shard {samples_per_shard} is not a positive count.",
                          "pass e.g. --samples-per-shard 10000.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{display_path(out)}' is a file.", "pass a folder for the shards.")
    if out.is_dir() and ((out / MANIFEST).exists() or any(out.glob("shard-*.tar"))):
        raise ConfigError(f"'{display_path(out)}' already holds shards.", "choose an empty --out folder, or delete it first.")
    out.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if seed >= 0 else torch.arange(n)
    labels = dataset.labels
    entries = []
    for number, start in enumerate(range(0, n, samples_per_shard)):
        name = f"shard-{number:06d}.tar"
        rows = order[start:start + samples_per_shard]
        tmp = out / f".{name}.tmp"
        with open(tmp, "wb") as handle:
            # plain ustar headers (no PAX records): half the bytes and half the parsing of the default
            writer = wds.TarWriter(handle, encoder=False, mtime=0, format=tarfile.USTAR_FORMAT)
            for i in rows.tolist():
                buffer = io.BytesIO()
                np.save(buffer, samples[i].numpy(), allow_pickle=False)
                meta = {"id": str(dataset.ids[i]).encode("utf-8", "backslashreplace").decode()}
                if labels is not None:
                    meta["label"] = int(labels[i])
                writer.write({"__key__": f"{i:010d}", "npy": buffer.getvalue(), "json": json.dumps(meta).encode()})
            writer.close()
        os.replace(tmp, out / name)
        data = (out / name).read_bytes()
        entries.append({"name": name, "count": len(rows), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        if progress is not None:
            progress(f"wrote {name} ({len(rows)} {plugin.nouns})")
    mean, std = dataset.normalization()
    schema = getattr(dataset, "schema", None)
    manifest = {
        "format": FORMAT, "modality": plugin.name, "name": dataset.name, "source": source, "count": n,
        "sample_shape": list(samples.shape[1:]), "dtype": str(samples.dtype).removeprefix("torch."),
        "labels": labels is not None, "classes": None if dataset.classes is None else list(dataset.classes),
        "mean": list(mean), "std": list(std), "input_spec": dataset.input_spec(),
        "schema": None if schema is None else plugin.schema_to_dict(schema), "seed": seed,
        "samples_per_shard": samples_per_shard, "shards": entries,
    }
    atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
    return manifest


# ---------------------------------------------------------------------------------------------- reading


def manifest_path(path: str | os.PathLike) -> Path | None:
    """The manifest of a shard directory (or the manifest itself), or None when `path` is neither."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.is_file() and p.name == MANIFEST:
        return p
    if p.is_dir() and (p / MANIFEST).is_file():
        return p / MANIFEST
    return None


def is_shard_dir(path) -> bool:
    return manifest_path(path) is not None


def read_manifest(path) -> tuple[Path, dict]:
    """(shard directory, manifest) of `path`; a manifest that is not selfsup's is a DataError."""
    mpath = manifest_path(path)
    if mpath is None:
        raise DataError(f"'{display_path(path)}' is not a shard directory (no {MANIFEST}).",
                        "pass the --out folder of `selfsup shard`.")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        ok = isinstance(manifest, dict) and manifest.get("format") == FORMAT and isinstance(manifest.get("shards"), list)
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"'{display_path(mpath)}' is not a readable {FORMAT} manifest.",
                        "write the shards again with `selfsup shard DATA --out DIR`.")
    return mpath.parent, manifest


def check_shard(directory: Path, entry: dict) -> str | None:
    """Why shard `entry` cannot be read (missing, or not the size the manifest says: truncated, an
    interrupted copy); None when it looks whole. Reads nothing: the bytes (SHA-256), the tar structure
    and every sample are checked when a worker reads the shard (:func:`read_shard`)."""
    path = directory / entry["name"]
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if size != entry["bytes"]:
        return f"{size} bytes, the manifest says {entry['bytes']} (truncated or rewritten)"
    return None


def read_shard(directory: Path, entry: dict, manifest: dict) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, list[str]]:
    """(samples (n, ...), labels (n,) or None, keys (n,) int64, ids) of one shard, in the written order.
    Raises ValueError naming what is wrong (bytes that differ from the manifest, a bad sample)."""
    wds = _webdataset()
    data = (directory / entry["name"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ValueError("its bytes differ from the manifest's SHA-256 (corrupt)")
    shape, dtype = tuple(manifest["sample_shape"]), np.dtype(manifest["dtype"])
    arrays, labels, keys, ids = [], [], [], []
    header = None  # every sample has the same .npy header: parsed once, then compared byte for byte
    files = wds.tariterators.tar_file_expander([{"url": entry["name"], "stream": io.BytesIO(data)}])
    for sample in wds.tariterators.group_by_keys(files):
        raw = sample["npy"]
        if header is None or raw[:len(header)] != header:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"sample {sample['__key__']} is {array.dtype} {array.shape}, not {dtype} {shape}")
            header = raw[:len(raw) - array.nbytes]
        else:
            array = np.frombuffer(raw, dtype, offset=len(header)).reshape(shape)
        arrays.append(array)
        keys.append(int(sample["__key__"]))
        meta = json.loads(sample["json"])
        ids.append(meta["id"])
        if manifest["labels"]:
            labels.append(int(meta["label"]))
    if len(arrays) != entry["count"]:
        raise ValueError(f"{len(arrays)} samples, the manifest says {entry['count']}")
    samples = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty((0, *shape))
    return (samples, torch.tensor(labels, dtype=torch.long) if manifest["labels"] else None,
            torch.tensor(keys, dtype=torch.long), ids)


def _plugin(manifest: dict):
    from ..modalities import modality_of

    return modality_of(manifest["modality"])


def _schema(manifest: dict):
    return None if manifest.get("schema") is None else _plugin(manifest).schema_from_dict(manifest["schema"])


def _dataset(manifest: dict, directory: Path, samples, labels, ids, skipped=()):
    ds = _plugin(manifest).from_samples(samples, labels, ids, manifest["name"], display_path(directory),
                                        manifest.get("classes"), _schema(manifest))
    ds.skipped = list(skipped)
    return ds


def _scan(directory: Path, manifest: dict) -> tuple[list[int], list[tuple[str, str]]]:
    good, bad = [], []
    for i, entry in enumerate(manifest["shards"]):
        why = check_shard(directory, entry)
        if why is None:
            good.append(i)
        else:
            bad.append((entry["name"], why))
    return good, bad


def _no_shard_error(directory: Path, bad) -> DataError:
    shown = "; ".join(f"{name}: {why}" for name, why in bad[:3]) or "the manifest lists none"
    return DataError(f"shard directory '{display_path(directory)}' has no readable shard ({shown}).",
                     "write the shards again with `selfsup shard DATA --out DIR`.")


def load_shards(path, limit: int | None = None):
    """The shards of `path` read back into one in-memory dataset (in the written order; at most `limit`
    samples): for evaluation and embedding of sharded data that fits in memory."""
    directory, manifest = read_manifest(path)
    good, bad = _scan(directory, manifest)
    parts, skipped = [], list(bad)
    total = 0
    for i in good:
        entry = manifest["shards"][i]
        try:
            parts.append(read_shard(directory, entry, manifest))
        except (ValueError, KeyError, OSError, tarfile.TarError) as exc:
            skipped.append((entry["name"], str(exc)))
            continue
        total += len(parts[-1][0])
        if limit is not None and total >= limit:
            break
    if not parts:
        raise _no_shard_error(directory, skipped)
    samples = torch.cat([p[0] for p in parts])[:limit]
    labels = torch.cat([p[1] for p in parts])[:limit] if manifest["labels"] else None
    ids = [i for p in parts for i in p[3]][:len(samples)]
    return _dataset(manifest, directory, samples, labels, ids, skipped)


def load_shard_split(path, split: str, root=None, image_size=None, schema=None, **_):
    """Data for evaluation when ``data.name`` is a shard directory: `split` of the data the shards were
    written from (the source in the manifest: a named dataset's test split, say), read in memory as
    ``load_dataset`` reads it; the sharded split itself read back from the shards when its source is
    gone. Another split without its source is a DataError."""
    from .catalogue import load_dataset

    directory, manifest = read_manifest(path)
    source = manifest.get("source") or {}
    if source.get("data"):
        try:
            return load_dataset(source["data"], split=split, root=source.get("root") if root is None else root,
                                image_size=source.get("image_size") if image_size is None else image_size,
                                label=source.get("label"), schema=schema if schema is not None else _schema(manifest))
        except DataError as err:
            if split != source.get("split", "train"):
                raise DataError(f"shard directory '{display_path(directory)}' holds the {source.get('split', 'train')!r} "
                                f"split; its {split!r} split comes from '{source['data']}', which cannot be read here "
                                f"({err.problem.rstrip('.')}).", "pass the test data itself (--test-split PATH).") from None
    elif split != "train":
        raise DataError(f"shard directory '{display_path(directory)}' has no {split!r} split.",
                        "pass the test data itself (--test-split PATH).")
    return load_shards(directory)


# ---------------------------------------------------------------------------------------------- streaming


class ShardSet:
    """A training set in shards, standing in for the in-memory dataset in a run (see the module
    docstring). ``streaming`` tells the step loop to draw batches from :meth:`stream`; what the
    modality asks of the data that the manifest does not answer, the first readable shard (``head``)
    does."""

    streaming = True

    def __init__(self, path, workers: int = 2):
        self.directory, self.manifest = read_manifest(path)
        self.workers = workers
        self.good, self.skipped = _scan(self.directory, self.manifest)
        for name, why in self.skipped:
            print(f"warning: skipped shard {display_path(self.directory / name)}: {why}", file=sys.stderr)
        head = None
        for i in list(self.good):
            entry = self.manifest["shards"][i]
            try:
                samples, labels, _, ids = read_shard(self.directory, entry, self.manifest)
            except (ValueError, KeyError, OSError, tarfile.TarError) as exc:
                print(f"warning: skipped shard {display_path(self.directory / entry['name'])}: {exc}", file=sys.stderr)
                self.skipped.append((entry["name"], str(exc)))
                self.good.remove(i)
                continue
            head = _dataset(self.manifest, self.directory, samples, labels, ids)
            break
        if head is None:
            raise _no_shard_error(self.directory, self.skipped)
        self.head = head
        self.modality = self.manifest["modality"]
        self.name = self.manifest["name"]
        self.count = sum(self.manifest["shards"][i]["count"] for i in self.good)
        self.schema = _schema(self.manifest)

    def __len__(self) -> int:
        return self.count

    def __getattr__(self, name):  # channels, image_size, values (a table's rows for SCARF), classes, ...
        if name.startswith("__") or name == "head":
            raise AttributeError(name)
        return getattr(self.head, name)

    @property
    def labels(self):
        return self.head.labels  # says whether there are labels; the stream gives each batch's own

    @property
    def samples(self):
        raise TypeError("a ShardSet has no samples in memory; draw batches from stream()")

    def normalization(self) -> tuple[list[float], list[float]]:
        return list(self.manifest["mean"]), list(self.manifest["std"])

    def input_spec(self) -> dict:
        return dict(self.manifest["input_spec"])

    def stream(self, batch_size: int, seed: int, position: dict | None = None, rank: int = 0,
               ranks: int = 1) -> "ShardStream":
        """The batches of `batch_size` from `position` on; under data parallelism (`ranks` > 1) rank
        `rank`'s: the shards at the positions p of each epoch's order with p % ranks == rank."""
        n = len(self.manifest["shards"])
        if ranks > n:
            raise DataError(f"'{display_path(self.directory)}' has {n} shard(s), fewer than the {ranks} processes "
                            "that each read their own.", f"write at least {ranks} shards (`selfsup shard "
                            "--samples-per-shard` smaller), or launch fewer processes.")
        return ShardStream(self, batch_size, seed, position, rank, ranks)


def epoch_layout(n_shards: int, seed: int, epoch: int) -> list[int]:
    """The order epoch `epoch` visits the manifest's shards in (indices into its list)."""
    return torch.randperm(n_shards, generator=torch.Generator().manual_seed(_seed(seed, epoch))).tolist()


class _ShardItems(torch.utils.data.IterableDataset):
    """Every (epoch, position) from a start onwards, as one item per shard: the shard read, checked,
    decoded and shuffled (or the reason it could not be). With W workers, worker w yields items w, w+W,
    ...; the DataLoader takes them round-robin, so the items arrive in order."""

    def __init__(self, directory: Path, manifest: dict, good: set[int], seed: int, epoch: int, position: int,
                 rank: int = 0, ranks: int = 1):
        self.directory, self.manifest, self.good, self.seed = directory, manifest, good, seed
        self.epoch, self.position, self.rank, self.ranks = epoch, position, rank, ranks

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        n = len(self.manifest["shards"])
        k = -1
        epoch = self.epoch
        while True:
            layout = epoch_layout(n, self.seed, epoch)
            for pos in range(self.position if epoch == self.epoch else 0, n):
                if pos % self.ranks != self.rank:  # data parallel: another rank's shard
                    continue
                k += 1
                if k % workers != worker:
                    continue
                yield self._item(epoch, pos, layout[pos])
            epoch += 1

    def _item(self, epoch: int, pos: int, shard: int) -> dict:
        entry = self.manifest["shards"][shard]
        item = {"epoch": epoch, "position": pos, "name": entry["name"], "error": None}
        if shard not in self.good:
            return {**item, "error": "skipped before training"}
        try:
            samples, labels, keys, _ = read_shard(self.directory, entry, self.manifest)
        except (ValueError, KeyError, OSError, tarfile.TarError) as exc:
            return {**item, "error": str(exc) or type(exc).__name__}
        perm = torch.randperm(len(samples), generator=torch.Generator().manual_seed(_seed(self.seed, epoch, shard)))
        return {**item, "samples": samples[perm], "labels": None if labels is None else labels[perm], "keys": keys[perm]}


class ShardStream:
    """The batches of a run from shards: ``next()`` -> (samples (B, ...), labels (B,) or None, keys (B,)),
    the keys being each sample's index in the data the shards were written from; ``position()`` is
    where the next batch starts (saved with a checkpoint), a ShardStream made with it goes on from
    there. ``skipped`` lists (shard, reason) for every shard skipped so far. Rank `rank` of `ranks`
    reads only its own shards (positions p % ranks == rank of each epoch's order); its position is
    the earliest order position it has not finished, and its next shard is the first of its own
    from there."""

    def __init__(self, shards: ShardSet, batch_size: int, seed: int, position: dict | None = None, rank: int = 0,
                 ranks: int = 1):
        self.shards, self.batch_size, self.seed, self.rank, self.ranks = shards, batch_size, seed, rank, ranks
        position = position or {"epoch": 0, "shard": 0, "offset": 0}
        self.epoch, self.shard, self.offset = int(position["epoch"]), int(position["shard"]), int(position["offset"])
        self.skipped = list(shards.skipped)
        self._buffer: list[dict] = []  # chunks of the current epoch not yet consumed, each with its position
        items = _ShardItems(shards.directory, shards.manifest, set(shards.good), seed, self.epoch, self.shard, rank, ranks)
        workers = shards.workers
        self._loader = torch.utils.data.DataLoader(items, batch_size=None, num_workers=workers,
                                                   prefetch_factor=2 if workers else None,
                                                   persistent_workers=False, multiprocessing_context="fork" if workers else None)
        self._items = iter(self._loader)
        self._skip_first = self.offset  # a resumed stream: the samples of the first shard already consumed

    def position(self) -> dict:
        return {"epoch": self.epoch, "shard": self.shard, "offset": self.offset}

    def _pull(self) -> None:
        item = next(self._items)
        if (item["epoch"], item["position"]) < (self.epoch, self.shard):
            raise RuntimeError(f"shard items out of order: {item['epoch'], item['position']} after {self.epoch, self.shard}")
        if item["epoch"] != self.epoch:  # a new epoch: what is left of the last one (< a batch) is dropped
            self._buffer.clear()
            self.epoch, self.shard, self.offset = item["epoch"], 0, 0
        if item["error"] is not None:
            if all(name != item["name"] for name, _ in self.skipped):
                self.skipped.append((item["name"], item["error"]))
                print(f"warning: skipped shard {display_path(self.shards.directory / item['name'])}: {item['error']}",
                      file=sys.stderr)
            self._buffer.append({"position": item["position"], "start": 0, "n": 0})
            return
        start, self._skip_first = self._skip_first, 0
        self._buffer.append({"position": item["position"], "start": start, "n": len(item["samples"]),
                             "samples": item["samples"], "labels": item["labels"], "keys": item["keys"]})

    def _available(self) -> int:
        return sum(c["n"] - c["start"] for c in self._buffer)

    def __iter__(self):
        return self

    def __next__(self):
        pulled = 0
        n_shards = len(self.shards.manifest["shards"])
        while self._available() < self.batch_size:
            self._pull()
            pulled += 1
            if pulled > 2 * n_shards + 1:
                share = f" that process {self.rank} of {self.ranks} reads" if self.ranks > 1 else ""
                raise DataError(f"the readable shards{share} of '{display_path(self.shards.directory)}' hold fewer "
                                f"{_plugin(self.shards.manifest).nouns} than one batch of {self.batch_size}.",
                                "use a smaller --batch-size, or write more data (or more, smaller shards).")
        parts, need = [], self.batch_size
        while need:
            chunk = self._buffer[0]
            take = min(need, chunk["n"] - chunk["start"])
            if take:
                parts.append((chunk, chunk["start"], chunk["start"] + take))
            chunk["start"] += take
            need -= take
            if chunk["start"] == chunk["n"]:
                self._buffer.pop(0)
        # where the next batch starts: the first chunk left, else the shard after the last one pulled
        last = parts[-1][0]["position"]
        while self._buffer and self._buffer[0]["n"] == self._buffer[0]["start"]:
            last = self._buffer.pop(0)["position"]
        if self._buffer:
            self.shard, self.offset = self._buffer[0]["position"], self._buffer[0]["start"]
        else:
            self.shard, self.offset = last + 1, 0
        samples = torch.cat([c["samples"][a:b] for c, a, b in parts])
        labels = torch.cat([c["labels"][a:b] for c, a, b in parts]) if parts[0][0]["labels"] is not None else None
        keys = torch.cat([c["keys"][a:b] for c, a, b in parts])
        return samples, labels, keys

    def close(self) -> None:
        self._items = None
        self._loader = None
