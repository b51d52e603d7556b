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
from .files import writable
from .modalities import fits_encoder, modality_of, same_kind


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
    from . import distributed
    from .train.hardware import resolve_device

    cfg = _as_config(config, {"data__name": data, "method__name": method, "backbone__name": backbone,
                              "train__steps": steps, "train__batch_size": batch_size, "optim__lr": lr,
                              "train__seed": seed, "train__device": device,
                              "out": None if out is None else str(out)}, overrides)
    # a torchrun launch: the process group lives through training and the evaluation after it
    _, started = distributed.start(resolve_device(cfg.train.device))
    try:
        return _pretrain(cfg, resume, evaluate, report)
    finally:
        if started:
            distributed.end()


def _pretrain(cfg: C.RunConfig, resume: bool, evaluate: bool, report: bool):
    from . import distributed
    from .train.loop import train

    run = train(cfg, resume=resume)
    evaluating = evaluate and cfg.data.test_split
    if distributed.world()[1] > 1 and evaluating:
        # Every rank extracts a share of the features (evaluation.features.RankShare); rank 0 runs the
        # protocols and writes. The others read the encoder rank 0 exported, so all use its bits.
        distributed.Ranks(run.device).barrier()
        if not run.main:
            encoder = load_encoder(run.run_dir / "encoder", device=run.device).eval()
            _evaluate_datasets(encoder, run.train_set, cfg.data.name, cfg.data.test_split, cfg.data.root,
                               cfg.data.image_size, cfg.eval, run.run_dir, run.device, amp=run.dtype is not None,
                               seed=cfg.train.seed, report=report, strict=False)
    if not run.main:  # a data-parallel run's other ranks: rank 0 writes the results, evaluates and reports
        return run
    _write_results(run.run_dir, run.results)
    if evaluating:
        probe_set = run.train_set
        if getattr(probe_set, "streaming", False):
            # From shards, the probes fit on the source's train split in memory (the shards read back
            # when the source is gone), as `selfsup evaluate RUN` does (data/shards.load_shard_split).
            from .data import load_dataset

            probe_set = load_dataset(cfg.data.name, split=cfg.data.train_split, root=cfg.data.root,
                                     image_size=cfg.data.image_size, schema=getattr(run.train_set, "schema", None))
        run.results.update(_evaluate_datasets(run.encoder, probe_set, cfg.data.name, cfg.data.test_split,
                                              cfg.data.root, cfg.data.image_size, cfg.eval, run.run_dir,
                                              run.device, amp=run.dtype is not None, seed=cfg.train.seed,
                                              report=report, strict=False))
    elif report:
        _write_report(run.run_dir, run.results)
    return run


def check_compatible(data, reference, what: str) -> None:
    """`data` must be the same kind of data as `reference` (the encoder's or the train split's)."""
    same_kind(data, reference, what)


def _write_results(run_dir: Path, results: dict) -> None:
    from .errors import disk_error
    from .files import atomic_write

    path = run_dir / "results.json"
    try:
        merged = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        merged = {}  # a damaged results file is rewritten from these results
    merged.update(results)
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(merged, indent=2)))
    except OSError as exc:
        raise disk_error(exc, path, "the results") from exc


def _write_report(run_dir: Path, results: dict, embeddings=None, class_names=None) -> Path:
    from .errors import disk_error
    from .report import write_report

    _write_results(run_dir, results)
    try:
        return write_report(run_dir, embeddings=embeddings, class_names=class_names)
    except OSError as exc:
        raise disk_error(exc, run_dir / "report.md", "the report") from exc


def _say(text: str) -> None:
    import sys

    from .distributed import world

    if world()[0] == 0:  # under torchrun, rank 0 speaks
        print(text, file=sys.stderr, flush=True)


def _test_set(name: str, test_split: str | None, root, image_size, schema):
    """The test split: a split name of the data, or a path of its own (a folder, array file or
    table); None when there is none."""
    from .data import load_dataset

    if test_split is None:
        return None
    if Path(test_split).exists():
        return load_dataset(test_split, root=root, image_size=image_size, schema=schema)
    return load_dataset(name, split=test_split, root=root, image_size=image_size, schema=schema)


def _test_split_fix(train_set) -> str:
    """How to give labelled test data of this kind, for the fix of a missing test split."""
    return f"pass --test-split PATH ({modality_of(train_set).test_split_hint})"


