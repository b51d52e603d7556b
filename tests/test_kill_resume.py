"""Real kills: SIGKILL a `selfsup pretrain` process at a random step (issue point 1) or inside a
checkpoint save (point 2, through the test-only SELFSUP_FAULT hook in train/checkpoint.py), rerun the
same command with --resume, and compare the final checkpoint (method state with EMA teacher and
queue, optimizer state) and the exported encoder bit for bit with an uninterrupted run.

A fresh `python -m selfsup.cli` spends ~5 s of CPU importing torch (torch.optim pulls in
torch._dynamo), more than the runs themselves; so the processes killed here are forked from one
preloaded interpreter (`Launcher`), each a real process running the CLI's ``main(argv)``, and the
reruns with --resume go through ``main(argv)`` in this process: the same command, imported once.
tests/test_signals.py starts the literal `python -m selfsup.cli` for its graceful-stop test.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsup.cli import main
from tests.conftest import assert_same
from selfsup.checkpoint import list_checkpoints, load_checkpoint

STEPS = 14
# small heads and queue: the state that must survive a kill is the same kind as in a real run
OPTIONS = {
    "simclr": ["method.hidden_dim=32", "method.out_dim=16"],
    "moco_v2": ["method.hidden_dim=32", "method.out_dim=16", "method.queue_size=48"],  # EMA key encoder + queue
    "byol": ["method.hidden_dim=32", "method.out_dim=16", "method.pred_hidden_dim=32"],  # EMA teacher
}
TMP_LEFTOVER = re.compile(r"^\.step-\d{8}\.pt\.\d+\.tmp$")


def pretrain_args(data, out, method="simclr", steps=STEPS, every=1, keep=2) -> list[str]:
    args = ["pretrain", "--data", str(data), "--method", method, "--steps", str(steps), "--batch-size", "16",
            "--seed", "3", "--out", str(out), "--no-progress", "--no-eval"]
    sets = ["backbone.width=8", "train.threads=1", "train.log_every=1", "optim.warmup_steps=2",
            f"train.checkpoint_every={every}", f"train.keep_checkpoints={keep}", *OPTIONS[method]]
    return args + [f"--set={s}" for s in sets]


def reference_run(data, out, method="simclr", steps=STEPS, every=1, keep=2) -> Path:
    """The uninterrupted run of `pretrain_args(...)`, through the API the CLI calls, without the report."""
    import selfsup

    args = pretrain_args(data, out, method, steps, every, keep)
    overrides = [a[len("--set="):] for a in args if a.startswith("--set=")] + ["train.progress=false"]
    selfsup.pretrain(data=str(data), method=method, steps=steps, batch_size=16, seed=3, out=out, overrides=overrides,
                     evaluate=False, report=False)
    return out


# Imports once, then forks one child per job line on stdin ({"args", "log", "env"}): the child
# runs `selfsup.cli.main(args)` with stdout and stderr in `log`. Replies on stdout: {"pid"} per job,
# in order, and {"exited": pid, "code"} when a child ends (code -N: killed by signal N).
_LAUNCHER = r"""
import json, os, select, sys, traceback
import torch, torch._dynamo, selfsup.api, selfsup.cli, selfsup.train.loop

