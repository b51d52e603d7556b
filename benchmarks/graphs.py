"""Graphs: molecule representations probed on two regression sets, and node clustering of the karate club.

usage:
  python benchmarks/graphs.py [--seeds 0 1 2] [--steps 800] [--threads 1] [--tasks tpsa chembl karate] [--write]
  python benchmarks/graphs.py --table-only [--write]

Tasks (everything random is run once per seed; deterministic rows are measured once, seed 0):

- ``tpsa``: the frozen graph-level embeddings of nci_tpsa (4,991 molecules, Bemis-Murcko scaffold split
  3,992 / 999) go through ``evaluation.ridge.ridge_probe`` (ridge regression on standardized features,
  the L2 strength by leave-one-out on the train split) against TPSA; R^2 and MAE on the test split.
  Rows:
  - graphcl: GraphCL (its defaults: GraphCL views, projector 128-128, temperature 0.2) with the GIN
    backbone (5 layers, 128 wide, GINE with the bond features, mean pooling), pretrained with
    ``selfsup.pretrain`` on the 10,000 unlabeled wehi molecules (not on nci_tpsa);
  - dsla: D-SLA (its defaults) with the same backbone, pretrained the same way;
  - untrained gin: the same backbone at its seeded initialization;
  - morgan: RDKit Morgan fingerprints (radius 2, 2,048 bits) through the same probe (one value);
  - "<row> (sum readout)": the same weights with the node embeddings summed over each molecule
    instead of averaged (``backbone.pool=sum`` at embedding time; training used the mean). TPSA is a
    sum of atom contributions, so it grows with the molecule, and a mean-pooled embedding cannot say
    how big a molecule is; the sum readout can.
  Both pretrained rows: ``--steps`` steps of batch 128, AdamW at 1e-3 (the Adam rate of both papers)
  without weight decay, cosine schedule, fp32 (so that the figures do not depend on the CPU's bf16
  support), ``--threads`` torch threads. wehi, nci_tpsa and chembl2321810 are read with the same atom
  and bond vocabulary (40 node and 6 edge features), which the script checks.
- ``chembl``: the same encoders (the same pretrained weights) and probe on chembl2321810 (1,017
  molecules of one ChEMBL series, pIC50, scaffold split 813 / 204).
- ``karate``: the 34 nodes of Zachary's karate club (networkx; node features: the one-hot node id,
  as PyTorch Geometric's KarateClub); k-means (2 clusters, n_init=10, random_state=seed) on
  the node embeddings, NMI and ARI (scikit-learn) against the two factions. Rows:
  - scgc: SCGC with its defaults (node_mlp 500-500-2000-10, SDCN autoencoder initialization, 2
    clusters), trained on the karate graph, ``--karate-steps`` full-graph steps (its default: 200
    epochs), Adam 1e-3 constant without weight decay (the authors' settings);
  - ae init: SCGC's starting point, the same node_mlp after SDCN's autoencoder pretraining (30 epochs)
    and nothing else: the "AE" baseline of SDCN's and SCGC's tables, and SCGC's base here;
  - untrained node_mlp: the same MLP at its seeded initialization;
  - raw features: k-means on the node features themselves (the "K-means" baseline of those tables);
  - spectral: scikit-learn's SpectralClustering(2, affinity="precomputed") on the adjacency matrix
    (random_state 0, one value): the structure alone;
  - grace (gcn): GRACE with a 2-layer GCN (message passing), its defaults, ``--karate-steps``
    full-graph steps, AdamW 5e-4 with weight decay 1e-5 (GRACE's Cora setting);
  - untrained gcn: the same GCN at its seeded initialization.

Verdicts (as in benchmarks/methods_table.py): Welch's t-test over the seeds, two-sided p < 0.05:
"reproduced" when the claimed-better row is ahead, "reversed" when behind, else "no difference shown".
D-SLA vs GraphCL (the graph-contrast method it builds on and compares with) on TPSA R^2 and ChEMBL R^2;
SCGC vs its autoencoder initialization, and vs k-means on the raw features, on karate NMI.

Each (task, row, seed) result is one JSON line in ``benchmarks/results/graphs/results.jsonl`` with
the revision, the metrics, the seconds it took (pretraining included), the steps, the CPU model and
the thread count; a rerun skips what is already there for the same revision and budget. Pretrained
encoders are kept in ``runs/graphs/<revision>/`` (reused by a rerun). ``--write`` puts the tables
in BENCHMARKS.md between the ``graphs`` markers.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import append_jsonl, cpu_model, read_jsonl, revision, write_section  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "graphs"
RUNS = ROOT / "runs" / "graphs"
TASKS = ("tpsa", "chembl", "karate")
MOLECULE_SETS = {"tpsa": "nci_tpsa", "chembl": "chembl2321810"}
MOLECULE_ROWS = ("graphcl", "dsla", "untrained gin", "graphcl (sum readout)", "dsla (sum readout)",
                 "untrained gin (sum readout)", "morgan")
SUM = " (sum readout)"
KARATE_ROWS = ("scgc", "ae init", "untrained node_mlp", "raw features", "spectral", "grace (gcn)", "untrained gcn")
PRETRAINED = {"graphcl": "graphcl", "dsla": "dsla"}
BATCH = 128
LR = 1e-3
MORGAN_RADIUS, MORGAN_BITS = 2, 2048
AE_BUDGET = "30 autoencoder epochs"  # SCGC's default pretrain_epochs (checked in run_karate)


def molecule_budget(args) -> str:
    return f"{args.steps} steps x batch {BATCH}, adamw {LR:g} wd 0 cosine, fp32, wehi"


def karate_budget(args) -> str:
    return f"{args.karate_steps} full-graph steps"


# (row, base, metric, task, claim): the verdicts of the table
CLAIMS = [
    ("dsla", "graphcl", "r2", "tpsa", "D-SLA's discrepancy learning gives better molecule representations than graph contrast (GraphCL)"),
    ("dsla", "graphcl", "mae", "tpsa", "the same, by the steadier MAE (lower is better)"),
    ("dsla", "graphcl", "r2", "chembl", "the same, on a small activity series"),
    ("dsla", "graphcl", "mae", "chembl", "the same, on a small activity series, by MAE"),
    ("dsla" + SUM, "graphcl" + SUM, "r2", "tpsa", "the same, both read out by the sum over atoms"),
    ("scgc", "ae init", "nmi", "karate", "SCGC's structure-aware losses improve the clustering over its autoencoder start (the paper's AE row)"),
    ("scgc", "raw features", "nmi", "karate", "SCGC improves on k-means of the node features (the paper's K-means row)"),
]




def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    from methods_table import welch_test  # the methods table's test (scipy's Welch t-test)

    return welch_test(a, b)


LOWER_IS_BETTER = {"mae"}


def verdict(diff: float, p: float, metric: str = "r2") -> str:
    """The methods table's verdict of `row - base` = `diff`; for an error (MAE) the better row is the lower one."""
    better = diff < 0 if metric in LOWER_IS_BETTER else diff > 0
    return "no difference shown" if p >= 0.05 else "reproduced" if better else "reversed"