def _evaluate_datasets(encoder: Encoder, train_set, name: str, test_split: str | None, root, image_size,
                       eval_cfg: C.EvalConfig, run_dir: Path | None, device, amp: bool, seed: int,
                       report: bool, strict: bool = True) -> dict:
    """Run the protocols; with ``strict=False`` (after pretraining) a missing test split or missing
    labels skip the supervised protocols with a note instead of failing.

    Under torchrun every rank calls it: each reads the data, rank 0 runs the protocols and writes the
    results and report, and the feature extractions of the train and test splits are split over the
    ranks (evaluation.features.RankShare); the other ranks return {}."""
    from . import registry
    from .evaluation import evaluate as run_protocols
    from .evaluation.features import RankShare, cached_features

    # a table's test split is encoded like its train split
    try:
        test_set = _test_set(name, test_split, root, image_size, getattr(train_set, "schema", None))
    except DataError as err:
        if strict:
            raise
        # after pretraining: the encoder is saved; data with no test split (an unlabeled pretraining set)
        # loses only the protocols that need one (the note below says why)
        test_set, unreadable = None, err.problem.rstrip(".")
    else:
        unreadable = None
    if test_set is not None:
        check_compatible(test_set, train_set, "test")
    protocols = tuple(eval_cfg.protocols)
    problem = None
    if test_set is None:
        problem = unreadable or f"'{name}' has no test split to score on"
    elif test_set.ids == train_set.ids:
        problem = f"'{name}' has no separate {test_split!r} split, so there is nothing held out to score on"
        test_set = None
    elif train_set.labels is None or test_set.labels is None:
        problem = f"'{name}' has no labels"
    if problem:
        needs_labels = {p for p in protocols if getattr(registry.get("protocol", p), "needs_labels", False)}
        if needs_labels and strict:
            raise DataError(f"{problem}; protocols {', '.join(sorted(needs_labels))} need labelled test data.",
                            f"{_test_split_fix(train_set)}, or run only label-free protocols (--protocols rankme).")
        if needs_labels:
            _say(f"note: {problem}; skipped {', '.join(sorted(needs_labels))}. Run `selfsup evaluate RUN "
                 f"--test-split PATH` with labelled test data ({modality_of(train_set).test_split_hint}).")
        protocols = tuple(p for p in protocols if p not in needs_labels)
    cache_dir = None if run_dir is None else Path(run_dir) / "features"
    knn = {"knn_k": eval_cfg.knn_k, "knn_temperature": eval_cfg.knn_temperature} if "knn" in protocols else {}
    share = RankShare(encoder, [train_set, test_set], device)
    if not share.main:
        share.serve()
        return {}
    with share:  # rank 0
        results = run_protocols(encoder, train_set, test_set, protocols=protocols, cache_dir=cache_dir,
                                device=device, seed=seed, amp=amp, batch_size=eval_cfg.batch_size, strict=strict,
                                progress=lambda text: _say(f"evaluate: {text}"), **knn)
        if run_dir is not None:
            embeddings = None
            if report:
                shown = test_set if test_set is not None else train_set
                feats = cached_features(encoder, shown, cache_dir=cache_dir, device=device, amp=amp,
                                        batch_size=eval_cfg.batch_size)
                embeddings = (feats, shown.labels)
                _say(f"evaluate: writing the report ({Path(run_dir) / 'report.md'})")
                _write_report(Path(run_dir), results, embeddings, shown.classes)
            else:
                _write_results(Path(run_dir), results)
    return results


def _run_dir_of(path: str | os.PathLike) -> Path | None:
    """The run directory an encoder path belongs to (run dir, its encoder/ folder or the
    encoder.safetensors in it), when it has a config.yaml; else None."""
    path = Path(path)
    for folder in (path, path.parent, path.parent.parent):
        if (folder / "config.yaml").is_file() and (folder / "encoder").is_dir():
            return folder
    return None


def _trained_on(path: str | os.PathLike) -> C.DataConfig | None:
    """The data section of the run an encoder comes from (its config.yaml), or None."""
    import yaml

    run_dir = _run_dir_of(path)
    if run_dir is None:
        return None
    try:
        return C.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).data
    except (OSError, yaml.YAMLError, C.ConfigError, AttributeError):
        return None


