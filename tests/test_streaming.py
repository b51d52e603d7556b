"""Streaming from shards (data/shards.py): `selfsup shard` writes WebDataset tar shards and a manifest;
pretraining with data.name=DIR draws its batches from them in an order fixed by the seed, skips (and
lists) corrupt or truncated shards, and resumes bit-identically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("webdataset")

from selfsup import config as C  # noqa: E402
from selfsup.cli import main  # noqa: E402
from selfsup.data import load_dataset  # noqa: E402
from selfsup.data.shards import ShardSet, epoch_layout, load_shards, read_manifest  # noqa: E402
from selfsup.errors import DataError  # noqa: E402
from tests.conftest import assert_resume_bit_identical  # noqa: E402


@pytest.fixture(scope="module")
def shards(fmnist_npz, tmp_path_factory) -> Path:
    """The 600 Fashion-MNIST images of fmnist_npz in shards of 128 (4 full shards and one of 88)."""
    out = tmp_path_factory.mktemp("shards") / "fm"
    import selfsup

    selfsup.shard(str(fmnist_npz), out, samples_per_shard=128)
    return out


def copy_of(shards: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(shards, tmp_path / "copy"))


def test_manifest_and_round_trip(shards, fmnist_npz):
    directory, m = read_manifest(shards)
    assert m["modality"] == "image" and m["count"] == 600 and m["dtype"] == "uint8" and m["sample_shape"] == [1, 28, 28]
    assert [e["count"] for e in m["shards"]] == [128, 128, 128, 128, 88]
    assert m["source"]["data"] == str(fmnist_npz) and m["labels"] is True
    source = load_dataset(str(fmnist_npz))
    assert m["mean"] == pytest.approx(source.normalization()[0]) and m["input_spec"] == source.input_spec()
    back = load_shards(shards)
    order = torch.tensor([int(i.rsplit("/", 1)[-1]) if "/" in i else source.ids.index(i) for i in back.ids])
    assert sorted(order.tolist()) == list(range(600))  # every sample once, shuffled
    assert torch.equal(back.images, source.images[order]) and torch.equal(back.labels, source.labels[order])
    # evaluation through load_dataset: the source's own split when it can be read
    assert torch.equal(load_dataset(str(shards), split="train").images, source.images)


def test_npy_and_csv_tables_shard(tmp_path):
    import selfsup

    series = np.random.default_rng(0).standard_normal((50, 2, 16)).astype(np.float32)
    np.save(tmp_path / "series.npy", series)
    m = selfsup.shard(str(tmp_path / "series.npy"), tmp_path / "s", samples_per_shard=20, seed=-1)
    assert m["modality"] == "series" and m["sample_shape"] == [2, 16] and [e["count"] for e in m["shards"]] == [20, 20, 10]
    assert torch.equal(load_shards(tmp_path / "s").values, torch.from_numpy(series))  # seed -1 keeps the order

    rows = ["a,b,color,y"] + [f"{i * 0.5},{i % 7},{['red', 'blue'][i % 2]},{i % 3}" for i in range(40)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    m = selfsup.shard(str(tmp_path / "t.csv"), tmp_path / "t", samples_per_shard=16, label="y")
    table = load_dataset(str(tmp_path / "t.csv"), label="y")
    back = load_shards(tmp_path / "t")
    assert m["modality"] == "table" and m["schema"] is not None and back.schema.to_dict() == table.schema.to_dict()
    keys = [table.ids.index(i) for i in back.ids]
    assert torch.equal(back.values, table.values[keys]) and torch.equal(back.labels, table.labels[keys])


def expected_batches(shards: Path, batch: int, seed: int, steps: int) -> list[torch.Tensor]:
    """The keys of each batch, from the definition: epoch e visits the shards in epoch_layout order,
    each shard's samples in a permutation of (seed, e, shard); an epoch's last partial batch dropped."""
    from selfsup.data.shards import _seed, read_shard

    directory, m = read_manifest(shards)
    out, epoch = [], 0
    while len(out) < steps:
        keys = []
        for shard in epoch_layout(len(m["shards"]), seed, epoch):
            k = read_shard(directory, m["shards"][shard], m)[2]
            keys.append(k[torch.randperm(len(k), generator=torch.Generator().manual_seed(_seed(seed, epoch, shard)))])
        keys = torch.cat(keys)
        out += [keys[i:i + batch] for i in range(0, len(keys) - batch + 1, batch)]
        epoch += 1
    return out[:steps]


def test_stream_batches_are_the_defined_ones_with_any_worker_count(shards):
    want = expected_batches(shards, 100, 3, 14)  # 6 batches per epoch of 600: more than two epochs
    for workers in (0, 2):
        stream = ShardSet(shards, workers=workers).stream(100, 3)
        got = [next(stream)[2] for _ in range(14)]
        stream.close()
        assert all(torch.equal(a, b) for a, b in zip(got, want)), workers
    assert sorted(torch.cat(want[:6]).tolist()) == list(range(600))  # an epoch: every sample once


def test_stream_resumes_at_its_position(shards):
    stream = ShardSet(shards, workers=0).stream(96, 1)
    for _ in range(4):
        samples, labels, keys = next(stream)
    position = stream.position()
    rest = [next(stream) for _ in range(5)]  # crosses the epoch's end (6 batches of 96 in 600)
    again = ShardSet(shards, workers=2).stream(96, 1, position)
    for a, b in zip(rest, [next(again) for _ in range(5)]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def tiny(data, out, **extra):
    sets = {"data.name": str(data), "out": str(out), "train.steps": 6, "train.batch_size": 64, "train.checkpoint_every": 3,
            "train.progress": False, "train.monitor_every": 0, "train.threads": 1, "optim.warmup_steps": 2,
            "backbone.width": 8, "method.hidden_dim": 32, "method.out_dim": 16, **extra}
    return C.load(overrides=[f"{k}={v}" for k, v in sets.items()])


def test_pretrain_from_shards_resumes_bit_identically(shards, tmp_path):
    assert_resume_bit_identical(lambda out: tiny(shards, out), tmp_path)
    saved = torch.load(tmp_path / "split" / "checkpoints" / "step-00000003.pt", weights_only=True)
    assert saved["stream"] == {"epoch": 0, "shard": 1, "offset": 64}  # 192 samples: 1 shard of 128 + 64


def test_pretrain_batches_are_the_streams(shards, tmp_path, monkeypatch):
    from selfsup.methods.base import Method

    seen = []
    forward = Method.__call__

    def spy(self, batch):
        seen.append(batch.index.clone())
        return forward(self, batch)

    monkeypatch.setattr(Method, "__call__", spy)
    from selfsup.train.loop import train

    train(tiny(shards, tmp_path / "run", **{"train.steps": 4, "train.seed": 5}))
    want = expected_batches(shards, 64, 5, 4)
    assert len(seen) == 4 and all(torch.equal(a, b) for a, b in zip(seen, want))


def test_corrupt_and_truncated_shards_are_skipped_and_listed(shards, tmp_path, capsys):
    import selfsup

    data = copy_of(shards, tmp_path)
    truncated = data / "shard-000001.tar"
    truncated.write_bytes(truncated.read_bytes()[:5000])
    corrupt = data / "shard-000003.tar"
    raw = bytearray(corrupt.read_bytes())
    raw[20_000:20_100] = b"\xff" * 100  # same size: found when a worker reads it
    corrupt.write_bytes(bytes(raw))
    run = selfsup.pretrain(tiny(data, tmp_path / "run", **{"train.steps": 8}), evaluate=False, report=False)
    skipped = json.loads((tmp_path / "run" / "results.json").read_text())["pretrain"]["skipped_shards"]
    assert run.steps == 8 and skipped["count"] == 2
    assert [s["name"] for s in skipped["shards"]] == ["shard-000001.tar", "shard-000003.tar"]
    assert "truncated" in skipped["shards"][0]["reason"] and "SHA-256" in skipped["shards"][1]["reason"]
    err = capsys.readouterr().err
    assert "skipped shard" in err and "shard-000001.tar" in err and "shard-000003.tar" in err
    assert "shard-000001.tar" in (tmp_path / "run" / "skipped.txt").read_text()


def test_no_readable_shard_is_one_line_error(shards, tmp_path, capsys):
    data = copy_of(shards, tmp_path)
    for tar in data.glob("*.tar"):
        tar.write_bytes(b"")
    with pytest.raises(DataError, match="no readable shard"):
        ShardSet(data)
    code = run_cli(["pretrain", "--data", str(data), "--steps", "2", "--out", str(tmp_path / "run"), "--no-eval"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: shard directory") and "Fix:" in err[-1]
    (data / "manifest.json").write_text("{not json")
    assert run_cli(["pretrain", "--data", str(data), "--steps", "2", "--out", str(tmp_path / "r2"), "--no-eval"]) == 2
    assert "manifest" in capsys.readouterr().err


def test_streaming_refuses_a_method_that_reads_the_whole_set(shards, tmp_path):
    from selfsup.errors import ConfigError
    from selfsup.train.loop import train

    with pytest.raises(ConfigError, match="whole training set"):
        train(tiny(shards, tmp_path / "run", **{"method.name": "gsimclr"}))


def run_cli(argv) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code


def test_cli_shard_exit_codes(fmnist_npz, tmp_path, capsys):
    out = tmp_path / "sh"
    assert run_cli(["shard", str(fmnist_npz), "--out", str(out), "--samples-per-shard", "250"]) == 0
    assert "wrote 3 shards (600 samples)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-000000.tar", "shard-000001.tar",
                                                     "shard-000002.tar"]
    for argv, words in ((["shard", str(fmnist_npz), "--out", str(out)], "already holds shards"),
                        (["shard", str(fmnist_npz), "--out", str(tmp_path / "x"), "--samples-per-shard", "0"],
                         "not a positive"),
                        (["shard", "no-such-data", "--out", str(tmp_path / "y")], "no dataset or path")):
        assert run_cli(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and words in err[0] and "Fix:" in err[0]


def test_pretrain_a_table_from_shards(tmp_path):
    import selfsup

    rows = ["a,b,color,y"] + [f"{i * 0.5},{i % 7},{['red', 'blue', 'green'][i % 3]},{i % 2}" for i in range(120)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    selfsup.shard(str(tmp_path / "t.csv"), tmp_path / "t", samples_per_shard=50, label="y")
    run = selfsup.pretrain(tiny(tmp_path / "t", tmp_path / "run", **{"train.steps": 3, "train.batch_size": 32,
                                                                     "backbone.width": 32}),
                           evaluate=False, report=False)
    assert run.steps == 3 and run.encoder.modality == "table" and run.encoder.schema is not None


def test_each_rank_streams_its_own_shards_and_together_they_cover_an_epoch(shards):
    n = len(read_manifest(shards)[1]["shards"])
    layout = epoch_layout(n, 7, 0)
    manifest = read_manifest(shards)[1]
    seen = []
    for rank in range(2):
        stream = ShardSet(shards, workers=0).stream(8, 7, rank=rank, ranks=2)
        own = sum(manifest["shards"][layout[p]]["count"] for p in range(rank, n, 2))
        keys = torch.cat([next(stream)[2] for _ in range(own // 8)])  # this rank's first epoch, whole batches
        stream.close()
        seen.append(set(keys.tolist()))
        assert len(seen[-1]) == len(keys)  # no sample twice within the epoch
    assert not seen[0] & seen[1]  # disjoint: each rank reads only its own shards
    assert len(seen[0] | seen[1]) >= 600 - 2 * 8  # together every sample (but the partial batches dropped)
    with pytest.raises(DataError, match="fewer than the 6 processes"):
        ShardSet(shards, workers=0).stream(8, 7, rank=0, ranks=6)


def _two_rank_stream_worker(rank: int, size: int, folder: str, shards: str) -> None:
    import datetime
    import os

    import torch.distributed as dist

    from selfsup.methods.base import Method
    from selfsup.train.loop import train

    os.environ.update(WORLD_SIZE=str(size), RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=size,
                            timeout=datetime.timedelta(seconds=120))
    seen, call = [], Method.__call__

    def spy(self, batch):
        seen.append(batch.index.clone())
        return call(self, batch)

    Method.__call__ = spy
    try:
        settings = {"train.steps": 8, "train.checkpoint_every": 4, "data.workers": 0, "train.seed": 7}
        train(tiny(shards, f"{folder}/full", **settings))
        train(tiny(shards, f"{folder}/split", **settings), stop_after=4)
        train(tiny(shards, f"{folder}/split", **settings), resume=True)
        train(tiny(shards, f"{folder}/half", **settings), stop_after=4)
        torch.save(seen, f"{folder}/seen{rank}.pt")
    finally:
        Method.__call__ = call
        dist.destroy_process_group()


def test_two_ranks_stream_their_shards_resume_exactly_and_reshard_to_one(shards, tmp_path, capsys):
    """Two gloo processes pretrain from shards, each reading its own (shard positions p % 2 == rank of
    each epoch's order, half the global batch each); stopped at step 4 and resumed, the batches and
    the weights are the uninterrupted run's; a 2-process checkpoint resumes in one process, the
    stream going on from the earliest shard either rank had not finished."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from selfsup.train.loop import train

    mp.spawn(_two_rank_stream_worker, args=(2, str(tmp_path), str(shards)), nprocs=2, join=True)
    seen = [torch.load(tmp_path / f"seen{rank}.pt") for rank in range(2)]
    for batches in seen:
        assert len(batches) == 8 + 4 + 4 + 4 and all(len(b) == 32 for b in batches)
        assert all(torch.equal(a, b) for a, b in zip(batches[:8], batches[8:16]))  # resumed: the same batches
    assert not set(torch.cat(seen[0][:6]).tolist()) & set(torch.cat(seen[1][:6]).tolist())  # own shards
    a = load_file(str(tmp_path / "full" / "encoder" / "encoder.safetensors"))
    b = load_file(str(tmp_path / "split" / "encoder" / "encoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = torch.load(tmp_path / "split" / "checkpoints" / "step-00000004.pt", weights_only=True)
    assert len(saved["streams"]) == 2 and "stream" not in saved
    result = train(tiny(shards, tmp_path / "half", **{"train.steps": 8, "train.checkpoint_every": 4,
                                                       "data.workers": 0, "train.seed": 7}), resume=True)
    assert result.steps == 8
    assert "shard stream was read by 2 process(es), this run has 1" in capsys.readouterr().err