# ---------------------------------------------------------------------------------------------- molecules


def molecules_of(dataset) -> list:
    """The RDKit molecules of a named molecule set, in the dataset's order: its ids are the .smi file's
    ids (or file:line), so the SMILES are looked up there; the atom counts are checked against the graphs."""
    from rdkit import Chem, RDConfig, rdBase

    import rdkit

    if dataset.name == "nci_tpsa":
        parts, contrib = ("NCI", "first_5K.smi"), False
    elif dataset.name == "chembl2321810":
        parts, contrib = ("FreeWilson", "data", "CHEMBL2321810.smi"), True
    else:
        raise ValueError(dataset.name)
    bases = [RDConfig.RDContribDir if contrib else RDConfig.RDDataDir,
             os.path.join(os.path.dirname(rdkit.__file__), "Contrib" if contrib else "Data")]
    path = next(p for p in (os.path.join(b, *parts) for b in bases) if os.path.isfile(p))
    by_id: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().split("\n"), 1):
        fields = line.strip().split(None, 1)
        if not fields or fields[0].startswith("#"):
            continue
        by_id[f"{os.path.basename(path)}:{number}"] = fields[0]
        if len(fields) > 1:
            by_id.setdefault(fields[1].strip(), fields[0])
    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(by_id[i]) for i in dataset.ids]
    atoms = torch.tensor([m.GetNumAtoms() for m in mols])
    if not torch.equal(atoms, dataset.graphs.nodes_per_graph.cpu()):
        raise RuntimeError(f"{dataset.name}: the molecules read back do not match the graphs (atom counts differ)")
    return mols


