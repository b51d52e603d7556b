"""Every method on the fmnist-cpu protocol with the same step budget: kNN and linear-probe accuracy
(mean +- std over seeds) and pretraining images/s as a ratio to SimCLR's, measured side by side.

usage:
  python benchmarks/methods_table.py quality [--rows simclr byol ...] [--seeds 0 1 2] [--steps 200]
  python benchmarks/methods_table.py speed [--rows ...] [--steps 12] [--rounds 3]
  python benchmarks/methods_table.py table [--write]

``quality`` pretrains each row for ``--steps`` steps per seed (../shared/BENCHMARK.md: convnet6,
fmnist views with crops of 8-100%, AdamW 2e-3 constant, weight decay 1e-4, batch 256) and
evaluates the frozen backbone on the Fashion-MNIST test split (kNN k=20, L-BFGS linear probe).
Each (row, seed) result is appended to ``benchmarks/results/methods_table/results.jsonl`` together with the
revision, so an interrupted sweep continues where it stopped (rows already measured at the same
step budget are skipped; ``--redo`` measures again).

``speed`` times every row's training step in one process, interleaved round by round (so a
change of machine load hits every row alike): per round and row, ``--steps`` steps after 2
warm-up steps, images per second from the median step time; the ratio to SimCLR is taken per
round, the median over rounds is reported. Appended to ``benchmarks/results/methods_table/speed.jsonl``.

``table`` prints the Markdown table from both files (``--write`` puts it in BENCHMARKS.md between
the ``methods-table`` markers).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, read_jsonl, revision, write_section  # noqa: E402

# The measurement records, committed with the figures so that a later session resumes the sweep;
# --out changes it (e.g. to run from a clean worktree of a revision and copy the records back).
OUT = ROOT / "benchmarks" / "results" / "methods_table"

# Each row: (name, method, method options, auxiliaries, views options, the row it is compared with, note).
# Options are the fmnist-cpu protocol's (SimCLR temperature 0.2) or the method's small-data
# defaults; where a row departs from its method's defaults, the note says why.
SIMCLR = {"temperature": 0.2, "hidden_dim": 512, "out_dim": 128}
ROWS = [
    ("simclr", "simclr", SIMCLR, [], {}, None, "baseline: the fmnist-cpu recipe"),
    ("dcl", "dcl", {}, [], {}, "simclr", ""),
    ("dclw", "dclw", {}, [], {}, "simclr", ""),
    ("moco_v2", "moco_v2", {}, [], {}, "simclr", ""),
    ("moco_v3", "moco_v3", {}, [], {}, "simclr", ""),
    ("nnclr", "nnclr", {}, [], {}, "simclr", ""),
    ("groco", "groco", {}, [], {}, "simclr", "research variant"),
    ("gsimclr", "gsimclr", SIMCLR, [], {}, "simclr", "research variant"),
    ("simclr+pretext", "simclr", SIMCLR, [{"name": "pretext"}], {}, "simclr", "research variant (ScatSimCLR's pretext heads)"),
    ("simclr+augaware", "simclr", SIMCLR, [{"name": "augaware"}], {}, "simclr", "research variant"),
    ("simclr+bss", "simclr", SIMCLR, [], {"bss_p": 1.0}, "simclr", "research variant (Batch Styles Standardization)"),
    ("simclr+msbreg", "simclr", SIMCLR, [{"name": "msbreg"}], {}, "simclr", "research variant (MSBReg as a regularizer)"),
    ("byol", "byol", {}, [], {}, "simclr", ""),
    ("byol+msbreg", "byol", {}, [{"name": "msbreg"}], {}, "byol", "research variant (MSBReg as a regularizer)"),
    ("msbreg", "msbreg", {}, [], {}, "byol", "research variant"),
    ("simsiam", "simsiam", {}, [], {}, "simclr", ""),
    ("simsiam@512", "simsiam", {"hidden_dim": 512, "out_dim": 512, "pred_hidden_dim": 128}, [], {}, "simsiam",
     "heads 512 wide (SimCLR's hidden width): the method's own cost without the paper's 2048-wide heads"),
    ("barlow_twins", "barlow_twins", {}, [], {}, "simclr", ""),
    ("mixed_barlow_twins", "mixed_barlow_twins", {}, [], {}, "barlow_twins", "research variant"),
    ("vicreg", "vicreg", {}, [], {}, "simclr", ""),
    ("vicreg@512", "vicreg", {"hidden_dim": 512, "out_dim": 512}, [], {}, "vicreg",
     "expander 512 wide: the method's own cost without the paper's 2048-wide expander"),
    ("dino", "dino", {"use_bn_in_head": True, "teacher_temperature": 0.04}, [], {}, "simclr",
     "multi-crop 2+6; BN in the head and teacher temperature 0.04 (the paper's settings sit on the ln K plateau on convnet6)"),
    ("swav", "swav", {}, [], {}, "simclr", "multi-crop 2+6"),
    ("mugs", "mugs", {}, [], {}, "dino", "research variant, multi-crop 2+6"),
    ("obow", "obow", {}, [], {}, "simclr", "research variant"),
    ("supervised", "supervised", {}, [], {}, None, "labels: baseline for the supervised rows"),
    ("supcon", "supcon", {}, [], {}, "supervised", "labels"),
    ("sla", "sla", {}, [], {}, "supervised", "labels; research variant"),
]
BY_NAME = {row[0]: row for row in ROWS}

# What each research variant's paper claims against the row it is compared with, in the terms this
# table can test (kNN accuracy after the same budget). The verdict column is computed from the
# results, not written by hand: Welch's t-test of the kNN means over the seeds, two-sided p < 0.05;
# above that, no difference is shown at this scale.
CLAIMS = {
    "mixed_barlow_twins": "the mixup regularizer curbs Barlow Twins' overfitting and improves its downstream accuracy",
    "simclr+msbreg": "MSBReg's losses added to a method improve it",
    "byol+msbreg": "MSBReg's losses added to a method improve it",
    "msbreg": "MSBReg alone does better than BYOL, the momentum-teacher method it builds on",
    "groco": "sorting positives before negatives improves kNN accuracy over the plain contrastive loss",
    "gsimclr": "not using same-pseudo-label samples as negatives improves on SimCLR",
    "simclr+pretext": "pretext heads (rotation, jigsaw) regularize SimCLR and improve it on small datasets",
    "simclr+augaware": "predicting the augmentation parameters improves what the encoder learns",
    "simclr+bss": "the same style for a whole batch gives domain invariance without domain labels "
                  "(fmnist has one domain: only the cost in accuracy can be seen here)",
    "mugs": "multi-granular targets improve on DINO",
    "obow": "bag-of-visual-words targets improve on contrastive instance discrimination",
    "sla": "joint (class, rotation) labels with aggregation improve fully supervised accuracy",
}


def welch_test(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Welch's unequal-variance t-test of mean(a) - mean(b) (scipy's, Welch-Satterthwaite degrees of
    freedom): (difference, t, two-sided p). Two samples without spread: p = 0 if their means differ."""
    from scipy import stats

    diff = statistics.mean(a) - statistics.mean(b)
    if statistics.variance(a) + statistics.variance(b) == 0:
        return diff, (math.copysign(math.inf, diff) if diff else 0.0), (0.0 if diff else 1.0)
    result = stats.ttest_ind(a, b, equal_var=False)
    return diff, float(result.statistic), float(result.pvalue)


