"""NaN/Inf in the loss or the gradients: the default stops the run and saves the weights of the last
good step (BatchNorm statistics, EMA teachers, queues and centers as that step left them);
``train.on_nonfinite=skip`` skips such steps, at most ``train.max_skips`` in a row.

Faults are injected by wrapping a method's forward: at the chosen (1-based) steps the loss becomes
NaN, or stays finite with an Inf gradient flowing back from it.

Every case runs with both ``train.nonfinite_check`` modes (train/guard.py): ``host`` reads the loss
and the gradient norm each step, ``device`` keeps the check on the device (the optimizer's
``found_inf``, ``torch.where`` on the changed tensors) and reads the codes at log and checkpoint
time; both must leave the same state, errors, warnings and metrics.
"""
import json

import pytest
import torch

from selfsup import config as C
from selfsup import registry
from selfsup.errors import ConfigError, NonFiniteLossError
from selfsup.train.loop import train

SMALL = {  # tiny heads; the queue/center/EMA of each method stays in play
    "simclr": dict(hidden_dim=32, out_dim=16),
    "byol": dict(hidden_dim=32, out_dim=16, pred_hidden_dim=32),
    "moco_v2": dict(hidden_dim=32, out_dim=16, queue_size=64),
    "swav": dict(hidden_dim=32, out_dim=16, n_prototypes=16, queue_length=32, queue_start=0.0),
    "dino": dict(hidden_dim=32, bottleneck_dim=16, out_dim=32),
}


@pytest.fixture(params=["host", "device"])
def check(request):
    return request.param


def cfg(data, out, method="simclr", steps=8, check="host", **extra):
    sets = [f"method.{k}={v}" for k, v in SMALL[method].items()] + [f"{k}={v}" for k, v in extra.items()]
    return C.load(overrides=[f"train.nonfinite_check={check}", f"data.name={data}", f"out={out}", f"method.name={method}", f"train.steps={steps}",
                             "train.batch_size=16", "train.checkpoint_every=100", "train.progress=false",
                             "train.precision=fp32", "backbone.width=8", "train.threads=1", *sets])


def inject(monkeypatch, method: str, bad_steps, total: int, kind: str = "loss"):
    """Make `method`'s loss NaN (kind="loss") or its gradients Inf (kind="grad") at 1-based `bad_steps`."""
    cls = registry.get("method", method)
    forward = cls.forward

    def faulty(self, batch):
        out = forward(self, batch)
        if self.training and round(batch.progress * total) + 1 in bad_steps:
            if kind == "loss":
                out["loss"] = out["loss"] * float("nan")
            else:
                loss = out["loss"] * 1.0
                loss.register_hook(lambda grad: torch.full_like(grad, float("inf")))
                out["loss"] = loss
        return out

    monkeypatch.setattr(cls, "forward", faulty)


def checkpoint(out, step: int) -> dict:
    return torch.load(out / "checkpoints" / f"step-{step:08d}.pt", weights_only=True)


def assert_same_state(a: dict, b: dict, keys=("method",)):
    for part in keys:
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name}"


def assert_same_optimizer_state(a: dict, b: dict):
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for index in sa:
        for name in sa[index]:
            assert torch.equal(sa[index][name], sb[index][name]), f"optimizer.state[{index}].{name}"


@pytest.mark.parametrize("method, kind", [("simclr", "loss"), ("simclr", "grad"), ("byol", "loss"),
                                          ("moco_v2", "grad"), ("swav", "loss"), ("dino", "grad")])
def test_stop_saves_the_last_good_state(fmnist_npz, tmp_path, monkeypatch, method, kind, check):
    train(cfg(fmnist_npz, tmp_path / "clean", method, check=check), stop_after=2)
    inject(monkeypatch, method, {3}, total=8, kind=kind)
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg(fmnist_npz, tmp_path / "bad", method, check=check))
    message = str(info.value)
    assert ("the loss became nan" if kind == "loss" else "the gradients became non-finite") in message
    assert "at step 3;" in message and "step-00000002.pt" in message and "Fix:" in message
    saved, clean = checkpoint(tmp_path / "bad", 2), checkpoint(tmp_path / "clean", 2)
    # the bad step's forward moved BatchNorm statistics (and SwAV's queue, DINO's center): all undone
    assert_same_state(saved, clean)
    assert_same_optimizer_state(saved, clean)
    assert saved["step"] == 2


