"""The `selfsup` command: pretrain | evaluate | embed | shard | methods | datasets | report.

Any error the user can fix prints one line, ``error: <what went wrong> Fix: <what to do>``, and exits
with code 2; files already written stay as they are.

Exit codes: 0 done, 2 a user error, 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM. A signal
during pretraining's steps finishes the step, saves a checkpoint and prints one line naming it and
how to resume (``--resume``); a second signal exits at once, the last complete checkpoint intact.
"""
from __future__ import annotations

import argparse
import sys

from .errors import RunInterrupted, SelfsupError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # SIGINT; SIGTERM during training exits with 143 (128 + signal number)
EXIT_CODES = ("exit codes: 0 done; 2 bad input (one line: error: ... Fix: ...); 130 SIGINT (Ctrl-C), 143 SIGTERM. "
              "A signal while pretraining finishes the current step, saves a checkpoint and says how to resume "
              "(--resume); a second signal exits at once, keeping the last complete checkpoint.")


def _add_device(p):
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default auto)")


def _add_data(p, verb: str):
    p.add_argument("--data", default=None,
                   help=f"data to {verb}: a named dataset (`selfsup datasets`), image folder, .npy/.npz file or table "
                        "(.csv, .tsv, .parquet) (default: the data the run was trained on, from its config.yaml)")
    p.add_argument("--root", default=None,
                   help="folder holding named datasets (default: the run's data.root, then $SELFSUP_DATA, "
                        "/usr/share/datasets, ~/.cache/selfsup)")


def _protocol_names() -> list[str]:
    from . import evaluation  # noqa: F401  (registers the protocols)
    from . import registry

    return registry.names("protocol")


def _slow_protocols() -> list[str]:
    from . import registry

    return [p for p in _protocol_names() if registry.get("protocol", p).slow]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfsup", description="Self-supervised representation learning: pretrain, evaluate, embed.",
                                     epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pretrain an encoder, then evaluate it and write a report", epilog=EXIT_CODES)
    p.add_argument("--config", help="YAML run config (see configs/); flags below override it")
    p.add_argument("--data", help="named dataset (`selfsup datasets`), image folder, .npy/.npz array file, or a table "
                                  "(.csv, .tsv, .parquet; set its label column with --set data.label=NAME)")
    p.add_argument("--method", help="objective (`selfsup methods`), e.g. simclr")
    p.add_argument("--backbone", help="encoder architecture, e.g. convnet6, resnet18, vit_tiny")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--batch-size", type=int, help="images per step (each gives several views)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, help="seed of the data order, views and initialization (default 0)")
    _add_device(p)
    p.add_argument("--out", help="run directory (checkpoints, encoder, metrics, report)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.warmup_steps=100 --set method.temperature=0.2")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--budget", metavar="TIME", help="train for a time instead of --steps (e.g. 10m, 90s, 1h): the step "
                                                     "count is fixed after timing the first steps, recorded, and kept "
                                                     "on --resume")
    p.add_argument("--init-from", metavar="RUN", help="continual pretraining: start the backbone from this run "
                                                      "directory or exported encoder (its weights and normalization), "
                                                      "or from a timm model's pretrained weights: timm:MODEL (in "
                                                      "timm's cache on this machine; never downloaded) or "
                                                      "timm:MODEL=FILE (a .safetensors or .pth state dict; split at "
                                                      "the first '='), normalized with the model's pretraining "
                                                      "mean/std")
    p.add_argument("--no-eval", action="store_true", help="skip evaluation after pretraining")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("evaluate", help="evaluate encoders with the standard protocols",
                       description="One encoder with the defaults updates its run's results.json and report. Several "
                       "encoders, --checkpoints, several --seeds or --out run a study: every protocol x seed x "
                       "checkpoint into <out>/results.csv + results.parquet and the page <out>/report.html. A study "
                       "writes each finished protocol as it goes; run the same command again after a stop and it "
                       "continues, reusing what is done.", epilog=EXIT_CODES)
    p.add_argument("encoders", nargs="+", metavar="encoder", help="run directory or encoder.safetensors (one or more)")
    _add_data(p, "evaluate on")
    p.add_argument("--train-split", default=None,
                   help="split the probes are fitted on (default: the run's data.train_split, else train)")
    p.add_argument("--test-split", default=None,
                   help="split they are scored on: a split name of --data, or a path to separate labelled test data "
                        "(a folder, .npz, or a table with the same columns) (default: the run's data.test_split, else test)")
    p.add_argument("--protocols", default="knn,linear,rankme",
                   help=f"comma-separated protocol names, or all (every one, except the slow {', '.join(_slow_protocols())}; "
                        "those that do not fit the data or the backbone are skipped with the reason). "
                        f"Names: {', '.join(_protocol_names())}. `selfsup protocols` says what each needs. "
                        "Default: knn,linear,rankme")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the protocols that sample (few-shot episodes, label fractions, k-means starts, held-out "
                        "classes, validation splits) (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", help="several seeds (a study): seeded protocols run once per seed")
    p.add_argument("--checkpoints", default="final", help="final | all | comma-separated steps (a study)")
    p.add_argument("--option", action="append", default=[], metavar="PROTOCOL.KEY=VALUE",
                   help="a protocol option, e.g. --option fewshot.episodes=50 --option ood.held_out=0.2")
    p.add_argument("--out", help="study output folder (default: evaluation)")
    _add_device(p)

    p = sub.add_parser("embed", help="write embeddings of a dataset or folder to .npy or .parquet", epilog=EXIT_CODES)
    p.add_argument("encoder", help="run directory or encoder.safetensors")
    _add_data(p, "embed")
    p.add_argument("--split", default="train", help="which split of --data to embed (default train)")
    p.add_argument("--out", required=True, help="output file, *.npy (+ .ids.txt, .labels.npy, .classes.txt) or "
                                                "*.parquet (columns id, label, class, embedding)")
    p.add_argument("--batch-size", type=int, default=1024, help="samples per forward batch (does not change the output)")
    _add_device(p)

    p = sub.add_parser("shard", help="write a dataset into tar shards (WebDataset) that pretrain streams from",
                       description="Reads DATA as pretrain does, shuffles it once (--seed) and writes it into "
                       "OUT/shard-000000.tar, ... with OUT/manifest.json (modality, shapes, normalization, counts, "
                       "shard names and checksums, and the source, whose test split evaluation reads). Then "
                       "`selfsup pretrain --data OUT` streams from the shards.", epilog=EXIT_CODES)
    p.add_argument("data", help="named dataset (`selfsup datasets`), image folder, .npy/.npz array file, table or series file")
    p.add_argument("--out", required=True, help="folder for the shards and manifest.json (new or empty)")
    p.add_argument("--samples-per-shard", type=int, default=10_000, help="samples in each shard (default 10000)")
    p.add_argument("--split", default="train", help="which split of DATA to write (default train)")
    p.add_argument("--root", default=None, help="folder holding named datasets (as --set data.root=... for pretrain)")
    p.add_argument("--image-size", type=int, default=None, help="resize images to this size first")
    p.add_argument("--label", default=None, help="tables: the label column")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle before writing; -1 keeps the data's order")

    p = sub.add_parser("protocols", help="list the evaluation protocols with what each needs and its options")
    sub.add_parser("methods", help="list the registered objectives with their paper and defaults")
    p = sub.add_parser("datasets", help="list the named datasets and whether they are found here")
    p.add_argument("--root", help="a folder to look in first (as --set data.root=... does for pretrain)")
    p = sub.add_parser("report", help="rewrite a run's report from its metrics and results")
    p.add_argument("run", help="run directory")
    return parser


