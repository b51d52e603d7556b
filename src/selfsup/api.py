"""The Python API: the same four verbs as the CLI.

    run = selfsup.pretrain(data="fashion-mnist", method="simclr", steps=2000, out="runs/fm")
    encoder = selfsup.load_encoder("runs/fm")
    results = selfsup.evaluate("runs/fm", data="fashion-mnist")
    selfsup.embed("runs/fm", data="path/to/images", out="emb.parquet")
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import torch

from . import config as C
from .encoder import Encoder, load_encoder
from .errors import ConfigError, DataError


def _as_config(config, flags: dict, overrides: Iterable[str]) -> C.RunConfig:
    """A RunConfig from a RunConfig, a dict or a YAML path, with overrides, then flags, applied."""
    if not isinstance(config, (C.RunConfig, dict)):
        return C.load(config, list(overrides), **flags)
    data = C.to_dict(config) if isinstance(config, C.RunConfig) else dict(config)
    for text in overrides:
        C.merge(data, *C.parse_override(text))
    for name, value in flags.items():
        if value is not None:
            C.merge(data, name.split("__"), value)
    return C.from_dict(data)


def pretrain(config: C.RunConfig | dict | str | os.PathLike | None = None, *, data: str | None = None,
             method: str | None = None, backbone: str | None = None, steps: int | None = None,
             batch_size: int | None = None, lr: float | None = None, seed: int | None = None,
             device: str | None = None, out: str | os.PathLike | None = None, overrides: Iterable[str] = (),
             resume: bool = False, evaluate: bool = True, report: bool = True):
    """Pretrain an encoder, export it, evaluate it on the test split and write the report.

    `config` is a RunConfig, a dict or a YAML path; keyword arguments and ``overrides``
    (``"section.key=value"`` strings) take precedence. Returns the trainer's RunResult with
    ``results`` filled in (also written to ``<out>/results.json``).
    """
    from .train.loop import train

    cfg = _as_config(config, {"data__name": data, "method__name": method, "backbone__name": backbone,
                              "train__steps": steps, "train__batch_size": batch_size, "optim__lr": lr,
                              "train__seed": seed, "train__device": device,
                              "out": None if out is None else str(out)}, overrides)
    run = train(cfg, resume=resume)
    _write_results(run.run_dir, run.results)
    if evaluate and cfg.data.test_split:
        run.results.update(_evaluate_datasets(run.encoder, run.train_set, cfg.data.name, cfg.data.test_split,
                                              cfg.data.root, cfg.data.image_size, cfg.eval, run.run_dir,
                                              run.device, amp=run.dtype is not None, seed=cfg.train.seed,
                                              report=report, strict=False))
    elif report:
        _write_report(run.run_dir, run.results)
    return run


def check_compatible(data, reference, what: str) -> None:
    """`data` must be the same kind of data as `reference` (the encoder's or the train split's)."""
    if data.modality != reference.modality:
        raise DataError(f"the {what} data '{data.name}' is {'an' if data.modality == 'image' else 'a'} {data.modality} dataset, the training data {'an' if reference.modality == 'image' else 'a'} {reference.modality} one.",
                        f"pass {reference.modality} data of the kind the encoder was trained on.")
    if data.modality == "image" and (data.image_size != reference.image_size or data.channels != reference.channels):
        raise DataError(f"{what} images are {data.channels}x{data.image_size} but train images are "
                        f"{reference.channels}x{reference.image_size}.", "set data.image_size so both splits are resized alike.")


def _write_results(run_dir: Path, results: dict) -> None:
    from .train.checkpoint import atomic_write

    path = run_dir / "results.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged.update(results)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(merged, indent=2)))


def _write_report(run_dir: Path, results: dict, embeddings=None, class_names=None) -> Path:
    from .report import write_report

    _write_results(run_dir, results)
    return write_report(run_dir, embeddings=embeddings, class_names=class_names)


def _evaluate_datasets(encoder: Encoder, train_set, name: str, test_split: str, root, image_size,
                       eval_cfg: C.EvalConfig, run_dir: Path | None, device, amp: bool, seed: int,
                       report: bool, strict: bool = True) -> dict:
    """Run the protocols; with ``strict=False`` (after pretraining) a missing test split or missing
    labels skip the supervised protocols with a note instead of failing."""
    import sys

    from . import registry
    from .data import load_dataset
    from .evaluation import evaluate as run_protocols
    from .evaluation.features import cached_features

    # test_split is a split name of the train data, or a path of its own (a folder, array file or table)
    schema = getattr(train_set, "schema", None)  # a table's test split is encoded like its train split
    if Path(test_split).exists():
        test_set = load_dataset(test_split, root=root, image_size=image_size, schema=schema)
    else:
        test_set = load_dataset(name, split=test_split, root=root, image_size=image_size, schema=schema)
    check_compatible(test_set, train_set, "test")
    protocols = tuple(eval_cfg.protocols)
    problem = None
    if test_set.ids == train_set.ids:
        problem = f"'{name}' has no separate {test_split!r} split, so there is nothing held out to score on"
        test_set = None
    elif train_set.labels is None or test_set.labels is None:
        problem = f"'{name}' has no labels"
    if problem:
        needs_labels = {p for p in protocols if getattr(registry.get("protocol", p), "needs_labels", False)}
        if needs_labels and strict:
            raise DataError(f"{problem}; protocols {', '.join(sorted(needs_labels))} need labelled test data.",
                            "pass --test-split PATH (a labelled folder or .npz), or --protocols rankme.")
        if needs_labels:
            print(f"note: {problem}; skipped {', '.join(sorted(needs_labels))}. "
                  "Run `selfsup evaluate RUN --data ... --test-split PATH` with labelled test data.", file=sys.stderr)
        protocols = tuple(p for p in protocols if p not in needs_labels)
    cache_dir = None if run_dir is None else Path(run_dir) / "features"
    knn = {"knn_k": eval_cfg.knn_k, "knn_temperature": eval_cfg.knn_temperature} if "knn" in protocols else {}
    results = run_protocols(encoder, train_set, test_set, protocols=protocols, cache_dir=cache_dir,
                            device=device, seed=seed, amp=amp, batch_size=eval_cfg.batch_size, **knn)
    if run_dir is not None:
        embeddings = None
        if report:
            shown = test_set if test_set is not None else train_set
            feats = cached_features(encoder, shown, cache_dir=cache_dir, device=device, amp=amp,
                                    batch_size=eval_cfg.batch_size)
            embeddings = (feats, shown.labels)
            _write_report(Path(run_dir), results, embeddings, shown.classes)
        else:
            _write_results(Path(run_dir), results)
    return results


def evaluate(encoder: Encoder | str | os.PathLike, data: str = "fashion-mnist", *, train_split: str = "train",
             test_split: str = "test", root: str | None = None, image_size: int | None = None,
             protocols: Iterable[str] = ("knn", "linear", "rankme"), knn_k: int = 20, knn_temperature: float = 0.07,
             device: str = "auto", seed: int = 0, report: bool = True) -> dict:
    """Evaluate an encoder (object, run directory or encoder path) with the named protocols.

    When `encoder` is a run directory, results are merged into its ``results.json`` (one key per
    protocol) and its report is refreshed; features are cached under ``<run>/features``.
    """
    from .data import load_dataset
    from .train.hardware import resolve_device, resolve_precision

    dev = resolve_device(device)
    run_dir = None
    if not isinstance(encoder, torch.nn.Module):
        path = Path(encoder)
        run_dir = path if (path / "encoder").is_dir() else None
        encoder = load_encoder(path, device=dev)
    encoder = encoder.to(dev).eval()
    amp = resolve_precision("auto", dev) is not None
    eval_cfg = C.EvalConfig(protocols=tuple(protocols), knn_k=knn_k, knn_temperature=knn_temperature)
    train_set = load_dataset(data, split=train_split, root=root, image_size=image_size,
                             schema=getattr(encoder, "schema", None))
    _check_encoder_input(encoder, train_set, data)
    return _evaluate_datasets(encoder, train_set, data, test_split, root, image_size, eval_cfg, run_dir, dev, amp,
                              seed, report)


def study(encoders, data: str = "fashion-mnist", *, train_split: str = "train", test_split: str = "test",
          root: str | None = None, image_size: int | None = None, protocols="all", checkpoints: str = "final",
          seeds=(0,), options: dict | None = None, out: str | os.PathLike = "evaluation", device: str = "auto",
          embedding_map: bool = True, quiet: bool = False) -> list[dict]:
    """Evaluate one or many encoders (run directories or encoder paths), at their final weights or
    over their checkpoints, with many protocols and seeds; write ``<out>/results.csv`` and
    ``results.parquet`` (one tidy row per run, checkpoint, seed, protocol and metric) and the
    single-page ``<out>/report.html``. Returns the rows.

    `protocols`: names, or "all" (every protocol that fits the data, except the slow ones that
    train through the backbone: finetune, coretune, classic). `checkpoints`: "final", "all" or
    "500,1000" (see ``evaluation.study.encoders_of``). `options`: {protocol: {option: value}}.
    Features are cached in ``<out>/features``, so a second study of the same encoders is fast.
    """
    import sys

    from . import registry
    from .data import load_dataset
    from .evaluation.study import encoders_of, run_study, write_results
    from .report.html import write_html
    from .train.hardware import resolve_device, resolve_precision

    if isinstance(encoders, (str, os.PathLike, torch.nn.Module)):
        encoders = [encoders]
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("no seeds given.", "pass e.g. seeds=(0, 1, 2).")
    dev = resolve_device(device)
    amp = resolve_precision("auto", dev) is not None
    triples = []
    for item in encoders:
        if isinstance(item, torch.nn.Module):
            triples.append(("encoder", "final", item.to(dev).eval()))
        else:
            triples += encoders_of(item, checkpoints, device=dev)
    first = triples[0][2]
    schema = getattr(first, "schema", None)
    train_set = load_dataset(data, split=train_split, root=root, image_size=image_size, schema=schema)
    for _, _, encoder in triples:
        _check_encoder_input(encoder, train_set, data)
    if Path(test_split).exists():  # a split name of the data, or a path of its own (as in evaluate)
        test_set = load_dataset(test_split, root=root, image_size=image_size, schema=schema)
    else:
        test_set = load_dataset(data, split=test_split, root=root, image_size=image_size, schema=schema)
    check_compatible(test_set, train_set, "test")
    if protocols == "all" or protocols == ["all"]:
        protocols = [p for p in registry.names("protocol") if not registry.get("protocol", p).slow
                     and train_set.modality in registry.get("protocol", p).modalities]
        if train_set.labels is None or test_set.labels is None:
            protocols = [p for p in protocols if not registry.get("protocol", p).needs_labels]
    protocols = tuple(protocols)
    for name in protocols:
        registry.get("protocol", name)  # unknown names fail before any work
    for name, kw in (options or {}).items():
        if name not in protocols:
            raise ConfigError(f"options given for protocol {name!r}, which is not run.", f"add it to the protocols ({', '.join(protocols)}).")
        registry.check_kwargs("protocol", name, kw)
    needs = sorted(p for p in protocols if registry.get("protocol", p).needs_labels)
    if needs and (train_set.labels is None or test_set.labels is None):
        raise DataError(f"protocols {', '.join(needs)} need labels, and '{data}' has none in one of its splits.",
                        "evaluate on labelled data, or run only label-free protocols (rankme, alpha_req, separability, "
                        "alignment_uniformity).")
    out = Path(out)

    def progress(text):
        if not quiet:
            print(f"evaluate: {text}", file=sys.stderr, flush=True)

    rows = run_study(triples, train_set, test_set, protocols, seeds, options=options, cache_dir=out / "features",
                     device=dev, amp=amp, progress=progress)
    write_results(rows, out)
    embeddings = {}
    if embedding_map:
        from .evaluation.features import cached_features
        from .report.embedding import project_2d, subsample

        for run, checkpoint, encoder in triples:
            if checkpoint != "final" and any(t[0] == run and t[1] == "final" for t in triples):
                continue
            feats = cached_features(encoder, test_set, cache_dir=out / "features", device=dev, amp=amp)
            pick = subsample(len(feats), 2000)
            labels = None if test_set.labels is None else test_set.labels.numpy()[pick]
            embeddings[f"{run} @ {checkpoint}"] = (project_2d(feats.numpy()[pick]), labels, test_set.classes)
    write_html(rows, out / "report.html", title=f"selfsup evaluation on {data}", embeddings=embeddings)
    return rows


def _check_encoder_input(encoder: Encoder, dataset, data: str) -> None:
    modality = getattr(encoder, "modality", "image")
    if dataset.modality != modality:
        raise DataError(f"'{data}' is {'an' if dataset.modality == 'image' else 'a'} {dataset.modality} dataset but the encoder was trained on {modality}s.",
                        "pass data of the kind the encoder was trained on.")
    expected = encoder.mean.numel()
    if modality == "image" and dataset.channels != expected:
        raise DataError(f"'{data}' has {dataset.channels}-channel images but the encoder expects {expected}.",
                        "embed data of the kind the encoder was trained on.")


def embed(encoder: Encoder | str | os.PathLike, data: str, out: str | os.PathLike, *, split: str = "train",
          root: str | None = None, image_size: int | None = None, batch_size: int = 1024,
          device: str = "auto") -> Path:
    """Write the embeddings of a dataset or folder to `out` (.npy or .parquet), with sample ids.

    ``.npy``: ``out`` holds float32 (N, D); ``<stem>.ids.txt`` one id per line, UTF-8 (and
    ``<stem>.labels.npy`` when labels exist). ``.parquet``: columns ``id``, ``label`` (if any) and
    ``embedding`` (a list of D float32 per row).

    Guarantees: the output is byte-identical across reruns, `batch_size` values and torch thread
    counts on the same CPU and torch build (the forward runs in fixed chunks, fp32; see
    :func:`selfsup.evaluation.features.extract_features`). Rows are written to ``<out>.part`` as they
    are computed, with a progress record ``<out>.part.json``; an interrupted call (even SIGKILL)
    rerun with the same encoder, data and device continues where it stopped and produces the same
    bytes as an uninterrupted one. `out` and its side files appear only complete (atomic renames);
    the work files are removed at the end.
    """
    import hashlib
    import sys

    import numpy as np

    from .data import load_dataset
    from .evaluation.features import FORWARD_CHUNK, _data_hash, extract_to_file, weights_hash
    from .train.checkpoint import atomic_write
    from .train.hardware import resolve_device

    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):
        raise ConfigError(f"cannot write embeddings to '{out}': unknown extension {out.suffix!r}.",
                          "name the output file *.npy or *.parquet.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r} is not a positive integer.", "pass e.g. --batch-size 256.")
    dev = resolve_device(device)
    if not isinstance(encoder, torch.nn.Module):
        encoder = load_encoder(encoder, device=dev)
    encoder = encoder.to(dev).eval()
    dataset = load_dataset(data, split=split, root=root, image_size=image_size, schema=getattr(encoder, "schema", None))
    _check_encoder_input(encoder, dataset, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Everything the rows depend on: a partial file made with anything else is not continued.
    key = hashlib.sha256("|".join([weights_hash(encoder), _data_hash(dataset.samples), str(len(dataset)),
                                   str(FORWARD_CHUNK), dev.type, "fp32", torch.__version__]).encode()).hexdigest()
    work = out.with_name(out.name + ".part")
    # fp32 here: embeddings are an export and should not depend on the CPU's bf16 support
    feats = extract_to_file(encoder, dataset.samples, work, key, batch_size=batch_size, device=dev, amp=False)

    def save_array(array):
        def write(tmp):
            with open(tmp, "wb") as handle:  # a handle, so numpy does not append ".npy" to the temp name
                np.save(handle, array, allow_pickle=False)
        return write

    if out.suffix == ".npy":
        atomic_write(out, save_array(feats))
        stem = out.with_suffix("")
        atomic_write(Path(f"{stem}.ids.txt"), lambda tmp: Path(tmp).write_text(
            "".join(f"{i}\n" for i in dataset.ids), encoding="utf-8", errors="backslashreplace"))
        if dataset.labels is not None:
            atomic_write(Path(f"{stem}.labels.npy"), save_array(dataset.labels.numpy()))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {"id": pa.array([i.encode("utf-8", "backslashreplace").decode() for i in dataset.ids], pa.string())}
        if dataset.labels is not None:
            columns["label"] = pa.array(dataset.labels.numpy())
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(feats).reshape(-1)), feats.shape[1])
        table = pa.table(columns)
        atomic_write(out, lambda tmp: pq.write_table(table, str(tmp)))
    del feats  # the memory map of the work file
    for leftover in (work, work.with_name(work.name + ".json")):
        leftover.unlink(missing_ok=True)
    if dataset.skipped:
        what = "broken row(s)" if dataset.modality == "table" else "unreadable file(s)"
        print(f"warning: skipped {len(dataset.skipped)} {what}, e.g. {dataset.skipped[0][0]} "
              f"({dataset.skipped[0][1]})", file=sys.stderr)
    return out
