"""Training speed on the new kinds of data against their backbone floor, and the cost of batching
ragged graphs, measured side by side in one process.

usage: python benchmarks/modality_speed.py [--cases ...] [--steps 60] [--threads 1] [--rounds 2] [--write]

For each case (a kind of data, a method and a backbone, on real data):

- floor: the backbone alone, as in ../shared/BENCHMARK.md's fmnist-cpu floor: forward and backward
  of the 2 x B views of one batch (drawn once by the run's own views, so the floor sees the inputs
  the trainer's backbone sees: cropped series, graphs with dropped nodes), the loss the sum of the
  output features, and an AdamW step, in the run's precision (bf16 autocast where the CPU has it,
  as the trainer's `auto`); 3 warm-up steps, then the median of 12 timed steps. The floor's
  samples/s is B over that median.
- run: the trainer itself (`selfsup.train.loop.train`) with the same method, backbone and batch,
  `--steps` steps; its samples/s is what it reports (batches drawn from the stored set, views,
  forward, loss, backward, optimizer step, bookkeeping).
- ratio = run / floor. The floor is measured before and after each run and averaged; the case is
  repeated `--rounds` times and the mean ratio reported, with the range.

Graph batching: for a batch of B molecules the time to gather them from the stored dataset into one
ragged batch (node features, edges and their offsets; `plugin.gather`), the time of the method's
views (GraphCL's node dropping and subgraphs) on it, and both as a share of the trainer's step time.

Records go to benchmarks/results/modality_speed/results.jsonl; ``--write`` puts the table in
BENCHMARKS.md between the ``modality-speed`` markers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, cpu_model, read_jsonl, revision, write_section  # noqa: E402
from selfsup import config as C  # noqa: E402
from selfsup import samples as S  # noqa: E402
from selfsup.backbones.base import build_backbone  # noqa: E402
from selfsup.train.assemble import assemble  # noqa: E402
from selfsup.train.hardware import autocast, resolve_precision  # noqa: E402
from selfsup.train.loop import train  # noqa: E402

RECORDS = ROOT / "benchmarks" / "results" / "modality_speed" / "results.jsonl"
SHARED = ROOT.parent / "shared" / "datasets"

# name -> (data, method, backbone, batch, extra overrides)
CASES = {
    "series simclr resnet1d": ("OSULeaf", "simclr", "resnet1d", 64, []),
    "series simclr ts2vec_cnn": ("OSULeaf", "simclr", "ts2vec_cnn", 64, []),
    "series tstcc resnet1d": ("OSULeaf", "tstcc", "resnet1d", 64, []),
    "graph graphcl gin": ("wehi", "graphcl", "gin", 128, []),
    "graph bgrl gcn": ("wehi", "bgrl", "gcn", 128, []),
}




PRECISION = "auto"


def config_of(case: str, steps: int, out: Path) -> C.RunConfig:
    data, method, backbone, batch, extra = CASES[case]
    return C.load(overrides=[f"data.name={data}", f"data.root={SHARED}", f"method.name={method}",
                             f"backbone.name={backbone}", f"train.batch_size={batch}", f"train.steps={steps}",
                             f"train.precision={PRECISION}", "train.progress=false", f"train.checkpoint_every={steps}",
                             f"out={out}", *extra])


def floor(backbone_spec: dict, batch, warmup: int = 3, timed: int = 12) -> float:
    """Seconds per step of the backbone alone on `batch` (2 x B samples): median of `timed` steps."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    dtype = resolve_precision(PRECISION, device)
    spec = dict(backbone_spec)
    model = build_backbone(spec.pop("name"), **spec)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + timed):
        t = time.perf_counter()
        with autocast(device, dtype):
            out = model(batch)
        opt.zero_grad(set_to_none=True)
        out.float().sum().backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def floor_batch(run, batch: int):
    """The 2 x B views of one batch of B training samples, as one batch for the backbone."""
    g = torch.Generator().manual_seed(0)
    stored = run.plugin.store(run.train_set.samples, torch.device("cpu"))
    index = torch.randint(0, S.count(stored), (batch,), generator=g)
    views, _ = run.views(run.plugin.gather(stored, index), g)
    return S.cat(list(views)), stored


def batching_cost(run, stored, batch: int, repeats: int = 20) -> dict:
    """Median ms to gather B samples into one batch and to draw the method's views of it."""
    g = torch.Generator().manual_seed(1)
    gather, views = [], []
    for i in range(repeats):
        index = torch.randint(0, S.count(stored), (batch,), generator=g)
        t = time.perf_counter()
        samples = run.plugin.gather(stored, index)
        gather.append(time.perf_counter() - t)
        t = time.perf_counter()
        run.views(samples, torch.Generator().manual_seed(i))
        views.append(time.perf_counter() - t)
    return {"gather_ms": 1e3 * statistics.median(gather), "views_ms": 1e3 * statistics.median(views)}