def resolve_data(encoders, data: str | None, root: str | None, train_split: str | None, test_split: str | None,
                 image_size) -> tuple:
    """(data, root, train_split, test_split, image_size) to evaluate on. What is given wins; what is
    None comes from the run the (first) encoder was trained in: its data, data root, splits and
    image size. Without --data, an encoder with no run configuration, or encoders trained on
    different data, is a ConfigError: there is nothing to guess from."""
    saved = [_trained_on(e) if not isinstance(e, torch.nn.Module) else None for e in encoders]
    first = saved[0]
    if data is None:
        if first is None:
            raise ConfigError(f"no --data given, and '{encoders[0] if not isinstance(encoders[0], torch.nn.Module) else 'the encoder'}' "
                              "has no run configuration (config.yaml) saying what it was trained on.",
                              "pass --data with the dataset to evaluate on (and --test-split).")
        names = sorted({d.name for d in saved if d is not None})
        if len(names) > 1 or None in saved:
            raise ConfigError(f"no --data given, and the encoders were trained on different data ({', '.join(names)}).",
                              "pass --data with the dataset to evaluate them all on.")
        data = first.name
        train_split = train_split or first.train_split
        test_split = first.test_split if test_split is None else test_split
        image_size = first.image_size if image_size is None else image_size
        _say(f"evaluate: data {data!r} (train split {train_split!r}, test split {test_split!r}), as the run was trained")
    if root is None and first is not None:
        root = first.root  # where the run found its data; named datasets are also looked up elsewhere
    return data, root, train_split or "train", "test" if test_split is None else test_split, image_size


def evaluate(encoder: Encoder | str | os.PathLike, data: str | None = None, *, train_split: str | None = None,
             test_split: str | None = None, root: str | None = None, image_size: int | None = None,
             protocols: Iterable[str] = ("knn", "linear", "rankme"), knn_k: int = 20, knn_temperature: float = 0.07,
             device: str = "auto", seed: int = 0, report: bool = True) -> dict:
    """Evaluate an encoder (object, run directory or encoder path) with the named protocols.

    `data` defaults to the data the run was trained on (with its data root, splits and image size,
    from the run's config.yaml); an encoder without a run needs it. When `encoder` is a run
    directory, results are merged into its ``results.json`` (one key per protocol) and its report is
    refreshed; features are cached under ``<run>/features``.

    Launched with torchrun, every process reads the data and extracts a share of the features
    (contiguous rows, gathered in order: the same features as one process); rank 0 runs the
    protocols, writes and returns the results, the other ranks write nothing and return {}.
    """
    from . import distributed
    from .train.hardware import resolve_device

    dev, started = distributed.start(resolve_device(device))  # a torchrun launch joins its process group
    try:
        return _evaluate(encoder, data, train_split, test_split, root, image_size, protocols, knn_k, knn_temperature,
                         dev, seed, report)
    finally:
        if started:
            distributed.end()


def _evaluate(encoder, data, train_split, test_split, root, image_size, protocols, knn_k, knn_temperature, dev, seed,
              report) -> dict:
    from .data import load_dataset
    from .train.hardware import resolve_precision

    data, root, train_split, test_split, image_size = resolve_data([encoder], data, root, train_split, test_split,
                                                                   image_size)
    run_dir = None
    if not isinstance(encoder, torch.nn.Module):
        path = Path(encoder)
        run_dir = path if (path / "encoder").is_dir() else None
        encoder = load_encoder(path, device=dev)
    if run_dir is not None:  # results.json, the report and the feature cache go there
        writable(run_dir / "features", "the feature cache", directory=True)
        writable(run_dir / "results.json", "the results")
    encoder = encoder.to(dev).eval()
    amp = resolve_precision("auto", dev) is not None
    eval_cfg = C.EvalConfig(protocols=tuple(protocols), knn_k=knn_k, knn_temperature=knn_temperature)
    train_set = load_dataset(data, split=train_split, root=root, image_size=image_size,
                             schema=getattr(encoder, "schema", None))
    _check_encoder_input(encoder, train_set, data)
    return _evaluate_datasets(encoder, train_set, data, test_split, root, image_size, eval_cfg, run_dir, dev, amp,
                              seed, report)


