"""Issue 4, point 1 for every registered method: a run stopped at step 3 and resumed from its
checkpoint ends with the same checkpoint as a run that was never stopped, bit for bit (CPU, same
seed): the method's whole state (teachers, queues, prototypes, centers, memory banks), the
optimizer's moments, the schedule and the step; and the same exported encoder.

tests/test_kill_resume.py does the same with real SIGKILLs for three methods that cover the kinds
of state (none, EMA teacher, EMA key encoder + queue); this file is the sweep over the registry, so
a method added later cannot forget a piece of state in `state_dict`.
"""
from __future__ import annotations

import pytest
import torch

from selfsup import config as C
from selfsup import registry
from tests.conftest import assert_resume_bit_identical, assert_same

# Small heads, queues and banks so that every method's state exists and is used within 6 steps of 32.
OPTIONS = {
    "byol": ["method.hidden_dim=32", "method.pred_hidden_dim=32", "method.out_dim=16"],
    "msbreg": ["method.hidden_dim=32", "method.pred_hidden_dim=32", "method.out_dim=16"],
    "simsiam": ["method.hidden_dim=32", "method.pred_hidden_dim=16", "method.out_dim=32"],
    "barlow_twins": ["method.hidden_dim=32", "method.out_dim=32"],
    "mixed_barlow_twins": ["method.hidden_dim=32", "method.out_dim=32"],
    "vicreg": ["method.hidden_dim=32", "method.out_dim=32"],
    "moco_v2": ["method.hidden_dim=32", "method.out_dim=16", "method.queue_size=96"],
    "nnclr": ["method.hidden_dim=32", "method.out_dim=16", "method.pred_hidden_dim=32", "method.support_size=96"],
    "dino": ["method.hidden_dim=32", "method.bottleneck_dim=16", "method.out_dim=32", "views.n_local=2"],
    "swav": ["method.hidden_dim=32", "method.out_dim=16", "method.n_prototypes=20", "method.queue_length=64",
             "method.queue_start=0.3", "views.n_local=2"],
    "mugs": ["method.hidden_dim=32", "method.out_dim=16", "method.pred_hidden_dim=32", "method.bottleneck_dim=16",
             "method.n_prototypes=32", "method.queue_size=64", "method.memory_size=64", "views.n_local=2"],
    "obow": ["method.num_words=64"],
    "gsimclr": ["method.hidden_dim=32", "method.out_dim=16", "method.first_stage=pixels"],
    "mae": ["backbone.name=vit_tiny", "backbone.patch_size=7", "backbone.dim=32", "backbone.depth=1",
            "backbone.heads=2", "method.decoder_dim=16", "method.decoder_depth=1", "method.decoder_heads=2"],
}
DEFAULT = ["method.hidden_dim=32", "method.out_dim=16"]
NO_HEAD_OPTIONS = {"supervised", "sla", "obow", "mae"}  # methods without the projector's hidden/out widths


# Methods that need other data than images, with their small options (their backbones differ too).
OTHER_OPTIONS = {
    "ts2vec": [],
    "tstcc": ["method.hidden_dim=16", "method.heads=2", "method.horizon=4"],
    "dsla": ["method.perturbations=2"],
    "scgc": ["method.pretrain_epochs=2"],
}
BACKBONE_OPTIONS = {
    "image": ["backbone.width=8"],
    "series": ["backbone.hidden_dim=8", "backbone.dim=16", "backbone.depth=2"],
    "graph": ["backbone.hidden_dim=16", "backbone.layers=2"],
    "nodes": [],
}
SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "datasets"


def options(name: str) -> list[str]:
    if name in OPTIONS:
        return OPTIONS[name]
    if name in OTHER_OPTIONS:
        return OTHER_OPTIONS[name]
    return [] if name in NO_HEAD_OPTIONS else DEFAULT


def kind_of(name: str) -> str:
    """The data a method's resume is checked on: images when it runs on them, else what it needs."""
    from tests.test_methods import runs_on_images

    if runs_on_images(name):
        return "image"
    requires = registry.get("method", name).requires
    return "series" if "timesteps" in requires else "nodes" if "nodes" in requires else "graph"


def data_options(kind: str, fmnist_npz) -> list[str]:
    if kind == "image":
        return [f"data.name={fmnist_npz}"]
    if kind == "series":
        if not (SHARED / "ucr" / "GunPoint").is_dir():
            pytest.skip("../shared/datasets/ucr is not here")
        return ["data.name=GunPoint", f"data.root={SHARED}"]
    if kind == "graph":
        return ["data.name=chembl2321810"]
    return ["data.name=karate", "data.train_split=all"]


def tiny(data, out, name, kind="image"):
    backbone = [] if name == "mae" else BACKBONE_OPTIONS[kind]
    return C.load(overrides=[*data, f"out={out}", f"method.name={name}", "train.steps=6",
                             "train.batch_size=32", "train.checkpoint_every=3", "train.progress=false",
                             "train.monitor_every=0", "train.threads=1", "optim.warmup_steps=2", *backbone,
                             *options(name)])


def test_the_sweep_covers_the_registry():
    assert set(OPTIONS) | set(OTHER_OPTIONS) <= set(registry.names("method"))


# Every method on the data it runs on, plus a generic method on each other kind of data: a resumed
# series run and a resumed graph run are bit-identical too (issue 11).
CASES = [(name, kind_of(name)) for name in registry.names("method")]
CASES += [("simclr", "series"), ("simclr", "graph"), ("grace", "nodes")]


@pytest.mark.slow
@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_stop_and_resume_is_bit_identical(name, kind, fmnist_npz, tmp_path):
    data = data_options(kind, fmnist_npz)
    state = assert_resume_bit_identical(lambda out: tiny(data, out, name, kind), tmp_path)
    assert state  # the method has state to compare
    full = torch.load(tmp_path / "full" / "checkpoints" / "step-00000006.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoints" / "step-00000006.pt", weights_only=True)
    assert full.keys() == split.keys()
    # the method state was compared above; the run's own directory is not training state
    assert_same({k: v for k, v in full.items() if k != "method"}, {k: v for k, v in split.items() if k != "method"},
                skip=("config.out",))
