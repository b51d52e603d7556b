"""Progress a user can read: plain lines (no carriage returns) when stderr is a file or a pipe,
feature extraction that says how far it is, a `--resume` that finds nothing says so, and the
report names the backbone the run really used."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch

from selfsup.cli import main
from selfsup.progress import Progress, duration


def test_plain_progress_is_a_handful_of_lines_without_carriage_returns():
    stream = io.StringIO()
    bar = Progress(150, "pretrain", unit="step", stream=stream)
    assert not bar.terminal  # a StringIO is not a terminal
    for step in range(150):
        bar.update(1, loss=f"{4 - step / 100:.3f}", **{"images/s": "800"})
        if step == 70:
            bar.write("warning: something happened")
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    progress = [line for line in lines if line.startswith("pretrain: ")]
    assert 5 <= len(progress) <= 11, lines
    assert progress[0].startswith("pretrain: step 15/150 (10%), loss 3.860, 800 images/s, ")
    assert progress[-1].startswith("pretrain: step 150/150 (100%)") and "took" in progress[-1]
    assert "warning: something happened" in lines


def test_plain_progress_also_writes_after_a_quiet_half_minute(monkeypatch):
    import selfsup.progress as P

    clock = [0.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: clock[0])
    stream = io.StringIO()
    bar = Progress(10_000, "evaluate: features of x (train)", unit="rows", stream=stream)
    for _ in range(3):
        clock[0] += 31.0  # slow work: 64 rows per 31 s, far from the next 10%
        bar.update(64)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("evaluate: features of x (train): 64/10,000 rows (1%), ")
    assert lines[-1].endswith("left") and "h" in lines[-1].split(", ")[-1]  # 1.3 hours at that pace
    assert duration(75) == "1m15s" and duration(7260) == "2h01m"


def test_plain_progress_writes_its_first_line_early(monkeypatch):
    import selfsup.progress as P

    clock = [0.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: clock[0])
    stream = io.StringIO()
    bar = Progress(2500, "pretrain", unit="step", stream=stream)
    for _ in range(20):  # 1 step/s: the first 10% would take 250 s
        clock[0] += 1.0
        bar.update(1, loss="4.000")
    lines = stream.getvalue().splitlines()
    assert lines == ["pretrain: step 5/2500 (0%), loss 4.000, 41m35s left"]  # after 5 s, then quiet for 30 s
    for _ in range(30):
        clock[0] += 1.0
        bar.update(1)
    assert len(stream.getvalue().splitlines()) == 2


def test_trainer_messages_are_lines_of_their_own_between_plain_progress_lines(fmnist_npz, tmp_path, monkeypatch, capsys):
    from selfsup import config as C
    from selfsup import registry
    from selfsup.train.loop import train

    cls = registry.get("method", "simclr")
    forward = cls.forward

    def nan_at_step_3(self, batch):
        out = forward(self, batch)
        if self.training and round(batch.progress * 20) + 1 == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(cls, "forward", nan_at_step_3)
    config = C.load(overrides=[f"data.name={fmnist_npz}", f"out={tmp_path / 'run'}", "train.steps=20",
                               "train.batch_size=16", "train.progress=true", "train.on_nonfinite=skip",
                               "train.precision=fp32", "backbone.width=8", "train.threads=1",
                               "method.hidden_dim=32", "method.out_dim=16"])
    train(config)
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err
    lines = err.splitlines()
    assert any(line.startswith("warning: skipped step 3: the loss became nan") for line in lines), err
    progress = [line for line in lines if line.startswith("pretrain: step")]
    assert 2 <= len(progress) <= 12 and progress[-1].startswith("pretrain: step 20/20 (100%)"), err


def test_a_piped_pretraining_writes_plain_lines(fmnist_npz, tmp_path):
    args = [sys.executable, "-m", "selfsup.cli", "pretrain", "--data", str(fmnist_npz), "--steps", "150",
            "--batch-size", "16", "--out", str(tmp_path / "run"), "--no-eval", "--set", "backbone.width=8",
            "--set", "method.hidden_dim=32", "--set", "method.out_dim=16", "--set", "train.threads=1"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("pretrain: step")]
    assert 5 <= len(progress) <= 15, proc.stderr
    assert progress[-1].startswith("pretrain: step 150/150 (100%)") and "images/s" in progress[-1]


def test_long_feature_extraction_reports_progress(monkeypatch, capsys):
    import selfsup.evaluation.features as F

    monkeypatch.setattr(F._RowProgress, "SILENT_SECONDS", 0.0)  # every extraction counts as long here
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    images = torch.randint(0, 256, (640, 1, 4, 4), dtype=torch.uint8)
    F.extract_features(net, images.float(), batch_size=64, progress="evaluate: features of toy (train)")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("evaluate: features of toy (train): ")]
    assert lines and lines[-1].startswith("evaluate: features of toy (train): 640/640 rows (100%)")
    assert all("rows/s" in line and "\r" not in line for line in lines)
    F.extract_features(net, images.float(), batch_size=64)  # no label: silent
    assert capsys.readouterr().err == ""


def test_resume_without_a_checkpoint_says_it_starts_a_new_run(fmnist_npz, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(fmnist_npz), "--steps", "2", "--batch-size", "16", "--out", str(tmp_path / "r"),
              "--no-progress", "--no-eval", "--resume", "--set", "backbone.width=8", "--set", "method.hidden_dim=32",
              "--set", "method.out_dim=16"])
    assert info.value.code == 0
    err = capsys.readouterr().err
    assert "note: --resume: there is no checkpoint in" in err and "starts a new run" in err


def test_report_names_the_backbone_used_and_how_to_get_the_online_knn(fmnist_split_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(fmnist_split_dir / "train.npz"), "--steps", "2", "--batch-size", "16",
              "--out", str(tmp_path / "r"), "--no-progress", "--set", "backbone.width=8",
              "--set", f"data.test_split={fmnist_split_dir / 'test.npz'}",
              "--set", "method.hidden_dim=32", "--set", "method.out_dim=16"])
    assert info.value.code == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Backbone: **convnet6** (backbone.name was auto: chosen for the data)" in report
    assert "Views: **fmnist** (views.preset was auto: chosen for the method and the data)" in report
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["pretrain"]["backbone"] == "convnet6" and results["pretrain"]["views"] == "fmnist"
    assert "online kNN accuracy: not tracked in this run (set train.monitor_every=N" in report
    err = capsys.readouterr().err
    assert "evaluate: knn (1/3)" in err and "evaluate: writing the report" in err