def measure(case: str, steps: int) -> dict:
    batch = CASES[case][3]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_of(case, steps, Path(tmp) / "probe")
        run = assemble(cfg, torch.device("cpu"))  # the run's own data, backbone spec and views
        inputs, stored = floor_batch(run, batch)
        spec = run.method.backbone.spec
        before = floor(spec, inputs)
        result = train(config_of(case, steps, Path(tmp) / "run"))
        after = floor(spec, inputs)
        cost = batching_cost(run, stored, batch)
    floor_per_s = batch / ((before + after) / 2)
    step_ms = 1e3 * batch / result.images_per_s
    return {"case": case, "samples_per_s": result.images_per_s, "floor_per_s": floor_per_s,
            "ratio": result.images_per_s / floor_per_s, "floor_before_ms": 1e3 * before, "floor_after_ms": 1e3 * after,
            "step_ms": step_ms, **cost, "gather_share": cost["gather_ms"] / step_ms,
            "views_share": cost["views_ms"] / step_ms, "batch": batch, "steps": steps}


def table(rev: str | None = None) -> str:
    records = read_jsonl(RECORDS)
    if rev is not None:
        records = [r for r in records if r["revision"] == rev]
    if not records:
        return "(no records)"
    rev = records[-1]["revision"]
    records = [r for r in records if r["revision"] == rev]
    lines = [f"`python benchmarks/modality_speed.py --write` at {rev}, {records[-1]['cpu']}, "
             f"{records[-1]['threads']} thread(s), {records[-1].get('precision', 'fp32')}; the mean over "
             f"{records[-1]['rounds']} rounds of {records[-1]['steps']} trainer steps, each between two floor "
             "measurements (the range of the rounds' ratios in brackets).", "",
             "| case | data | batch | trainer samples/s | floor samples/s | ratio to floor | gather ms | views ms | "
             "gather + views share of a step |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case in CASES:
        rows = [r for r in records if r["case"] == case]
        if not rows:
            continue
        mean = {k: statistics.mean(r[k] for r in rows) for k in ("samples_per_s", "floor_per_s", "ratio", "gather_ms",
                                                                 "views_ms", "gather_share", "views_share")}
        low, high = min(r["ratio"] for r in rows), max(r["ratio"] for r in rows)
        lines.append(f"| {case} | {CASES[case][0]} | {rows[0]['batch']} | {mean['samples_per_s']:.0f} | "
                     f"{mean['floor_per_s']:.0f} | {mean['ratio']:.2f} ({low:.2f}-{high:.2f}) | {mean['gather_ms']:.1f} | "
                     f"{mean['views_ms']:.1f} | {100 * (mean['gather_share'] + mean['views_share']):.0f}% |")
    lines += ["", "The floor is the backbone alone. SimCLR and GraphCL add views, a projector and the loss to it. "
              "TS-TCC also runs its temporal-contrasting transformer (4 layers over the per-timestep features of "
              "both views) and its context projections; BGRL runs a second encoder pass (the EMA target, on both "
              "views) and a 512-wide predictor, around a GCN that is itself cheap. So those two rows measure the "
              "method's own extra work, as the extra-pass and multi-crop rows of the methods table do, not a loss "
              "in the pipeline. Gathering a batch of 128 molecules into one ragged batch (node features, edges, "
              "offsets) and drawing GraphCL's views together take a few percent of a step."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES), metavar="CASE")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the trainer's and the floor's (auto: bf16 where the CPU has it)")
    parser.add_argument("--write", action="store_true", help="write the table of this revision's records")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    global PRECISION
    PRECISION = args.precision
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    rev = revision()
    if not args.table_only:
        for round_ in range(args.rounds):
            for case in args.cases:
                row = measure(case, args.steps)
                row.update({"revision": rev, "round": round_, "rounds": args.rounds, "threads": args.threads,
                            "cpu": cpu_model(), "precision": str(resolve_precision(PRECISION, torch.device("cpu")))})
                append_jsonl(RECORDS, row)
                print(f"{case}: {row['samples_per_s']:.0f}/s, floor {row['floor_per_s']:.0f}/s, ratio {row['ratio']:.2f}, "
                      f"gather {row['gather_ms']:.1f} ms, views {row['views_ms']:.1f} ms, step {row['step_ms']:.1f} ms",
                      flush=True)
    text = table(None if args.table_only else rev)
    print(text)
    if args.write:
        write_section("modality-speed", text, "Speed on series and graphs")


if __name__ == "__main__":
    main()
