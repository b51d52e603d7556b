"""Data parallel: every registered method, wrapped for DDP exactly as the trainer wraps it
(``distributed.data_parallel``), runs 3 steps on 2 gloo processes whose progress starts at 0, so that
parameters frozen early in training (DINO's and Mugs' last layer, SwAV's prototypes: the first 1%)
get no gradient in the first steps and do in the last one. DDP without ``find_unused_parameters``
raises "Expected to have finished reduction in the prior iteration" at the next forward when a
parameter that requires a gradient got none; with it, a frozen parameter must keep ``grad=None``
(as on one process: the optimizer then leaves it alone, weight decay and momentum included).

One spawn runs every method (tiny backbones and heads from tests/test_distributed_registry.py, a
global batch of 8); the tests compare each rank's parameters-with-a-gradient at every step with one
process (a frozen parameter with a zero gradient instead of none would still be moved by weight decay
and momentum), and the gradients themselves.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from selfsup import registry
from tests.method_ranks import spawn_methods
from tests.test_distributed_registry import DIFFERS, N, NOT_RUN, RUN, batch, build, fix_draws

PROGRESS = (0.0, 0.0, 0.5)  # two steps inside the methods' freeze (progress < 0.01), then one after it


# With an auxiliary head (its loss is added inside DDP's forward, where the search for unused
# parameters starts): a method that searches and one that does not. Its rotations are drawn per rank,
# so only which parameters get a gradient is compared.
WITH_AUX = {"dino+pretext": "dino", "simclr+pretext": "simclr"}
AUX = [{"name": "pretext", "tasks": ["rotation"], "hidden_dim": 16, "dropout": 0.0}]


def run(name: str, rank: int = 0, size: int = 1) -> dict:
    from selfsup.auxiliaries import attach
    from selfsup.train.loop import data_parallel

    method = build(WITH_AUX.get(name, name))
    if name in WITH_AUX:
        attach(method, AUX)
    fix_draws(name, method, rank, size)
    method, forward = data_parallel(method, torch.device("cpu"))  # as the trainer wraps it
    trainable = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1e-3)
    rows = slice(rank * N // size, (rank + 1) * N // size)
    base = WITH_AUX.get(name, name)
    out = {}
    for step, progress in enumerate(PROGRESS):
        torch.manual_seed(100 + step)
        optimizer.zero_grad(set_to_none=True)
        loss = forward(dataclasses.replace(batch(base, step, rows), progress=progress))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1e9)
        out[f"grads{step}"] = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
        optimizer.step()
        method.on_step_end(progress + 0.01)
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp_unused")
    return spawn_methods(run, RUN + list(WITH_AUX), folder)


def cases():
    for name in registry.names("method"):
        if name in NOT_RUN:
            yield pytest.param(name, marks=pytest.mark.skip(reason=NOT_RUN[name]))
        else:
            yield name
    yield from WITH_AUX


@pytest.mark.parametrize("name", list(cases()))
def test_frozen_and_unused_parameters_under_ddp(name, ranks):
    """3 DDP steps from progress 0 run on both ranks; at each step the parameters with a gradient are
    one process's, and (methods that match one process) so are the gradients."""
    for r in ranks:
        assert "error" not in r[name], r[name].get("error")
    mine = run(name)
    for step in range(len(PROGRESS)):
        grads = mine[f"grads{step}"]
        for r in ranks:
            assert r[name][f"grads{step}"].keys() == grads.keys(), f"step {step}: parameters with a gradient"
        if name in DIFFERS or name in WITH_AUX:
            continue
        scale = max((g.abs().max().item() for g in grads.values()), default=1.0)
        for key in grads:
            torch.testing.assert_close(ranks[0][name][f"grads{step}"][key], grads[key], rtol=1e-4, atol=1e-3 * scale,
                                       msg=lambda m, step=step, key=key: f"step {step} {key}: {m}")