def child(job):
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1), os.dup2(fd, 2), os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.environ.update(job["env"])
    code = 1
    try:
        selfsup.cli.main(job["args"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(code)

pending, running, stdin_open = b"", 0, True
while stdin_open or running:
    if stdin_open and select.select([0], [], [], 0.01)[0]:
        data = os.read(0, 65536)
        stdin_open = bool(data)
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            sys.stdout.flush(), sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                child(json.loads(line))
            running += 1
            print(json.dumps({"pid": pid}), flush=True)
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        running -= 1
        print(json.dumps({"exited": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)
    if not stdin_open and running:
        select.select([], [], [], 0.01)
"""


class Child:
    """A launched process with the part of Popen's interface the tests use."""

    def __init__(self, launcher: Launcher, pid: int):
        self.launcher, self.pid = launcher, pid

    @property
    def returncode(self) -> int | None:
        return self.launcher.codes.get(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:  # ended, and reaped before its exit code reached us
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        wait_until(lambda: self.returncode is not None, [self], timeout)
        return self.returncode


class Launcher:
    """Starts `selfsup` CLI runs as forks of one interpreter that has imported torch and selfsup."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.codes: dict[int, int] = {}
        self._pids: list[int] = []
        self.children: list[Child] = []
        self._reply = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            reply = json.loads(line)
            with self._reply:
                if "pid" in reply:
                    self._pids.append(reply["pid"])
                else:
                    self.codes[reply["exited"]] = reply["code"]
                self._reply.notify_all()

    def start(self, args: list[str], log: Path, fault: str | None = None) -> Child:
        env = {"SELFSUP_FAULT": fault} if fault else {}
        Path(log).touch()  # the child opens it; a test may read it first
        with self._reply:
            self.proc.stdin.write(json.dumps({"args": args, "log": str(log), "env": env}).encode() + b"\n")
            self.proc.stdin.flush()
            assert self._reply.wait_for(lambda: self._pids, timeout=120), "the launcher did not start"
            self.children.append(Child(self, self._pids.pop(0)))
            return self.children[-1]

    def close(self) -> None:
        for child in self.children:  # any still running after a failed test
            child.kill()
        self.proc.kill()
        self.proc.wait()


_shared: list[Launcher] = []


def shared_launcher() -> Launcher:
    """One Launcher for the session (its import is the expensive part), closed at exit."""
    if not _shared:
        import atexit

        _shared.append(Launcher())
        atexit.register(_shared[0].close)
    return _shared[0]


@pytest.fixture(scope="module")
def launcher() -> Launcher:
    return shared_launcher()


def logged_step(out: Path) -> int:
    """The newest step in metrics.jsonl (0 before the first); a half-written last line is skipped."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError):
            continue
    return 0


def wait_until(condition, procs, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise AssertionError("timed out waiting for the subprocesses")
        time.sleep(0.005)


def run_cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out + out.err




def assert_same_run(reference: Path, resumed: Path, steps: int = STEPS) -> None:
    """Final checkpoint (method incl. teachers and queues, optimizer) and exported encoder identical."""
    name = f"step-{steps:08d}.pt"
    a, b = load_checkpoint(reference / "checkpoints" / name), load_checkpoint(resumed / "checkpoints" / name)
    assert a["step"] == b["step"] == steps
    assert_same(a["method"], b["method"], "method")
    assert_same(a["optimizer"], b["optimizer"], "optimizer")
    assert_same(load_file(str(reference / "encoder" / "encoder.safetensors")),
                load_file(str(resumed / "encoder" / "encoder.safetensors")), "encoder")


@pytest.fixture(scope="module")
def killed_runs(launcher, fmnist_npz, tmp_path_factory):
    """One run per method, each SIGKILLed once metrics.jsonl shows a random (seeded) step."""
    root = tmp_path_factory.mktemp("killed")
    runs = {}
    for method, every in (("simclr", 2), ("moco_v2", 1), ("byol", 1)):
        out = root / method
        # a seeded random step, with half the run left so that the kill lands before the end
        target = random.Random(f"kill:{method}").randint(2, STEPS // 2)
        runs[method] = (out, every, target, launcher.start(pretrain_args(fmnist_npz, out, method, every=every), root / f"{method}.log"))
    procs = [r[3] for r in runs.values()]

    killed = set()

    def kill_those_due() -> bool:
        for method, (out, _, target, proc) in runs.items():
            if method not in killed and logged_step(out) >= target:
                proc.send_signal(signal.SIGKILL)
                killed.add(method)
        return all(p.poll() is not None for p in procs)

    wait_until(kill_those_due, procs)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "moco_v2", "byol"])
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(method, killed_runs, fmnist_npz, tmp_path, capsys):
    out, every, target, proc = killed_runs[method]
    assert proc.returncode == -signal.SIGKILL, (out.parent / f"{method}.log").read_text()
    assert not (out / "encoder").exists()
    killed_at = logged_step(out)
    assert target <= killed_at < STEPS
    # every file under a final name is complete; the newest is at most `every` steps behind the kill
    saved = [load_checkpoint(p)["step"] for p in list_checkpoints(out / "checkpoints")]
    assert not saved or killed_at - every <= saved[-1] <= killed_at

    code, log = run_cli(pretrain_args(fmnist_npz, out, method, every=every) + ["--resume"], capsys)
    assert code == 0, log
    assert (f"at step {saved[-1]}" in log) if saved else ("resumed from" not in log)
    assert_same_run(reference_run(fmnist_npz, tmp_path / "reference", method, every=every), out)


# (point, n): kill the n-th time a save reaches the point; with keep=1 the 4th save (step 4) is hit
# each time ("pruning" is first reached by the 2nd save, which deletes step 1)
FAULTS = {"partial": 4, "before-rename": 4, "after-rename": 4, "pruning": 3}


@pytest.fixture(scope="module")
def faulted_runs(launcher, fmnist_npz, tmp_path_factory):
    root = tmp_path_factory.mktemp("faulted")
    runs = {point: (root / point, launcher.start(pretrain_args(fmnist_npz, root / point, keep=1), root / f"{point}.log",
                                                  fault=f"save:{point}:{n}")) for point, n in FAULTS.items()}
    procs = [proc for _, proc in runs.values()]
    wait_until(lambda: all(p.poll() is not None for p in procs), procs)
    return root, runs


@pytest.fixture(scope="module")
def fault_reference(fmnist_npz, tmp_path_factory):
    return reference_run(fmnist_npz, tmp_path_factory.mktemp("reference") / "run", keep=1)


@pytest.mark.slow
@pytest.mark.parametrize("point", list(FAULTS))
def test_sigkill_inside_a_save_keeps_a_complete_checkpoint(point, faulted_runs, fault_reference, fmnist_npz, capsys):
    root, runs = faulted_runs
    out, proc = runs[point]
    assert proc.returncode == -signal.SIGKILL, (root / f"{point}.log").read_text()
    ckpt = out / "checkpoints"
    complete = [p.name for p in list_checkpoints(ckpt)]
    leftovers = sorted(p.name for p in ckpt.iterdir() if p.name not in complete)
    expected = {"partial": (["step-00000003.pt"], 1), "before-rename": (["step-00000003.pt"], 1),
                "after-rename": (["step-00000003.pt", "step-00000004.pt"], 0), "pruning": (["step-00000004.pt"], 0)}
    names, n_tmp = expected[point]
    assert complete == names, (complete, leftovers)  # never zero complete checkpoints, keep=1 notwithstanding
    assert len(leftovers) == n_tmp and all(TMP_LEFTOVER.match(n) for n in leftovers), leftovers
    for name in complete:  # nothing partial under a final name
        assert load_checkpoint(ckpt / name)["step"] == int(name[5:13])

    code, log = run_cli(pretrain_args(fmnist_npz, out, keep=1) + ["--resume"], capsys)
    assert code == 0, log
    assert f"resumed from {ckpt / names[-1]}" in log
    assert [p.name for p in ckpt.iterdir()] == [f"step-{STEPS:08d}.pt"]  # the .tmp leftover is gone too
    assert_same_run(fault_reference, out)