@pytest.mark.slow
def test_skip_mode_skips_bad_steps_and_finishes(fmnist_npz, tmp_path, monkeypatch, capsys, check):
    out = tmp_path / "skip"
    inject(monkeypatch, "byol", {3, 4}, total=8)
    result = train(cfg(fmnist_npz, out, "byol", check=check, **{"train.on_nonfinite": "skip", "train.checkpoint_every": 1,
                                                     "train.keep_checkpoints": 10, "train.log_every": 1}))
    assert result.steps == 8 and (out / "encoder" / "encoder.safetensors").is_file()
    # steps 3 and 4 changed nothing: weights, BatchNorm statistics, the EMA teacher, Adam's moments
    for step in (3, 4):
        assert_same_state(checkpoint(out, step), checkpoint(out, 2))
        assert_same_optimizer_state(checkpoint(out, step), checkpoint(out, 2))
    after = checkpoint(out, 5)["method"]
    assert any(not torch.equal(after[k], checkpoint(out, 4)["method"][k]) for k in after)  # step 5 trained
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("warning: skipped step")]
    assert [line.split(":")[1].split()[-1] for line in skipped] == ["3", "4"]
    assert "1 of at most train.max_skips=10 in a row" in skipped[0]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"]: r["skipped"] for r in records if "skipped" in r} == {3: "the loss became nan", 4: "the loss became nan"}
    assert all("loss" not in r for r in records if "skipped" in r)


def test_skip_mode_stops_after_max_skips(fmnist_npz, tmp_path, monkeypatch, capsys, check):
    train(cfg(fmnist_npz, tmp_path / "clean", check=check), stop_after=2)
    inject(monkeypatch, "simclr", set(range(3, 9)), total=8, kind="grad")
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg(fmnist_npz, tmp_path / "bad", check=check, **{"train.on_nonfinite": "skip", "train.max_skips": 2}))
    message = str(info.value)
    assert "non-finite at step 5 after 2 skipped step(s) in a row (train.max_skips=2)" in message
    assert "last good step (2)" in message and "step-00000004.pt" in message
    assert len([line for line in capsys.readouterr().err.splitlines() if "warning: skipped step" in line]) == 2
    saved = checkpoint(tmp_path / "bad", 4)
    assert_same_state(saved, checkpoint(tmp_path / "clean", 2))
    assert_same_optimizer_state(saved, checkpoint(tmp_path / "clean", 2))


def test_a_good_step_resets_the_count(fmnist_npz, tmp_path, monkeypatch, check):
    inject(monkeypatch, "simclr", {2, 3, 5, 6}, total=8)
    result = train(cfg(fmnist_npz, tmp_path / "r", check=check, **{"train.on_nonfinite": "skip", "train.max_skips": 2}))
    assert result.steps == 8


@pytest.mark.parametrize("override, match", [("train.on_nonfinite=ignore", "choose one of: stop, skip"),
                                             ("train.max_skips=0", r"train\.max_skips=0 is out of range"),
                                             ("train.nonfinite_check=never", "choose one of: auto, host, device")])
def test_settings_are_checked(override, match):
    with pytest.raises(ConfigError, match=match):
        C.load(overrides=[override])


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_every_optimizer_skips_the_bad_step(fmnist_npz, tmp_path, monkeypatch, optimizer, check):
    """SGD (fused under the device check, momentum buffers started at zero) and LARS (which honours
    found_inf itself) leave the weights and the momentum of the last good step."""
    extra = {"optim.name": optimizer, "optim.lr": 0.05}
    train(cfg(fmnist_npz, tmp_path / "clean", "byol", check=check, **extra), stop_after=2)
    inject(monkeypatch, "byol", {3}, total=8, kind="grad")
    with pytest.raises(NonFiniteLossError, match="the gradients became non-finite at step 3;"):
        train(cfg(fmnist_npz, tmp_path / "bad", "byol", check=check, **extra))
    saved, clean = checkpoint(tmp_path / "bad", 2), checkpoint(tmp_path / "clean", 2)
    assert_same_state(saved, clean)
    assert_same_optimizer_state(saved, clean)


def test_a_skipped_first_step_leaves_the_optimizer_as_new(fmnist_npz, tmp_path, monkeypatch, check):
    """Step 1 skipped: the optimizer state saved after it is a new optimizer's (no state, or zero
    moments, momentum buffers and step counts: the first real step starts them as a new one would),
    and the run goes on to the end with finite moments."""
    inject(monkeypatch, "simclr", {1}, total=8)
    for optimizer in ("adamw", "sgd", "lars"):
        result = train(cfg(fmnist_npz, tmp_path / optimizer, check=check, **{
            "train.on_nonfinite": "skip", "optim.name": optimizer, "train.checkpoint_every": 1,
            "train.keep_checkpoints": 10}))
        assert result.steps == 8
        after_skip = checkpoint(tmp_path / optimizer, 1)["optimizer"]["state"]
        for moments in after_skip.values():
            assert all(not v.any() for v in moments.values() if torch.is_tensor(v)), (optimizer, moments.keys())
        for moments in checkpoint(tmp_path / optimizer, 8)["optimizer"]["state"].values():
            assert all(torch.isfinite(v).all() for v in moments.values() if torch.is_tensor(v))
