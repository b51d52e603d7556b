"""Graceful stop (issue point 3): SIGTERM or SIGINT finishes the current step, saves a checkpoint,
prints one line naming it and how to resume, and exits with 128 + the signal number (143, 130); a
second signal exits at once and leaves the last complete checkpoint intact. Library use gets
RunInterrupted instead, and its own signal handlers back."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from selfsup import config as C
from selfsup.errors import RunInterrupted
from selfsup.checkpoint import list_checkpoints, load_checkpoint
from selfsup.train.loop import train
from tests.test_kill_resume import (
    TMP_LEFTOVER,
    Launcher,
    assert_same_run,
    logged_step,
    pretrain_args,
    reference_run,
    run_cli,
    shared_launcher,
    wait_until,
)


@pytest.fixture(scope="module")
def launcher() -> Launcher:
    return shared_launcher()


def start(args: list[str], log: Path) -> subprocess.Popen:
    """The literal `python -m selfsup.cli ARGS`, stdout and stderr in `log`."""
    env = {k: v for k, v in os.environ.items() if k != "SELFSUP_FAULT"}
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "selfsup.cli", *args], stdout=f, stderr=subprocess.STDOUT, env=env)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_sigterm_saves_within_one_step_and_exits_143(fmnist_npz, tmp_path):
    """The literal `python -m selfsup.cli pretrain`, as a shell or a cluster scheduler runs it."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    proc = start(pretrain_args(fmnist_npz, out, steps=100_000, every=1000), log)
    wait_until(lambda: logged_step(out) >= 3 or proc.poll() is not None, [proc])
    seen = logged_step(out)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    elapsed, text = time.monotonic() - t0, log.read_text()
    assert code == 143, text
    assert "Traceback" not in text and "SIGTERM received" in text
    saved = list_checkpoints(out / "checkpoints")
    assert len(saved) == 1 and [p.name for p in (out / "checkpoints").iterdir()] == [saved[0].name]
    step = load_checkpoint(saved[0])["step"]
    # the step in progress was finished (and logged), then saved, and no further step was started
    # (exactly one step: test_library_use_...); the slack is for this process being descheduled
    assert step == logged_step(out) and seen <= step <= seen + 10, (seen, step)
    assert elapsed < 30
    assert lines(text)[-1] == (f"stopped by SIGTERM after step {step}; the checkpoint is saved in '{saved[0]}'. "
                               "To continue: rerun the same command with --resume.")
    assert not (out / "encoder").exists()


LONG = 20  # steps: the signal lands long before the end


@pytest.fixture(scope="module")
def stopped_reference(fmnist_npz, tmp_path_factory):
    return reference_run(fmnist_npz, tmp_path_factory.mktemp("reference") / "run", steps=LONG, every=5)


@pytest.mark.slow
def test_sigint_then_resume_is_bit_identical(launcher, stopped_reference, fmnist_npz, tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "run.log"
    proc = launcher.start(pretrain_args(fmnist_npz, out, steps=LONG, every=5), log)
    wait_until(lambda: logged_step(out) >= 3 or proc.poll() is not None, [proc])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, log.read_text()
    step = logged_step(out)
    assert step < LONG and load_checkpoint(out / "checkpoints" / f"step-{step:08d}.pt")["step"] == step
    assert lines(log.read_text())[-1].startswith(f"stopped by SIGINT after step {step}; ")

    code, text = run_cli(pretrain_args(fmnist_npz, out, steps=LONG, every=5) + ["--resume"], capsys)
    assert code == 0 and f"at step {step}" in text, text
    assert_same_run(stopped_reference, out, steps=LONG)


@pytest.mark.slow
def test_second_signal_during_a_save_exits_at_once(launcher, stopped_reference, fmnist_npz, tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "run.log"
    # the 2nd save (step 10) pauses after writing its temporary file, before the rename
    proc = launcher.start(pretrain_args(fmnist_npz, out, steps=LONG, every=5), log, fault="save:before-rename:2:pause")
    wait_until(lambda: "paused at save" in log.read_text() or proc.poll() is not None, [proc])
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM received" in log.read_text() or proc.poll() is not None, [proc])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 143, log.read_text()  # at once: the pause would last 60 s
    assert "second SIGTERM" in log.read_text()
    ckpt = out / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpt)] == ["step-00000005.pt"]
    assert load_checkpoint(ckpt / "step-00000005.pt")["step"] == 5
    leftovers = [p.name for p in ckpt.iterdir() if p.name != "step-00000005.pt"]
    assert len(leftovers) == 1 and TMP_LEFTOVER.match(leftovers[0]) and "00000010" in leftovers[0]

    code, text = run_cli(pretrain_args(fmnist_npz, out, steps=LONG, every=5) + ["--resume"], capsys)
    assert code == 0 and "at step 5" in text, text
    assert_same_run(stopped_reference, out, steps=LONG)


def tiny(data, out, steps=4):
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"train.steps={steps}", "train.batch_size=16",
                             "train.progress=false", "backbone.width=8", "method.hidden_dim=32", "method.out_dim=16",
                             "train.checkpoint_every=100"])


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_library_use_gets_run_interrupted_and_its_handlers_back(signum, code, fmnist_npz, tmp_path, monkeypatch):
    from selfsup.train import loop

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seen = []

    def lr_and_a_signal(step, *args, **kwargs):
        seen.append(signal.getsignal(signum))
        if step == 1:
            signal.raise_signal(signum)  # arrives during step 1 (the second step)
        return loop_learning_rate(step, *args, **kwargs)

    loop_learning_rate = loop.learning_rate
    monkeypatch.setattr(loop, "learning_rate", lr_and_a_signal)
    with pytest.raises(RunInterrupted) as info:
        train(tiny(fmnist_npz, tmp_path / "run"))
    assert seen[0] not in before  # the trainer's handler while it steps
    assert len(seen) == 2  # the step in progress finished, no other began
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert info.value.exit_code == code and info.value.signum == signum
    path = tmp_path / "run" / "checkpoints" / "step-00000002.pt"
    assert f"after step 2; the checkpoint is saved in '{path}'" in str(info.value) and "--resume" in str(info.value)
    assert load_checkpoint(path)["step"] == 2


def test_no_handlers_outside_the_main_thread(fmnist_npz, tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    result = {}
    thread = threading.Thread(target=lambda: result.update(run=train(tiny(fmnist_npz, tmp_path / "run", steps=2))))
    thread.start()
    thread.join(timeout=120)
    assert result["run"].steps == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