def holm_adjust(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (each claim is one test): the k-th smallest
    p times (m - k + 1), made non-decreasing in that order and capped at 1. An adjusted p < 0.05 holds
    with a 5% chance of any false "reproduced"/"reversed" among all the claims together."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for k, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - k) * p_values[name]))
        adjusted[name] = running
    return adjusted


def config_for(row, seed: int, steps: int, out: Path) -> dict:
    name, method, options, aux, views, _, _ = row
    return {
        "data": {"name": "fashion-mnist", "test_split": "test"},
        "backbone": {"name": "convnet6"},
        "method": {"name": method, **options, "aux": aux},
        "views": {"preset": "fmnist", "crop_scale": [0.08, 1.0], **views},
        "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "warmup_steps": 0, "schedule": "constant"},
        "train": {"steps": steps, "batch_size": 256, "seed": seed, "checkpoint_every": steps, "keep_checkpoints": 1,
                  "log_every": 10, "monitor_every": 0, "progress": False},
        "eval": {"protocols": ["knn", "linear"]},
        "out": str(out),
    }


def quality(args) -> None:
    import selfsup

    done = {(r["row"], r["seed"], r["steps"]) for r in read_jsonl(OUT / "results.jsonl")}
    for name in args.rows:
        row = BY_NAME[name]
        for seed in args.seeds:
            if (name, seed, args.steps) in done and not args.redo:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                try:
                    run = selfsup.pretrain(config_for(row, seed, args.steps, Path(tmp) / "run"), report=False)
                except Exception as exc:  # one failing row must not stop the sweep; the table shows it
                    print(f"{name} seed {seed}: FAILED {type(exc).__name__}: {exc}", flush=True)
                    append_jsonl(OUT / "failures.jsonl", {"row": name, "seed": seed, "steps": args.steps,
                                                          "error": f"{type(exc).__name__}: {exc}", "revision": revision()})
                    continue
                record = {"row": name, "seed": seed, "steps": args.steps, "knn": run.results["knn"]["accuracy"],
                          "linear": run.results["linear"]["accuracy"], "images_per_s": run.images_per_s,
                          "wall_s": time.perf_counter() - t0, "revision": revision()}
            append_jsonl(OUT / "results.jsonl", record)
            print(json.dumps(record), flush=True)


def speed(args) -> None:
    """Interleaved timing of each row's training step (see the module docstring)."""
    from selfsup import auxiliaries, config as C, registry
    from selfsup.backbones.base import build_backbone
    from selfsup.data import load_dataset
    from selfsup.methods.base import Batch, TrainData
    from selfsup.train.hardware import autocast, flush_denormal, resolve_precision
    from selfsup.train.assemble import run_views
    from selfsup.train.optim import build_optimizer

    device = torch.device("cpu")
    data = load_dataset("fashion-mnist", split="train")
    mean, std = data.mean_std()
    images, labels = data.images, data.labels
    setups = {}
    for name in args.rows:
        cfg = C.from_dict(config_for(BY_NAME[name], 0, 1000, OUT / "unused"))
        torch.manual_seed(0)
        cls = registry.get("method", cfg.method.name)
        method = cls(build_backbone("convnet6", in_channels=1, image_size=28), **cfg.method.options)
        auxiliaries.attach(method, cfg.method.aux)
        method = method.to(memory_format=torch.channels_last)
        # Pseudo-labels etc. from a 5k subset: timing the step, not the one-off preparation.
        method.prepare(TrainData(images[:5000], labels[:5000], list(mean), list(std)))
        views, layout = run_views(cfg, cls, data, mean, std)
        optimizer = build_optimizer(method, "adamw", 2e-3, 1e-4, 0.9, (0.9, 0.999), 0.02)
        setups[name] = (method, views, optimizer, layout)
    dtype = resolve_precision("auto", device)
    g = torch.Generator()
    rounds: list[dict[str, float]] = []
    with flush_denormal():
        for r in range(args.rounds):
            rates = {}
            for name, (method, views, optimizer, layout) in setups.items():
                method.train()
                times = []
                for step in range(2 + args.steps):
                    t0 = time.perf_counter()
                    index = torch.randint(0, 5000, (256,), generator=g)
                    torch.manual_seed(step)
                    vs, params = views(images[index], g)
                    vs = [v.contiguous(memory_format=torch.channels_last) for v in vs]
                    batch = Batch(vs, params, images[index], labels[index], index, 0.5, layout["n_global"],
                                  layout["n_local"])
                    with autocast(device, dtype):
                        auxiliaries.before(method, batch)
                        out = auxiliaries.add_losses(method, batch, method(batch))
                    optimizer.zero_grad(set_to_none=True)
                    out["loss"].backward()
                    optimizer.step()
                    method.on_step_end(0.5)
                    auxiliaries.on_step_end(method, 0.5)
                    if step >= 2:
                        times.append(time.perf_counter() - t0)
                rates[name] = 256 / statistics.median(times)
                print(f"round {r} {name}: {rates[name]:.0f} img/s", flush=True)
            rounds.append(rates)
    for name in args.rows:
        ratios = [rd[name] / rd["simclr"] for rd in rounds if "simclr" in rd]
        record = {"row": name, "images_per_s": statistics.median(rd[name] for rd in rounds),
                  "ratio_to_simclr": statistics.median(ratios) if ratios else None, "rounds": args.rounds,
                  "steps": args.steps, "revision": revision()}
        append_jsonl(OUT / "speed.jsonl", record)
        print(json.dumps(record), flush=True)


def table(args) -> str:
    results, speeds = read_jsonl(OUT / "results.jsonl"), read_jsonl(OUT / "speed.jsonl")
    steps = args.steps
    latest_speed = {s["row"]: s for s in speeds}  # the newest measurement of each row
    lines = ["| method | compared with | kNN | linear | seeds | kNN - base (Welch t, p) | img/s | x SimCLR speed | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    revisions = set()
    per_row = {}
    for name, *_ in ROWS:
        by_seed = {r["seed"]: r for r in results if r["row"] == name and r["steps"] == steps}  # newest per seed
        per_row[name] = list(by_seed.values())
        revisions.update(r["revision"] for r in per_row[name])

    def ms(rs, key):
        values = [r[key] for r in rs]
        if not values:
            return "-"
        if len(values) == 1:  # one seed: no spread to show yet
            return f"{values[0]:.4f}"
        return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"

    def welch(rs, base_rs):
        """(difference of the kNN means, Welch's t, two-sided p with Welch-Satterthwaite degrees of
        freedom), or None below 2 seeds on either side."""
        a, b = [r["knn"] for r in rs], [r["knn"] for r in base_rs]
        if len(a) < 2 or len(b) < 2:
            return None
        return welch_test(a, b)

    def delta(w):
        return "-" if w is None else f"{w[0]:+.4f} (t {w[1]:+.1f}, p {w[2]:.3f})"

    for name, _, _, _, _, base, note in ROWS:
        rs = per_row[name]
        sp = latest_speed.get(name)
        speed_text = f"{sp['images_per_s']:.0f}" if sp else "-"
        ratio = f"{sp['ratio_to_simclr']:.2f}" if sp and sp.get("ratio_to_simclr") else "-"
        versus = delta(welch(rs, per_row[base])) if base else "-"
        lines.append(f"| {name} | {base or '-'} | {ms(rs, 'knn')} | {ms(rs, 'linear')} | {len(rs)} | {versus} | "
                     f"{speed_text} | {ratio} | {note} |")
    claims = ["| variant | compared with | paper's claim | kNN difference (Welch t, p) | Holm p | verdict at this scale |",
              "|---|---|---|---|---|---|"]
    tests = {name: welch(per_row[name], per_row[BY_NAME[name][5]]) for name in CLAIMS}
    holm = holm_adjust({name: w[2] for name, w in tests.items() if w is not None})
    for name, claim in CLAIMS.items():
        base, w = BY_NAME[name][5], tests[name]
        verdict = f"pending ({len(per_row[name])} + {len(per_row[base])} seeds)"
        if w is not None:
            diff, _, p_value = w
            verdict = ("no difference shown" if p_value >= 0.05 else "reproduced" if diff > 0
                       else "reversed: worse than the base")
        adjusted = f"{holm[name]:.3f}" if name in holm else "-"
        claims.append(f"| {name} | {base} | {claim} | {delta(w)} | {adjusted} | {verdict} |")
    text = "\n".join(lines) + "\n\n" + "\n".join(claims)
    footer = (f"\n\n{steps} steps of batch 256 per run; revisions of the quality runs: {', '.join(sorted(revisions)) or '-'}; "
              f"speed revisions: {', '.join(sorted({s['revision'] for s in latest_speed.values()})) or '-'}.")
    return text + footer


def main() -> None:
    global OUT
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["quality", "speed", "table"])
    p.add_argument("--rows", nargs="+", default=[row[0] for row in ROWS], choices=[row[0] for row in ROWS])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="quality: steps per run (200); speed: timed steps per round (12)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--redo", action="store_true")
    p.add_argument("--write", action="store_true")
    p.add_argument("--out", type=Path, default=OUT, help="where results.jsonl and speed.jsonl live")
    args = p.parse_args()
    OUT = args.out
    if args.mode == "quality":
        args.steps = args.steps or 200
        quality(args)
    elif args.mode == "speed":
        args.steps = args.steps or 12
        if "simclr" not in args.rows:
            args.rows = ["simclr", *args.rows]
        speed(args)
    else:
        args.steps = args.steps or 200
        text = table(args)
        print(text)
        if args.write:
            write_section("methods-table", text, "Methods on fmnist-cpu (`benchmarks/methods_table.py`)")


if __name__ == "__main__":
    main()