def morgan(mols) -> torch.Tensor:
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)
    return torch.from_numpy(np.stack([generator.GetFingerprintAsNumPy(m) for m in mols]).astype(np.float32))


def pretrain_config(method: str, seed: int, steps: int, threads: int) -> tuple[dict, list[str]]:
    base = {"data": {"name": "wehi", "test_split": None}, "backbone": {"name": "gin"}, "method": {"name": method},
            "optim": {"name": "adamw", "weight_decay": 0.0, "warmup_steps": 0, "schedule": "cosine"},
            "train": {"progress": False, "precision": "fp32", "keep_checkpoints": 1, "log_every": 50}}
    overrides = [f"train.steps={steps}", f"train.batch_size={BATCH}", f"train.seed={seed}", f"train.threads={threads}",
                 f"train.checkpoint_every={steps}", f"optim.lr={LR}"]
    return base, overrides


def pretrained_encoder(method: str, seed: int, args, rev: str, say):
    """(encoder, seconds of pretraining, images/s): trained now, or loaded from an earlier run of this
    revision and budget (its results.json is written last, so it marks a finished run)."""
    import selfsup
    from selfsup.encoder import load_encoder

    out = RUNS / (args.encoders_from or rev) / f"{method}-steps{args.steps}-seed{seed}"
    info = out / "benchmark.json"
    if (out / "results.json").is_file() and info.is_file():
        saved = json.loads(info.read_text())
        say(f"reusing {out.relative_to(ROOT)} (pretrained in {saved['seconds']:.0f} s)")
        return load_encoder(out), saved["seconds"], saved.get("images_per_s")
    if out.exists():
        shutil.rmtree(out)  # an unfinished run: start it again
    base, overrides = pretrain_config(method, seed, args.steps, args.threads)
    say(f"pretraining {method} seed {seed}: {args.steps} steps of batch {BATCH} on wehi")
    t0 = time.perf_counter()
    run = selfsup.pretrain(base, out=out, overrides=overrides, evaluate=False, report=False)
    seconds = time.perf_counter() - t0
    info.write_text(json.dumps({"seconds": seconds, "images_per_s": run.images_per_s}))
    torch.set_num_threads(args.threads)
    return run.encoder.eval(), seconds, run.images_per_s


def untrained(name: str, spec: dict, mean, std, seed: int):
    from selfsup.backbones.base import build_backbone
    from selfsup.encoder import Encoder

    torch.manual_seed(seed)
    return Encoder(build_backbone(name, **spec), mean, std, "graph").eval()


def features(encoder, dataset) -> torch.Tensor:
    from selfsup.evaluation.features import extract_features
    from selfsup.modalities import fits_encoder

    fits_encoder(dataset, encoder, dataset.name)
    return extract_features(encoder, dataset.samples, batch_size=1024)


