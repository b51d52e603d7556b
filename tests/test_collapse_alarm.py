"""The collapse alarm: it fires once on a collapsing run (SimSiam without stop-gradient) within a few
hundred steps, stays silent on a healthy one (SimCLR, same budget), and ignores a single odd batch."""
import json

import pytest
import torch

from selfsup import config as C
from selfsup.errors import ConfigError
from selfsup.train.loop import train
from selfsup.train.monitor import CollapseAlarm, collapse_stats

STEPS = 150


def run(data, out, method, **extra):
    # lr 0.05 collapses SimSiam without stop-gradient in ~30 steps (projector outputs of effective
    # rank 1.3-2.6 of 64); at the default 2e-3 it takes ~100 steps and hovers near the threshold.
    sets = [f"{k}={v}" for k, v in extra.items()]
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"method.name={method}", f"train.steps={STEPS}",
                             "train.batch_size=32", "train.checkpoint_every=1000", "train.progress=false",
                             "backbone.width=8", "method.hidden_dim=64", "method.out_dim=64", "optim.lr=0.05",
                             "train.collapse_check_every=10", "train.threads=1", *sets])


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "collapse" in line]


@pytest.mark.slow
def test_fires_once_on_simsiam_without_stop_gradient(fmnist_npz, tmp_path, capsys):
    out = tmp_path / "collapse"
    train(run(fmnist_npz, out, "simsiam", **{"method.stop_gradient": "false"}))
    lines = warnings(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("warning: the embeddings collapse at step "), lines
    assert "effective rank" in lines[0] and "stop-gradient" in lines[0]
    fired = [r for r in records(out) if "collapse_warning" in r]
    assert len(fired) == 1 and fired[0]["collapse_warning"] == lines[0]
    assert fired[0]["step"] <= STEPS
    checks = [r["step"] for r in records(out) if "collapse_rank" in r]
    assert checks[-1] == fired[0]["step"]  # it stops checking once it has warned


@pytest.mark.slow
def test_silent_on_healthy_simclr(fmnist_npz, tmp_path, capsys):
    out = tmp_path / "healthy"
    train(run(fmnist_npz, out, "simclr"))
    assert warnings(capsys.readouterr().err) == []
    checked = [r for r in records(out) if "collapse_rank" in r]
    assert [r["step"] for r in checked] == list(range(10, STEPS + 1, 10))
    assert not [r for r in checked if "collapse_warning" in r]
    assert min(r["collapse_rank"] for r in checked) > 0.05 * 64


def test_off_means_no_checks(fmnist_npz, tmp_path):
    out = tmp_path / "off"
    train(run(fmnist_npz, out, "simclr", **{"train.steps": 4, "train.collapse_check_every": 0,
                                             "train.log_every": 1}))
    assert not [r for r in records(out) if "collapse_rank" in r]


def test_statistics_on_known_inputs():
    torch.manual_seed(0)
    spread = torch.randn(256, 64)  # isotropic: std x sqrt(dim) ~ 1, rank a large share of 64
    std, rank, bound = collapse_stats(spread)
    assert bound == 64 and 0.9 < std < 1.1 and rank > 0.7 * 64
    point = torch.ones(256, 64) + 1e-4 * torch.randn(256, 64)  # all rows the same vector
    std, rank, _ = collapse_stats(point)
    assert std < 0.01 and rank < 1.1
    line = torch.randn(256, 1) * torch.randn(1, 64)  # +-v: spread, but one direction
    std, rank, _ = collapse_stats(line)
    assert std > 0.5 and rank < 1.01


def test_patience_ignores_one_odd_batch_and_fires_once():
    torch.manual_seed(0)
    printed = []
    alarm = CollapseAlarm(every=1, min_std=0.05, min_rank=0.05, patience=3, print_fn=printed.append)
    good = {"embeddings": torch.randn(64, 32)}
    bad = {"embeddings": torch.randn(64, 1) * torch.randn(1, 32)}
    for step, out in enumerate([good, bad, good, bad, bad, good], start=1):
        assert "collapse_warning" not in alarm(step, out)
    assert printed == []
    assert "collapse_warning" not in alarm(7, bad) and "collapse_warning" not in alarm(8, bad)
    assert "collapse_warning" in alarm(9, bad) and len(printed) == 1
    assert alarm(10, bad) is None and len(printed) == 1  # once per run


def test_wide_embeddings_are_judged_against_at_most_64_dimensions():
    """A healthy wide projector early in training spans a few dozen dimensions, not 5% of 256
    (BYOL on fmnist-cpu: 7.4 of 256 at step 75); collapsed ones stay near 1 whatever the width."""
    torch.manual_seed(0)
    printed = []
    alarm = CollapseAlarm(every=1, min_std=0.05, min_rank=0.05, patience=1, print_fn=printed.append)
    few = {"embeddings": torch.randn(256, 8) @ torch.randn(8, 256)}  # 8 directions in 256-d
    record = alarm(1, few)
    assert 3.2 < record["collapse_rank"] < 12.8 and printed == []  # 5% of 256 would have fired
    assert "collapse_warning" in alarm(2, {"embeddings": torch.randn(256, 1) @ torch.randn(1, 512)})
    assert "0.05 x 64 = 3.2" in printed[0]


def test_checks_only_when_due_and_skips_methods_without_outputs():
    alarm = CollapseAlarm(every=5, min_std=0.05, min_rank=0.05, patience=1, print_fn=pytest.fail)
    assert alarm(4, {"embeddings": torch.randn(16, 8)}) is None
    assert set(alarm(5, {"embeddings": torch.randn(16, 8)})) == {"collapse_std", "collapse_rank"}
    assert alarm(10, {"loss": torch.tensor(1.0)}) is None  # MAE returns neither features nor embeddings
    assert alarm(15, {"features": torch.randn(16, 8)}) is not None  # DINO returns features only


@pytest.mark.parametrize("key, value", [("train.collapse_check_every", -1), ("train.collapse_min_rank", 2),
                                        ("train.collapse_patience", 0), ("train.collapse_min_std", -0.1)])
def test_out_of_range_settings_are_refused(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        C.load(overrides=[f"{key}={value}"])