def study(encoders, data: str | None = None, *, train_split: str | None = None, test_split: str | None = None,
          root: str | None = None, image_size: int | None = None, protocols="all", checkpoints: str = "final",
          seeds=(0,), options: dict | None = None, out: str | os.PathLike = "evaluation", device: str = "auto",
          embedding_map: bool = True, quiet: bool = False) -> list[dict]:
    """Evaluate one or many encoders (run directories or encoder paths), at their final weights or
    over their checkpoints, with many protocols and seeds; write ``<out>/results.csv`` and
    ``results.parquet`` (one tidy row per run, checkpoint, seed, protocol and metric) and the
    single-page ``<out>/report.html``. Returns the rows.

    `data` defaults to the data the runs were trained on (see :func:`evaluate`). `protocols`:
    names, or "all" (every protocol, except the slow ones that train through the backbone:
    finetune, coretune, classic). A protocol that does not fit the data or the encoder (too few
    classes, no labels, a backbone without stages, images only) is skipped, and the report lists it
    with the reason. `checkpoints`: "final", "all" or "500,1000" (see
    ``evaluation.study.encoders_of``). `options`: {protocol: {option: value}}.

    Work is never lost: each finished protocol run is appended to ``<out>/study.jsonl`` and the
    results files are rewritten after it, so an interrupted study has its rows on disk, and the
    same call again reuses them (same weights, data, protocol, options and seed) and computes only
    the rest. SIGINT/SIGTERM also write the report of what is done before exiting (130 / 143).
    Features are cached in ``<out>/features`` (a run directory's own ``features/`` is read too).
    """
    from . import registry
    from .data import load_dataset
    from .errors import RunInterrupted
    from .evaluation.study import JOURNAL, StudyState, encoders_of, run_study, write_results
    from .train.hardware import resolve_device, resolve_precision

    if isinstance(encoders, (str, os.PathLike, torch.nn.Module)):
        encoders = [encoders]
    encoders = list(encoders)
    if not encoders:
        raise ConfigError("no encoders given.", "pass one or more run directories.")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("no seeds given.", "pass e.g. seeds=(0, 1, 2).")
    data, root, train_split, test_split, image_size = resolve_data(encoders, data, root, train_split, test_split,
                                                                   image_size)
    out = Path(out)
    writable(out / "features", "the study's feature cache", directory=True)
    dev = resolve_device(device)
    amp = resolve_precision("auto", dev) is not None
    triples, read_caches = [], {}
    for item in encoders:
        if isinstance(item, torch.nn.Module):
            triples.append(("encoder", "final", item.to(dev).eval()))
        else:
            triples += encoders_of(item, checkpoints, device=dev)
            run_dir = _run_dir_of(item)
            if run_dir is not None:
                read_caches[str(item)] = (run_dir / "features",)
    first = triples[0][2]
    schema = getattr(first, "schema", None)
    train_set = load_dataset(data, split=train_split, root=root, image_size=image_size, schema=schema)
    for _, _, encoder in triples:
        _check_encoder_input(encoder, train_set, data)
    test_set = _test_set(data, test_split, root, image_size, schema)
    if test_set is None:
        raise DataError(f"'{data}' has no test split to evaluate on.", _test_split_fix(train_set) + ".")
    check_compatible(test_set, train_set, "test")
    if protocols == "all" or protocols == ["all"]:
        protocols = [p for p in registry.names("protocol") if not registry.get("protocol", p).slow]
    protocols = tuple(protocols)
    for name in protocols:
        registry.get("protocol", name)  # unknown names fail before any work
    for name, kw in (options or {}).items():
        if name not in protocols:
            raise ConfigError(f"options given for protocol {name!r}, which is not run.", f"add it to the protocols ({', '.join(protocols)}).")
        registry.check_kwargs("protocol", name, kw)

    def progress(text):
        if not quiet:
            _say(f"evaluate: {text}")

    state = StudyState()
    title = f"selfsup evaluation on {data}"

    def save(state):
        write_results(state.rows, out)

    with _study_signals() as stop:
        try:
            run_study(triples, train_set, test_set, protocols, seeds, options=options, cache_dir=out / "features",
                      device=dev, amp=amp, progress=progress, journal=out / JOURNAL, on_update=save, state=state,
                      read_caches=read_caches)
        except _Stopped as exc:
            save(state)
            note = (f"Stopped by {exc.name} after {state.reused + state.computed} of {state.total} protocol runs; "
                    "run the same command again to finish (finished runs are reused).")
            _write_study_report(state, out, title, [note], {})
            raise RunInterrupted(f"stopped by {exc.name} after {state.reused + state.computed} of {state.total} "
                                 f"protocol runs; the results so far are in '{out / 'results.csv'}' and "
                                 f"'{out / 'report.html'}'.", "rerun the same command: finished protocol runs are "
                                 "reused.", exc.signum) from None
        stop.restore()
    if state.reused:
        progress(f"reused {state.reused} finished protocol runs from {out / JOURNAL}; computed {state.computed}; "
                 f"skipped {len(state.skipped)}")
    if not state.rows:
        reasons = "; ".join(f"{p}: {why}" for _, _, p, _, why in state.skipped[:3])
        raise DataError(f"no protocol could run on '{data}' ({reasons}).",
                        "choose protocols that fit the data (`selfsup protocols` lists what each needs).")
    save(state)
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
    _write_study_report(state, out, title, [], embeddings)
    return state.rows