def run_molecules(args, tasks, rev, done, record, say) -> None:
    from selfsup.data.catalogue import load_dataset
    from selfsup.evaluation.ridge import ridge_probe

    wehi = load_dataset("wehi", "train")
    sets = {task: (load_dataset(MOLECULE_SETS[task], "train"), load_dataset(MOLECULE_SETS[task], "test"))
            for task in tasks}
    for task, (train, test) in sets.items():
        if train.input_spec() != wehi.input_spec() or test.input_spec() != wehi.input_spec():
            raise RuntimeError(f"{train.name} has feature widths {train.input_spec()}, wehi {wehi.input_spec()}: "
                               "an encoder pretrained on wehi cannot embed it")
    mean, std = wehi.normalization()
    sizes = {task: {"n_train": len(tr), "n_test": len(te)} for task, (tr, te) in sets.items()}

    def probe(task, encoder):
        train, test = sets[task]
        t0 = time.perf_counter()
        result = ridge_probe(features(encoder, train), train.targets, features(encoder, test), test.targets)
        return result, time.perf_counter() - t0

    # Morgan fingerprints: deterministic, one value per task
    for task in tasks:
        if (task, "morgan", 0, "-") in done:
            continue
        t0 = time.perf_counter()
        train, test = sets[task]
        result = ridge_probe(morgan(molecules_of(train)), train.targets, morgan(molecules_of(test)), test.targets)
        record(task, "morgan", 0, result, time.perf_counter() - t0, steps=0, budget="-",
               features=f"morgan r={MORGAN_RADIUS} {MORGAN_BITS} bits", dim=MORGAN_BITS, **sizes[task])
    budget = molecule_budget(args)
    for seed in args.seeds:
        todo = [t for t in tasks if (t, "untrained gin", seed, "-") not in done]
        if todo:
            encoder = untrained("gin", wehi.input_spec(), mean, std, seed)
            for task in todo:
                result, seconds = probe(task, encoder)
                record(task, "untrained gin", seed, result, seconds, steps=0, budget="-", dim=encoder.dim, **sizes[task])
        todo = [t for t in tasks if (t, "untrained gin" + SUM, seed, "-") not in done]
        if todo:
            encoder = untrained("gin", wehi.input_spec(), mean, std, seed)
            encoder.backbone.pool = "sum"
            for task in todo:
                result, seconds = probe(task, encoder)
                record(task, "untrained gin" + SUM, seed, result, seconds, steps=0, budget="-", dim=encoder.dim,
                       **sizes[task])
        for row, method in PRETRAINED.items():
            todo = [(t, r) for r in (row, row + SUM) for t in tasks if (t, r, seed, budget) not in done]
            if not todo:
                continue
            encoder, pretrain_s, ips = pretrained_encoder(method, seed, args, rev, say)
            trained_at = args.encoders_from or rev
            for task, name in todo:
                encoder.backbone.pool = "sum" if name.endswith(SUM) else "mean"
                result, seconds = probe(task, encoder)
                record(task, name, seed, result, seconds + pretrain_s, steps=args.steps, budget=budget,
                       pretrain_s=pretrain_s, probe_s=seconds, graphs_per_s=ips, dim=encoder.dim,
                       pretrained_at=trained_at, **sizes[task])


# ---------------------------------------------------------------------------------------------- karate


def cluster_scores(x: torch.Tensor, labels: np.ndarray, seed: int) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(x.double().numpy())
    return {"nmi": float(normalized_mutual_info_score(labels, pred)), "ari": float(adjusted_rand_score(labels, pred))}


def karate_pretrain(method: str, seed: int, args, say):
    """A karate encoder (scgc or grace) trained through selfsup.pretrain on all 34 nodes, full-graph steps."""
    import selfsup

    backbone = "node_mlp" if method == "scgc" else "gcn"
    if method == "scgc":  # the authors' train.py: Adam 1e-3, constant, no weight decay
        optim = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0}
    else:  # GRACE on Cora: Adam 5e-4, weight decay 1e-5
        optim = {"name": "adamw", "lr": 5e-4, "weight_decay": 1e-5, "schedule": "constant", "warmup_steps": 0}
    config = {"data": {"name": "karate", "train_split": "all", "test_split": None}, "backbone": {"name": backbone},
              "method": {"name": method}, "optim": optim,
              "train": {"progress": False, "precision": "fp32", "keep_checkpoints": 1, "log_every": 50}}
    steps = args.karate_steps
    out = RUNS / "karate" / f"{method}-steps{steps}-seed{seed}-{os.getpid()}"
    say(f"pretraining {method} seed {seed} on karate: {steps} full-graph steps")
    t0 = time.perf_counter()
    run = selfsup.pretrain(config, out=out, evaluate=False, report=False,
                           overrides=[f"train.steps={steps}", "train.batch_size=34", f"train.seed={seed}",
                                      f"train.threads={args.threads}", f"train.checkpoint_every={steps}"])
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)  # seconds to train again; nothing to keep
    torch.set_num_threads(args.threads)
    return run.encoder.eval(), seconds


