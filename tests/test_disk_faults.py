"""A full disk or a read-only run directory while saving: the run stops with a DiskError naming the
file and the cause (and, through the CLI, one line and exit code 2), logs no save that did not
happen, keeps the previous checkpoint (retention pruned nothing) and leaves no temporary file.

The real faults come from tmpfs mounts: one too small for the next checkpoint (ENOSPC) and one
remounted read-only (EROFS). Tests run as root, where chmod does not stop a write, so permission
errors (EACCES) and, where mounting is not permitted, the other causes too are injected by making
``torch.save`` or ``os.replace`` raise the OSError the kernel would.
"""
import errno
import json
import os
import shutil
import subprocess

import pytest
import torch

from selfsup import config as C
from selfsup.cli import main
from selfsup.errors import DiskError
from selfsup.checkpoint import load_checkpoint
from selfsup.train.loop import train


def cfg(data, out, steps=6, **extra):
    sets = [f"{k}={v}" for k, v in extra.items()]
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"train.steps={steps}", "train.batch_size=16",
                             "train.checkpoint_every=3", "train.keep_checkpoints=1", "train.progress=false",
                             "backbone.width=8", "method.hidden_dim=32", "method.out_dim=16", "train.threads=1", *sets])


@pytest.fixture
def tmpfs():
    """mount(path, size) puts a fresh tmpfs at `path`; remount(path, options) changes it; all are
    unmounted afterwards. Skips where this process may not mount (not root, no mount, a container
    without CAP_SYS_ADMIN)."""
    mounted = []

    def mount(path, size="8m"):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8); the fault-injection tests cover this case")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the fault-injection tests cover this case")
        mounted.append(path)

    def remount(path, options):
        subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)

    yield mount, remount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def shrink_to_usage(remount, path, slack=16 * 1024):
    """Resize the tmpfs at `path` to what it holds now plus `slack` bytes: too small for another checkpoint."""
    stat = os.statvfs(path)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    remount(path, f"size={used + slack}")


def assert_previous_kept(ckpt_dir, step=3):
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [f"step-{step:08d}.pt"]  # no .tmp, nothing pruned
    assert load_checkpoint(ckpt_dir / f"step-{step:08d}.pt")["step"] == step


def assert_no_save_claimed(run_dir, err: str):
    assert not [line for line in err.splitlines() if "saved" in line.lower()], err
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        assert not any("checkpoint" in key or "saved" in key for key in json.loads(line)), line


def test_full_disk_keeps_the_previous_checkpoint(fmnist_npz, tmp_path, tmpfs, capsys):
    mount, remount = tmpfs
    run_dir = tmp_path / "run"
    mount(run_dir / "checkpoints")
    train(cfg(fmnist_npz, run_dir), stop_after=3)
    shrink_to_usage(remount, run_dir / "checkpoints")
    capsys.readouterr()
    with pytest.raises(DiskError) as info:
        train(cfg(fmnist_npz, run_dir), resume=True)
    message = str(info.value)
    assert f"could not write checkpoint '{run_dir / 'checkpoints' / 'step-00000006.pt'}': the disk is full" in message
    assert f"The previous checkpoint '{run_dir / 'checkpoints' / 'step-00000003.pt'}' is kept." in message
    assert "Fix: free space on that disk, then rerun with --resume" in message
    assert_previous_kept(run_dir / "checkpoints")
    assert_no_save_claimed(run_dir, capsys.readouterr().err)
    assert not (run_dir / "encoder").exists()
    # the fix works: with room again, --resume finishes from step 3
    remount(run_dir / "checkpoints", "size=8m")
    assert train(cfg(fmnist_npz, run_dir), resume=True).steps == 6


def test_read_only_checkpoints_keep_the_previous_one(fmnist_npz, tmp_path, tmpfs, capsys):
    mount, remount = tmpfs
    run_dir = tmp_path / "run"
    mount(run_dir / "checkpoints")
    train(cfg(fmnist_npz, run_dir), stop_after=3)
    remount(run_dir / "checkpoints", "ro")
    capsys.readouterr()
    with pytest.raises(DiskError, match=r"step-00000006\.pt': the file system is read-only .*Fix: remount it read-write"):
        train(cfg(fmnist_npz, run_dir), resume=True)
    assert_previous_kept(run_dir / "checkpoints")
    assert_no_save_claimed(run_dir, capsys.readouterr().err)


def test_read_only_run_directory_fails_before_training(fmnist_npz, tmp_path, tmpfs):
    mount, remount = tmpfs
    run_dir = tmp_path / "run"
    mount(run_dir)
    remount(run_dir, "ro")
    with pytest.raises(DiskError, match=r"could not write the run configuration '.*config\.yaml': the file system is read-only"):
        train(cfg(fmnist_npz, run_dir))
    assert list(run_dir.iterdir()) == []


def test_cli_full_disk_is_one_line_and_exit_2(fmnist_npz, tmp_path, tmpfs, capsys):
    mount, remount = tmpfs
    run_dir = tmp_path / "run"
    mount(run_dir / "checkpoints")
    flags = ["pretrain", "--data", str(fmnist_npz), "--batch-size", "16", "--out", str(run_dir), "--no-progress",
             "--no-eval", "--set", "backbone.width=8", "--set", "method.hidden_dim=32", "--set", "method.out_dim=16",
             "--set", "train.checkpoint_every=3", "--set", "train.keep_checkpoints=1", "--set", "train.threads=1"]
    with pytest.raises(SystemExit) as info:
        main([*flags, "--steps", "3"])
    assert info.value.code == 0
    shrink_to_usage(remount, run_dir / "checkpoints")
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([*flags, "--steps", "6", "--resume"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert info.value.code == 2 and "Traceback" not in err
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err  # after "resumed from ...", one line
    assert errors[0].startswith("error: could not write checkpoint ") and "disk is full" in errors[0]
    assert "Fix:" in errors[0] and "--resume" in errors[0]
    assert_previous_kept(run_dir / "checkpoints")


CAUSES = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
          errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded", errno.EIO: "the write failed"}


@pytest.mark.parametrize("code", list(CAUSES), ids=[errno.errorcode[c] for c in CAUSES])
def test_injected_write_error(fmnist_npz, tmp_path, monkeypatch, capsys, code):
    """torch.save writes part of the file, then the OSError comes (what a full disk does mid-write)."""
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if obj.get("step") == 6:
            f.write(b"PK\x03\x04 partial")
            raise OSError(code, os.strerror(code))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    run_dir = tmp_path / "run"
    with pytest.raises(DiskError) as info:
        train(cfg(fmnist_npz, run_dir))
    assert f"could not write checkpoint '{run_dir / 'checkpoints' / 'step-00000006.pt'}': {CAUSES[code]}" in str(info.value)
    assert "step-00000003.pt' is kept" in str(info.value) and "Fix:" in str(info.value)
    assert_previous_kept(run_dir / "checkpoints")
    assert_no_save_claimed(run_dir, capsys.readouterr().err)


def test_injected_permission_error_at_rename(fmnist_npz, tmp_path, monkeypatch):
    """The temporary file is complete but cannot take its final name: it is removed, nothing is pruned."""
    real_replace = os.replace

    def failing_replace(src, dst, *args, **kwargs):
        if str(dst).endswith("step-00000006.pt"):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    run_dir = tmp_path / "run"
    with pytest.raises(DiskError, match=rf"permission denied\. .*Fix: make '{run_dir / 'checkpoints'}' writable"):
        train(cfg(fmnist_npz, run_dir))
    assert_previous_kept(run_dir / "checkpoints")
