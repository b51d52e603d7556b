"""End to end on real images: pretrain -> checkpoint -> resume -> export -> evaluate -> report -> embed."""
import json

import numpy as np
import pytest
import torch

import selfsup
from selfsup import config as C
from selfsup.errors import ConfigError, NonFiniteLossError
from selfsup.train.loop import train
from tests.conftest import assert_resume_bit_identical


def tiny(data, out, steps=6, **extra):
    sets = [f"{k}={v}" for k, v in extra.items()]
    return C.load(overrides=[f"data.name={data}", f"out={out}", f"train.steps={steps}", "train.batch_size=64",
                             "train.checkpoint_every=3", "train.progress=false", "backbone.width=8",
                             "method.hidden_dim=64", "method.out_dim=32", "optim.warmup_steps=2", *sets])


def test_resume_is_bit_identical(fmnist_npz, tmp_path):
    assert_resume_bit_identical(lambda out: tiny(fmnist_npz, out), tmp_path)
    # the trainer flushes denormals only while it trains; the process gets IEEE behaviour back
    assert torch.tensor([1e-40]).item() != 0.0


def _flushed(threads: int) -> tuple[int, int]:
    """(zeros, elements) of 1e-30 * 1e-10 (a subnormal) over 2**20 elements on `threads` torch threads."""
    torch.set_num_threads(threads)
    y = torch.full((1 << 20,), 1e-30) * 1e-10
    return int((y == 0).sum()), y.numel()


def test_denormals_are_flushed_on_every_pool_thread_while_training_and_only_then(fmnist_npz, tmp_path):
    """The flag lives in each thread's control register and torch sets the calling thread's only:
    pool threads started before the block never flushed, those started inside kept flushing after
    it (then the linear probe's loss bits differed with one thread and two after a 2-thread run)."""
    from selfsup.train.hardware import flush_denormal

    assert _flushed(2) == (0, 1 << 20)  # the pool's threads exist before the block
    with flush_denormal() as supported:
        if not supported:
            pytest.skip("this CPU cannot flush denormals")
        assert _flushed(2) == (1 << 20, 1 << 20)  # every element: every thread flushes
    assert _flushed(2)[0] == 0
    train(tiny(fmnist_npz, tmp_path / "r", steps=2, **{"train.threads": 3}))  # a thread the pool did not have
    assert _flushed(3)[0] == 0 and _flushed(1)[0] == 0


def test_existing_run_needs_resume_and_same_recipe(fmnist_npz, tmp_path):
    train(tiny(fmnist_npz, tmp_path / "r", steps=3))
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny(fmnist_npz, tmp_path / "r", steps=3))
    with pytest.raises(ConfigError, match="optim.lr"):
        train(tiny(fmnist_npz, tmp_path / "r", steps=6, **{"optim.lr": 0.5}), resume=True)


def test_nonfinite_loss_stops_and_keeps_last_good_weights(fmnist_npz, tmp_path):
    cfg = tiny(fmnist_npz, tmp_path / "nan", steps=30, **{"optim.lr": 1e30, "train.precision": "fp32"})
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg)
    assert "last good step" in str(info.value) and "Fix:" in str(info.value)
    saved = torch.load(sorted((tmp_path / "nan" / "checkpoints").glob("step-*.pt"))[-1], weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["method"].values() if v.is_floating_point())


def test_batch_larger_than_dataset(fmnist_npz, tmp_path):
    with pytest.raises(ConfigError, match="larger than the dataset"):
        train(tiny(fmnist_npz, tmp_path / "b", **{"train.batch_size": 5000}))


@pytest.mark.slow
def test_pretrain_evaluate_report_embed(fmnist_split_dir, tmp_path):
    out = tmp_path / "run"
    selfsup.pretrain(data=str(fmnist_split_dir / "train.npz"), steps=4, out=out,
                           overrides=["data.test_split=" + str(fmnist_split_dir / "test.npz"), "train.batch_size=64",
                                      "train.progress=false", "backbone.width=8", "train.monitor_every=2",
                                      "train.monitor_bank=300", "train.monitor_queries=100"])
    results = json.loads((out / "results.json").read_text())
    assert {"pretrain", "knn", "linear", "rankme"} <= results.keys()
    assert 0.1 < results["knn"]["accuracy"] <= 1.0
    assert (out / "report.md").is_file()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "knn_acc" in r] == [2, 4]

    encoder = selfsup.load_encoder(out)
    x = torch.from_numpy(np.load(fmnist_split_dir / "test.npz")["x"][:8]).unsqueeze(1)
    with torch.no_grad():
        feats = encoder(x)
    assert feats.shape == (8, encoder.dim)

    emb = selfsup.embed(out, data=str(fmnist_split_dir / "test.npz"), out=tmp_path / "emb.npy")
    arr = np.load(emb)
    assert arr.shape == (200, encoder.dim) and arr.dtype == np.float32
    assert len((tmp_path / "emb.ids.txt").read_text().split()) == 200
    np.testing.assert_allclose(arr[:8], feats.numpy(), rtol=1e-4, atol=1e-4)
    import pyarrow.parquet as pq
    table = pq.read_table(selfsup.embed(out, data=str(fmnist_split_dir / "test.npz"), out=tmp_path / "emb.parquet"))
    assert table.num_rows == 200 and set(table.column_names) == {"id", "label", "embedding"}
    np.testing.assert_allclose(np.asarray(table.column("embedding")[0].as_py()), arr[0], rtol=1e-6)