def run_karate(args, rev, done, record, say) -> None:
    from sklearn.cluster import SpectralClustering
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from selfsup.data.catalogue import load_dataset
    from selfsup.encoder import Encoder
    from selfsup.methods.base import TrainData
    from selfsup.methods.scgc import SCGC

    import inspect

    if f"{inspect.signature(SCGC).parameters['pretrain_epochs'].default} autoencoder epochs" != AE_BUDGET:
        raise RuntimeError("SCGC's default pretrain_epochs changed: update AE_BUDGET")
    data = load_dataset("karate", "all")
    labels = data.labels.numpy()
    graph = data.nodes.graphs
    mean, std = data.normalization()
    spec = data.input_spec()
    steps = args.karate_steps
    budget = karate_budget(args)
    if ("karate", "spectral", 0, "-") not in done:
        t0 = time.perf_counter()
        adjacency = np.zeros((graph.num_nodes, graph.num_nodes))
        adjacency[graph.edge_index[0].numpy(), graph.edge_index[1].numpy()] = 1.0
        pred = SpectralClustering(n_clusters=2, affinity="precomputed", random_state=0).fit_predict(adjacency)
        pred = pred[data.nodes.rows.numpy()]
        record("karate", "spectral", 0, {"nmi": float(normalized_mutual_info_score(labels, pred)),
                                         "ari": float(adjusted_rand_score(labels, pred))},
               time.perf_counter() - t0, steps=0, budget="-")
    for seed in args.seeds:
        if ("karate", "raw features", seed, "-") not in done:
            t0 = time.perf_counter()
            x = graph.x[data.nodes.rows]
            record("karate", "raw features", seed, cluster_scores(x, labels, seed), time.perf_counter() - t0,
                   steps=0, budget="-", dim=x.shape[1])
        for row, name in (("untrained node_mlp", "node_mlp"), ("untrained gcn", "gcn")):
            if ("karate", row, seed, "-") not in done:
                t0 = time.perf_counter()
                encoder = untrained(name, spec, mean, std, seed)
                record("karate", row, seed, cluster_scores(features(encoder, data), labels, seed),
                       time.perf_counter() - t0, steps=0, budget="-", dim=encoder.dim)
        if ("karate", "ae init", seed, AE_BUDGET) not in done:
            t0 = time.perf_counter()
            from selfsup.backbones.base import build_backbone

            torch.manual_seed(seed)
            method = SCGC(build_backbone("node_mlp", **spec))
            method.prepare(TrainData(data.samples, None, mean, std))  # SDCN's autoencoder, then k-means centres
            encoder = Encoder(method.backbone, mean, std, "graph").eval()
            record("karate", "ae init", seed, cluster_scores(features(encoder, data), labels, seed),
                   time.perf_counter() - t0, steps=0, budget=AE_BUDGET,
                   dim=encoder.dim)
        for row, method in (("scgc", "scgc"), ("grace (gcn)", "grace")):
            if ("karate", row, seed, budget) in done:
                continue
            encoder, pretrain_s = karate_pretrain(method, seed, args, say)
            t0 = time.perf_counter()
            scores = cluster_scores(features(encoder, data), labels, seed)
            record("karate", row, seed, scores, pretrain_s + time.perf_counter() - t0, steps=steps, budget=budget,
                   pretrain_s=pretrain_s, dim=encoder.dim)


# ---------------------------------------------------------------------------------------------- run and table