def _write_study_report(state, out: Path, title: str, notes: list[str], embeddings: dict) -> Path:
    from .errors import disk_error
    from .report.html import write_html

    try:
        return write_html(state.rows, out / "report.html", title=title, embeddings=embeddings, notes=notes,
                          skipped=state.skipped)
    except OSError as exc:
        raise disk_error(exc, out / "report.html", "the study report") from exc


class _Stopped(BaseException):
    """SIGINT or SIGTERM during a study: raised at once (finished protocol runs are already saved)."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum, self.name = signum, signal.Signals(signum).name


class _study_signals:
    """SIGINT/SIGTERM stop a study at once with :class:`_Stopped` (main thread only), so the caller
    writes the report of what is done; a second signal exits at once. Handlers restored on exit."""

    def __enter__(self):
        import signal
        import threading

        self._previous = {}
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum
        raise _Stopped(signum)

    def restore(self):
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def __exit__(self, *exc):
        self.restore()


def _check_encoder_input(encoder: Encoder, dataset, data: str) -> None:
    fits_encoder(dataset, encoder, data)


def embed(encoder: Encoder | str | os.PathLike, data: str | None = None, out: str | os.PathLike | None = None, *,
          split: str = "train", root: str | None = None, image_size: int | None = None, batch_size: int = 1024,
          device: str = "auto") -> Path:
    """Write the embeddings of a dataset or folder to `out` (.npy or .parquet), with sample ids.

    ``.npy``: ``out`` holds float32 (N, D); ``<stem>.ids.txt`` one id per line, UTF-8 (and, when
    labels exist, ``<stem>.labels.npy`` with the integer codes and ``<stem>.classes.txt`` with the
    class name of code i on line i + 1). ``.parquet``: columns ``id``, ``label`` (the integer code)
    and ``class`` (its name) when labels exist, and ``embedding`` (a list of D float32 per row).
    `data` defaults to the data the run was trained on (see :func:`evaluate`). An output that
    cannot be written is a one-line DiskError before any work.

    Guarantees: the output is byte-identical across reruns, `batch_size` values and torch thread
    counts on the same CPU and torch build (the forward runs in fixed chunks, fp32; see
    :func:`selfsup.evaluation.features.extract_features`). Rows are written to ``<out>.part`` as they
    are computed, with a progress record ``<out>.part.json``; an interrupted call (even SIGKILL)
    rerun with the same encoder, data and device continues where it stopped and produces the same
    bytes as an uninterrupted one. `out` and its side files appear only complete (atomic renames);
    the work files are removed at the end.

    Launched with torchrun, every process reads the data and takes blocks of rows in turn; rank 0
    gathers them in order and alone writes (the same bytes as one process on the same CPU) and
    returns `out`; the other ranks write nothing.
    """
    from . import distributed
    from .train.hardware import resolve_device

    dev, started = distributed.start(resolve_device(device))  # a torchrun launch joins its process group
    try:
        return _embed(encoder, data, out, split, root, image_size, batch_size, dev)
    finally:
        if started:
            distributed.end()


def _embed(encoder, data, out, split, root, image_size, batch_size, dev) -> Path:
    import hashlib
    import sys

    from .data import load_dataset
    from .distributed import world
    from .errors import disk_error
    from .evaluation.features import FORWARD_CHUNK, _data_hash, extract_to_file, weights_hash

    if out is None:
        raise ConfigError("no output file given.", "pass out='embeddings.parquet' (or *.npy).")
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):
        raise ConfigError(f"cannot write embeddings to '{out}': unknown extension {out.suffix!r}.",
                          "name the output file *.npy or *.parquet.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r} is not a positive integer.", "pass e.g. --batch-size 256.")
    data, root, _, _, image_size = resolve_data([encoder], data, root, None, None, image_size)
    writable(out, "the embeddings")
    if not isinstance(encoder, torch.nn.Module):
        encoder = load_encoder(encoder, device=dev)
    encoder = encoder.to(dev).eval()
    dataset = load_dataset(data, split=split, root=root, image_size=image_size, schema=getattr(encoder, "schema", None))
    _check_encoder_input(encoder, dataset, data)
    # Everything the rows depend on: a partial file made with anything else is not continued.
    key = hashlib.sha256("|".join([weights_hash(encoder), _data_hash(dataset.samples), str(len(dataset)),
                                   str(FORWARD_CHUNK), dev.type, "fp32", torch.__version__]).encode()).hexdigest()
    work = out.with_name(out.name + ".part")
    try:
        # fp32 here: embeddings are an export and should not depend on the CPU's bf16 support
        feats = extract_to_file(encoder, dataset.samples, work, key, batch_size=batch_size, device=dev, amp=False,
                                progress=f"embed: {dataset.name}")
        if world()[0] != 0:  # torchrun: every rank extracted a share; rank 0 writes
            return out
        _write_embeddings(out, feats, dataset)
    except OSError as exc:
        raise disk_error(exc, out, "the embeddings") from exc
    del feats  # the memory map of the work file
    for leftover in (work, work.with_name(work.name + ".json")):
        leftover.unlink(missing_ok=True)
    if dataset.skipped:
        print(f"warning: skipped {len(dataset.skipped)} {modality_of(dataset).unreadable}, e.g. {dataset.skipped[0][0]} "
              f"({dataset.skipped[0][1]})", file=sys.stderr)
    return out


def shard(data: str, out: str | os.PathLike, *, samples_per_shard: int = 10_000, split: str = "train",
          root: str | None = None, image_size: int | None = None, label: str | None = None, seed: int = 0,
          modality: str | None = None, progress=None) -> dict:
    """Write a dataset (a named one, an image folder, an array file, a table or a series file, read as
    ``pretrain`` reads it) into WebDataset tar shards of `samples_per_shard` samples under `out`, in an
    order shuffled by `seed` (-1 keeps the dataset's order), with ``out/manifest.json``; returns the
    manifest. ``pretrain(data=out)`` then streams from them (see ``selfsup.data.shards``)."""
    import sys

    from .data import load_dataset
    from .data.shards import write_shards
    from .files import display_path

    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ConfigError(f"samples per shard {samples_per_shard!r} is not a positive integer.",
                          "pass e.g. --samples-per-shard 10000.")
    writable(Path(out) / "manifest.json", "the shards")
    dataset = load_dataset(data, split=split, root=root, image_size=image_size, label=label, modality=modality)
    if len(dataset) == 0:
        raise DataError(f"dataset '{data}' is empty.", "point it at a folder or file with data.")
    if dataset.skipped:
        print(f"warning: skipped {len(dataset.skipped)} {modality_of(dataset).unreadable} in '{data}', e.g. "
              f"{dataset.skipped[0][0]} ({dataset.skipped[0][1]})", file=sys.stderr)
    path = os.path.expanduser(os.fspath(data))
    source = {"data": os.path.abspath(path) if os.path.exists(path) else os.fspath(data),
              "root": None if root is None else os.path.abspath(os.path.expanduser(root)), "split": split,
              "image_size": image_size, "label": label}
    manifest = write_shards(dataset, out, samples_per_shard, source, seed=seed, progress=progress)
    if progress is not None:
        progress(f"{len(manifest['shards'])} shards, {manifest['count']} {modality_of(dataset).nouns}; manifest "
                 f"{display_path(Path(out) / 'manifest.json')}")
    return manifest


def _write_embeddings(out: Path, feats, dataset) -> None:
    """`feats` (N, D) and the ids (labels, class names) of `dataset` to `out`; see :func:`embed`."""
    import numpy as np

    from .files import atomic_write

    names = None
    if dataset.labels is not None and dataset.classes is not None and len(dataset.labels) \
            and 0 <= int(dataset.labels.min()) and int(dataset.labels.max()) < len(dataset.classes):
        names = [str(c).encode("utf-8", "backslashreplace").decode().replace("\n", "\\n") for c in dataset.classes]

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
            if names is not None:
                atomic_write(Path(f"{stem}.classes.txt"), lambda tmp: Path(tmp).write_text(
                    "".join(f"{name}\n" for name in names), encoding="utf-8", errors="backslashreplace"))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {"id": pa.array([i.encode("utf-8", "backslashreplace").decode() for i in dataset.ids], pa.string())}
        if dataset.labels is not None:
            codes = dataset.labels.numpy()
            columns["label"] = pa.array(codes)
            if names is not None:
                columns["class"] = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names, pa.string()))
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(feats).reshape(-1)), feats.shape[1])
        table = pa.table(columns)
        atomic_write(out, lambda tmp: pq.write_table(table, str(tmp)))