def _methods() -> None:
    from . import registry

    from .capabilities import describe
    from .methods.base import BATCH_TERMS

    for name in registry.names("method"):
        cls = registry.get("method", name)
        defaults = ", ".join(f"{k}={v!r}" for k, v in registry.defaults(cls).items())
        needs = [describe(c) for c in cls.requires] + (["labels"] if cls.needs_labels else [])
        print(f"{name}  [{cls.family}]\n    paper: {cls.paper}\n    needs: {'; '.join(needs) or 'views of any kind of data'}"
              f"\n    torchrun: {cls.batch_terms} ({BATCH_TERMS.get(cls.batch_terms, '?')})"
              f"\n    defaults: {defaults or '(none)'}")
    print("\nauxiliary objectives (add to a method with method.aux=[{name: ..., weight: ...}]):")
    for name in registry.names("auxiliary"):
        cls = registry.get("auxiliary", name)
        defaults = ", ".join(f"{k}={v!r}" for k, v in registry.defaults(cls).items() if k != "method")
        print(f"{name}  [weight {cls.default_weight}, reads {', '.join(cls.needs)}]\n    paper: {cls.paper}\n"
              f"    defaults: {defaults or '(none)'}")


def _datasets(root: str | None = None) -> None:
    from .data import describe_datasets

    for row in describe_datasets(root):
        print(f"{row['name']:<14} splits: {', '.join(row['splits']):<28} {row['status']}")