def run(args) -> None:
    torch.set_num_threads(args.threads)
    rev = revision()
    out = Path(args.out) / "results.jsonl"
    done = {(r["task"], r["row"], r["seed"], r["budget"]) for r in read_jsonl(out) if r["revision"] == rev}
    cpu = cpu_model()

    def say(text):
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def record(task, row, seed, values, seconds, **extra):
        rec = {"task": task, "row": row, "seed": seed, **{k: v for k, v in values.items()}, "seconds": round(seconds, 2),
               **extra, "threads": args.threads, "cpu": cpu, "revision": rev}
        append_jsonl(out, rec)
        done.add((task, row, seed, rec["budget"]))
        print(json.dumps(rec), flush=True)

    t0 = time.perf_counter()
    if rev.endswith("+dirty"):
        say(f"warning: the revision is {rev}: tracked files are changed")
    molecule_tasks = [t for t in args.tasks if t in MOLECULE_SETS]
    if molecule_tasks:
        run_molecules(args, molecule_tasks, rev, done, record, say)
    if "karate" in args.tasks:
        run_karate(args, rev, done, record, say)
    say(f"done in {time.perf_counter() - t0:.0f} s")


def _ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def select(records: list[dict], args) -> tuple[list[dict], str]:
    """The records of one revision (--revision, else that of the newest record) at this budget."""
    budgets = {"-", AE_BUDGET, molecule_budget(args), karate_budget(args)}
    fits = [r for r in records if r["budget"] in budgets]
    rev = args.revision or (fits[-1]["revision"] if fits else "-")
    return [r for r in fits if r["revision"] == rev], rev


