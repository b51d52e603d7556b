"""A study loses no work: protocols that do not fit are skipped with a reason, each finished protocol
run is on disk at once, a killed study (SIGKILL, a real process) continues without recomputing
what it finished, and SIGTERM writes the report of what is done before exiting with 143."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from selfsup.cli import main

# Small options so that the whole image protocol set runs in seconds on 500 + 200 images.
FAST = ["fewshot.episodes=3", "fewshot.shots=[1, 5]", "robustness.kinds=[occlusion]", "robustness.severities=[5]",
        "adversarial.steps=1", "adversarial.surrogate=64", "separability.n=100", "alignment_uniformity.n=128",
        "fractions.fractions=[0.1]", "longtail.ratios=[10]"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fmnist_split_dir):
    """A short SimCLR run on 500 real Fashion-MNIST images, its test split the 200 others."""
    out = tmp_path_factory.mktemp("resume") / "run"
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(fmnist_split_dir / "train.npz"), "--steps", "4", "--batch-size", "64",
              "--out", str(out), "--no-progress", "--no-eval", "--set", "backbone.width=8", "--set", "train.threads=1",
              "--set", f"data.test_split={fmnist_split_dir / 'test.npz'}",
              "--set", "method.hidden_dim=32", "--set", "method.out_dim=16"])
    assert info.value.code == 0
    return out


def study_command(run: Path, out: Path) -> list[str]:
    args = [sys.executable, "-m", "selfsup.cli", "evaluate", str(run), "--protocols", "all", "--out", str(out),
            "--device", "cpu"]
    for option in FAST:
        args += ["--option", option]
    return args


def launch(args, fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SELFSUP_FAULT", None)
    if fault:
        env["SELFSUP_FAULT"] = fault
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def journal(out: Path) -> list[dict]:
    path = out / "study.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_killed_study_resumes_without_recomputing_finished_rows(run_dir, tmp_path):
    out = tmp_path / "study"
    # A real SIGKILL of the study process right after its 3rd finished protocol run.
    proc = launch(study_command(run_dir, out), fault="study:3")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err
    first = journal(out)
    assert len(first) == 3
    # what was finished is already in results.csv, written as the study went
    rows = csv_rows(out / "results.csv")
    assert {r["protocol"] for r in rows} == {j["protocol"] for j in first}

    proc = launch(study_command(run_dir, out))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    reused = [line for line in err.splitlines() if line.endswith("reused from study.jsonl")]
    assert len(reused) == 3, err
    assert "reused 3 finished protocol runs" in err
    second = journal(out)
    # the three finished runs were not computed again: no second journal line for their keys ...
    keys = [j["key"] for j in second]
    assert len(keys) == len(set(keys)) and second[:3] == first
    # ... and their rows (the measured seconds included) are exactly the first process's
    rows = csv_rows(out / "results.csv")
    for record in first:
        got = {r["metric"]: float(r["value"]) for r in rows
               if r["protocol"] == record["protocol"] and r["seed"] == str(record["seed"])}
        assert got == record["metrics"]
    # and the study is complete: every protocol that fits 1-channel images on a convnet ran
    assert {"knn", "linear", "multilayer", "robustness", "fewshot"} <= {r["protocol"] for r in rows}
    assert (out / "report.html").is_file()


def test_sigterm_writes_the_report_of_what_is_done(run_dir, tmp_path):
    out = tmp_path / "study"
    proc = launch(study_command(run_dir, out), fault="study:2:pause")
    deadline = time.time() + 300
    seen = ""
    while "selfsup-fault: paused" not in seen and time.time() < deadline:
        seen += proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, seen + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("stopped by SIGTERM after 2 of") and "rerun the same command" in lines[-1]
    page = (out / "report.html").read_text()
    assert "Stopped by SIGTERM after 2 of" in page
    assert len({r["protocol"] for r in csv_rows(out / "results.csv")}) == 2


def test_unfit_protocols_are_skipped_with_the_reason(tmp_path):
    """On a two-class table with the mlp backbone, 'all' runs what fits and reports the rest."""
    import numpy as np

    import selfsup
    from selfsup.evaluation import EvalContext, unfit_reason

    rng = np.random.default_rng(0)
    lines = ["a,b,c,label"] + [f"{x:.3f},{y:.3f},{z:.3f},{'yes' if x + y > 0 else 'no'}"
                               for x, y, z in rng.normal(size=(300, 3))]
    (tmp_path / "train.csv").write_text("\n".join(lines[:201]) + "\n")
    (tmp_path / "test.csv").write_text("\n".join([lines[0]] + lines[201:]) + "\n")
    run = selfsup.pretrain(data=str(tmp_path / "train.csv"), steps=3, batch_size=32, out=tmp_path / "run",
                           overrides=[f"data.test_split={tmp_path / 'test.csv'}", "train.progress=false"],
                           evaluate=False)
    rows = selfsup.study(tmp_path / "run", protocols=["knn", "loki", "multilayer", "rankme"],
                         out=tmp_path / "study", embedding_map=False, quiet=True)
    assert {r["protocol"] for r in rows} == {"knn", "rankme"}
    page = (tmp_path / "study" / "report.html").read_text()
    assert "Skipped protocols" in page and "at least 3 classes; the train split has 2" in page
    assert "needs a backbone with stages (forward_maps: convnet, resnet, scatnet), and the backbone is mlp" in page

    # The backbone requirement: a backbone without stages (no forward_maps) does not fit multilayer.
    from selfsup.data.dataset import ImageDataset
    from selfsup.encoder import Encoder

    class Flat(torch.nn.Module):
        dim = 4

        def forward(self, x):
            return x.flatten(1)[:, :4]

    images = ImageDataset(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2] * 2),
                          [str(i) for i in range(6)], "tiny", "memory")
    ctx = EvalContext(Encoder(Flat(), [0.0], [1.0], "image"), images, images)
    assert "needs a backbone with stages" in unfit_reason("multilayer", ctx)
    assert unfit_reason("loki", ctx) is None
    assert run.run_dir == tmp_path / "run"