def _protocols() -> None:
    from . import registry
    from .evaluation import requirements

    for name in _protocol_names():
        fn = registry.get("protocol", name)
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        doc = " ".join(doc.split())
        tags = [t for t, on in (("seeded", fn.seeded), ("slow: not in 'all'", fn.slow)) if on]
        defaults = ", ".join(f"{k}={v!r}" for k, v in registry.defaults(fn).items() if k != "ctx")
        print(f"{name}" + (f"  [{', '.join(tags)}]" if tags else "") + f"\n    {doc}\n    needs: {requirements(name)}"
              f"\n    options: {defaults or '(none)'}")


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pretrain":
        from .api import pretrain

        overrides = list(args.set)
        if args.no_progress:
            overrides.append("train.progress=false")
        if args.init_from:
            overrides.append(f"train.init_from={args.init_from}")
        if args.budget:
            overrides.append(f"train.budget={args.budget}")
        result = pretrain(args.config, data=args.data, method=args.method, backbone=args.backbone, steps=args.steps,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device, out=args.out,
                          overrides=overrides, resume=args.resume, evaluate=not args.no_eval)
        if not result.main:  # another rank of a torchrun launch: rank 0 says what was done
            return 0
        print(f"run directory: {result.run_dir}")
        from .modalities import modality_of

        nouns = modality_of(result.train_set).nouns if result.train_set is not None else "samples"
        print(f"pretrain: {result.steps} steps, {result.images_per_s:.0f} {nouns}/s")
        _print_results(result.results)
    elif args.command == "evaluate":
        from .api import evaluate, study

        protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
        options = _protocol_options(args.option)
        seeds = args.seeds or [args.seed]
        if len(args.encoders) > 1 or args.checkpoints != "final" or len(seeds) > 1 or args.out or options \
                or protocols == ["all"]:
            if _launched_rank() > 0:  # a study runs in one process: under torchrun, rank 0 runs it alone
                return 0
            if _launched_rank() == 0:
                print("note: a study (several encoders, checkpoints or seeds, --out, --option or all) runs in one "
                      "process; the other torchrun processes exit", file=sys.stderr)
            out = args.out or "evaluation"
            rows = study(args.encoders, data=args.data, root=args.root, train_split=args.train_split,
                         test_split=args.test_split, protocols="all" if protocols == ["all"] else protocols,
                         checkpoints=args.checkpoints, seeds=seeds, options=options, out=out,
                         device=args.device or "auto")
            print(f"{len(rows)} results in {out}/results.csv (and results.parquet); report {out}/report.html")
        else:
            results = evaluate(args.encoders[0], data=args.data, root=args.root, train_split=args.train_split,
                               test_split=args.test_split, protocols=protocols, seed=args.seed,
                               device=args.device or "auto")
            _print_results(results)
    elif args.command == "embed":
        from .api import embed

        path = embed(args.encoder, data=args.data, root=args.root, out=args.out, split=args.split,
                     batch_size=args.batch_size, device=args.device or "auto")
        if _launched_rank() <= 0:  # under torchrun rank 0 wrote it
            print(f"wrote {path}")
    elif args.command == "shard":
        from .api import shard

        manifest = shard(args.data, args.out, samples_per_shard=args.samples_per_shard, split=args.split, root=args.root,
                         image_size=args.image_size, label=args.label, seed=args.seed,
                         progress=lambda text: print(f"shard: {text}", file=sys.stderr))
        print(f"wrote {len(manifest['shards'])} shards ({manifest['count']} samples) to {args.out}")
    elif args.command == "methods":
        _methods()
    elif args.command == "protocols":
        _protocols()
    elif args.command == "datasets":
        _datasets(args.root)
    elif args.command == "report":
        from pathlib import Path

        from .files import writable
        from .errors import DataError, disk_error
        from .report import write_report

        if not (Path(args.run) / "metrics.jsonl").is_file():
            raise DataError(f"'{args.run}' is not a run directory (no metrics.jsonl).", "pass the --out of a pretrain run.")
        writable(Path(args.run) / "report.md", "the report")
        try:
            print(f"wrote {write_report(Path(args.run))}")
        except OSError as exc:
            raise disk_error(exc, Path(args.run) / "report.md", "the report") from exc
    return 0


def _launched_rank() -> int:
    """This process's rank in a torchrun launch of more than one process; -1 outside one."""
    import os

    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else -1


def _protocol_options(items: list[str]) -> dict:
    """["fewshot.episodes=50", ...] -> {"fewshot": {"episodes": 50}}; values are read as YAML."""
    import yaml

    from .errors import ConfigError

    options: dict = {}
    for text in items:
        key, sep, raw = text.partition("=")
        name, dot, option = key.strip().partition(".")
        if not sep or not dot or not name or not option:
            raise ConfigError(f"--option {text!r} is not PROTOCOL.KEY=VALUE.", "write e.g. --option fewshot.episodes=50.")
        value = yaml.safe_load(raw) if raw.strip() else None
        options.setdefault(name, {})[option] = tuple(value) if isinstance(value, list) else value
    return options


def _print_results(results: dict) -> None:
    for protocol, values in results.items():
        if protocol == "pretrain" or not isinstance(values, dict):
            continue
        shown = ", ".join(f"{k}={_number(v)}" for k, v in values.items())
        print(f"{protocol}: {shown}")


def _number(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e9 else f"{value:.4g}"
    return str(value)


def main(argv: list[str] | None = None) -> None:
    # Paths given on the command line may hold bytes that are not UTF-8 (surrogate escapes): print
    # them escaped, as stderr does, rather than fail on a strict stdout after the work is done.
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        code = run(argv)
    except RunInterrupted as exc:  # a checkpoint is saved; the message says where and how to resume
        print(exc, file=sys.stderr)
        code = exc.exit_code
    except SelfsupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except OSError as exc:
        # A file the user named could not be read or written (the write sites say what they were
        # writing; this is the net under them): one line, exit 2, like any other user error.
        from .errors import os_error

        print(f"error: {os_error(exc)}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    main()