def table(args) -> str:
    records, rev = select(read_jsonl(Path(args.out) / "results.jsonl"), args)

    def values(task, row, key):
        rs = {r["seed"]: r for r in records if r["task"] == task and r["row"] == row}
        return [rs[s][key] for s in sorted(rs)]

    def seconds(task, row):
        s = values(task, row, "seconds")
        return f"{statistics.mean(s):.0f}" if s else "-"

    out = []
    cpus = sorted({r["cpu"] for r in records})
    threads = sorted({r["threads"] for r in records})
    out.append(f"Revision {rev}; {', '.join(cpus) or '-'}, {', '.join(map(str, threads)) or '-'} torch thread(s). "
               f"mean +- std over seeds {', '.join(map(str, sorted({r['seed'] for r in records}))) or '-'} "
               "(one value where the row is deterministic).")
    out.append("")
    if any(r["task"] in MOLECULE_SETS for r in records):
        out.append(f"Pretraining (graphcl, dsla): GIN (5 x 128, GINE with bond features, mean pooling) on the 10,000 "
                   f"unlabeled wehi molecules, {args.steps} steps of batch {BATCH} (about {args.steps * BATCH / 10000:.0f} "
                   f"epochs), AdamW {LR:g} without weight decay, cosine schedule, fp32; each method's own defaults "
                   "otherwise. The frozen embeddings (128-d) of the labelled sets go through `ridge_probe` (standardized "
                   "features, RidgeCV by leave-one-out). Seconds: per seed, pretraining included (shared by the two "
                   "probe tasks, so counted in both). The scaffold split puts the rarer scaffolds in test: nci_tpsa's "
                   "test split has molecules of up to 122 atoms (train: 66) and TPSA up to 778 (train: 314), which "
                   "mean-pooled embeddings (size-free) and fingerprint bits (counts-free) extrapolate badly, so a few "
                   "molecules dominate R^2; MAE is the steadier figure. The sum-readout rows embed with the same "
                   "weights, summing the node embeddings over each molecule: TPSA is a sum of atom contributions.")
        trained = sorted({r.get("pretrained_at", r["revision"]) for r in records if r["row"].split(" (")[0] in PRETRAINED})
        if trained and trained != [rev]:
            out.append("")
            out.append(f"The pretrained encoders were trained at {', '.join(trained)} (`--encoders-from`); the graph "
                       "training code is the same at both revisions.")
        out.append("")
    for task, title, target in (("tpsa", "nci_tpsa (scaffold split 3,992 / 999), target TPSA", "TPSA"),
                                ("chembl", "chembl2321810 (scaffold split 813 / 204), target pIC50", "pIC50")):
        if not any(r["task"] == task for r in records):
            continue
        out.append(f"**{title}**")
        out.append("")
        out.append(f"| encoder | R^2 | MAE ({target}) | seeds | seconds |")
        out.append("|---|---|---|---|---|")
        for row in MOLECULE_ROWS:
            r2 = values(task, row, "r2")
            if r2:
                out.append(f"| {row} | {_ms(r2)} | {_ms(values(task, row, 'mae'), 2)} | {len(r2)} | {seconds(task, row)} |")
        out.append("")
    if any(r["task"] == "karate" for r in records):
        out.append(f"**karate club (34 nodes, 2 factions; node features: one-hot node ids)**: k-means (2, n_init=10) on "
                   f"the node embeddings; scgc and grace {args.karate_steps} full-graph steps")
        out.append("")
        out.append("| encoder | NMI | ARI | seeds | seconds |")
        out.append("|---|---|---|---|---|")
        for row in KARATE_ROWS:
            nmi = values("karate", row, "nmi")
            if nmi:
                out.append(f"| {row} | {_ms(nmi)} | {_ms(values('karate', row, 'ari'))} | {len(nmi)} | "
                           f"{seconds('karate', row)} |")
        out.append("")
        out.append("The karate club has no node attributes; its nodes carry one-hot ids (as in PyTorch Geometric's "
                   "KarateClub), so node_mlp (SCGC's encoder, no message passing at inference) learns one embedding "
                   "per node and only SCGC's neighbourhood loss can bring the structure in; k-means of the raw "
                   "features (orthogonal ids) has nothing to go on. The GCN rows and spectral clustering read the "
                   "edges. Rows whose seeds give the same partition have std 0, and Welch's test then calls any "
                   "difference significant.")
        out.append("")
    lines = ["| claim | row vs base | task, metric | difference (Welch t, p) | verdict |", "|---|---|---|---|---|"]
    for row, base, metric, task, claim in CLAIMS:
        a, b = values(task, row, metric), values(task, base, metric)
        if len(a) < 2 or len(b) < 2:
            if a or b:
                lines.append(f"| {claim} | {row} vs {base} | {task}, {metric} | - | pending ({len(a)} + {len(b)} seeds) |")
            continue
        diff, t, p = welch(a, b)
        spread = " (neither row varies over the seeds)" if max(statistics.stdev(a), statistics.stdev(b)) < 1e-3 else ""
        lines.append(f"| {claim} | {row} vs {base} | {task}, {metric} | {diff:+.3f} (t {t:.2f}, p {p:.2g}) | "
                     f"{verdict(diff, p, metric)}{spread} |")
    if len(lines) > 2:
        out.append("Verdicts: Welch's t-test over the seeds, two-sided p < 0.05 (as in the methods table).")
        out.append("")
        out += lines
        out.append("")
    seeds = " ".join(map(str, sorted({r["seed"] for r in records if r["row"] in PRETRAINED}) or args.seeds))
    measured = (f"python benchmarks/graphs.py --seeds {seeds} --steps {args.steps} --karate-steps {args.karate_steps} "
                f"--threads {', '.join(map(str, threads)) or args.threads}")
    command = "python benchmarks/graphs.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    total = sum(r["seconds"] for r in records if r["task"] != "chembl" or r["row"] not in PRETRAINED)
    out.append(f"Measured with `{measured}` (about {total / 60:.0f} min of work, pretraining counted once); "
               f"this table written by `{command.strip()}`.")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=800, help="pretraining steps of graphcl and dsla on wehi")
    p.add_argument("--karate-steps", type=int, default=200, help="full-graph steps of scgc and grace on karate")
    p.add_argument("--threads", type=int, default=1, help="torch threads (torch.set_num_threads)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--out", default=str(OUT), help="folder of results.jsonl (default benchmarks/results/graphs)")
    p.add_argument("--encoders-from", help="reuse the encoders pretrained at this revision (runs/graphs/REV/) "
                   "instead of pretraining again; the records name it (pretrained_at)")
    p.add_argument("--revision", help="the revision whose records the table shows (default: the newest record's)")
    p.add_argument("--table-only", action="store_true", help="print (and --write) the tables from earlier results")
    p.add_argument("--write", action="store_true", help="put the tables in BENCHMARKS.md (graphs markers)")
    args = p.parse_args()
    if not args.table_only:
        run(args)
    text = table(args)
    print(text)
    if args.write:
        write_section("graphs", text, "Graphs: molecules and the karate club")


if __name__ == "__main__":
    main()
