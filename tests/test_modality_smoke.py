"""The registry-wide smoke test on every kind of data: each registered method runs on each modality
that provides what it needs, on real data, and its loss falls on a fixed batch. Images have their
own, more detailed version (tests/test_methods.py); here time series (GunPoint), molecules
(nci_tpsa), the nodes of one graph (karate) and a table (wine)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup import registry
from selfsup.backbones import build_backbone
from selfsup.capabilities import unmet
from selfsup.data import load_dataset
from selfsup.methods.base import Batch
from selfsup.modalities import modality_of
from tests.test_methods import NOT_ON_A_FIXED_BATCH, SMOKE_OPTIONS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

# Small backbones for each kind, and a token backbone where a method needs tokens.
BACKBONES = {
    "series": ("ts2vec_cnn", dict(hidden_dim=16, dim=32, depth=3)),
    "graph": ("gin", dict(hidden_dim=32, layers=2)),
    "table": ("mlp", dict(width=32, depth=2)),
}
TOKEN_BACKBONES = {"series": ("patchtst", dict(patch_len=10, dim=32, depth=1, heads=2))}
EXTRA_OPTIONS = {
    "tstcc": dict(hidden_dim=32, heads=2, horizon=4),
    "graphcl": dict(hidden_dim=32, out_dim=32),
    "grace": dict(hidden_dim=32, out_dim=32),
    "bgrl": dict(hidden_dim=64, out_dim=32, pred_hidden_dim=64),
    "gsimclr": dict(hidden_dim=64, out_dim=32),
    "scgc": dict(hops=1, temperature=0.5, pretrain_epochs=2),
}


def datasets():
    """(id, dataset) of every non-image kind, small and real."""
    out = []
    if (SHARED / "ucr" / "GunPoint").is_dir():
        out.append(("series", load_dataset("GunPoint", root=str(SHARED))))
    graphs = load_dataset("nci_tpsa")
    out.append(("graph", graphs.subset(torch.arange(64))))
    out.append(("nodes", load_dataset("karate", split="all")))
    from sklearn.datasets import load_wine

    from selfsup.data.table import load_table

    frame = load_wine(as_frame=True).frame
    path = Path(__file__).resolve().parent / ".wine_smoke.csv"
    frame.to_csv(path, index=False)
    try:
        out.append(("table", load_table(path)))
    finally:
        path.unlink(missing_ok=True)
    return out


DATASETS = datasets()


def backbone_for(cls, plugin) -> tuple[str, dict]:
    """A small backbone of the kind the method takes on this data (its preferred one, or a token one)."""
    preferred = cls.preferred_backbones.get(plugin.name)
    if preferred is not None:
        return preferred, {}
    return (TOKEN_BACKBONES if "tokens" in cls.requires else BACKBONES).get(plugin.name, BACKBONES[plugin.name])


def cases():
    for data_id, data in DATASETS:
        plugin = modality_of(data)
        for name in registry.names("method"):
            cls = registry.get("method", name)
            backbone_name, _ = backbone_for(cls, plugin)
            if unmet(cls.requires, plugin, registry.get("backbone", backbone_name), data):
                continue  # the data or its backbones lack what the method needs: refused before training
            if cls.needs_labels and data.labels is None:
                continue
            yield pytest.param(data_id, name, id=f"{data_id}-{name}")


@pytest.mark.parametrize("data_id, name", list(cases()))
def test_every_method_learns_on_every_kind_that_fits(data_id, name):
    data = dict(DATASETS)[data_id]
    plugin = modality_of(data)
    cls = registry.get("method", name)
    backbone_name, options = backbone_for(cls, plugin)
    torch.manual_seed(0)
    backbone = build_backbone(backbone_name, **data.input_spec(), **options)
    method = cls(backbone, **{**SMOKE_OPTIONS.get(name, {}), **EXTRA_OPTIONS.get(name, {})})
    mean, std = data.normalization()
    layout = dict(cls.views)
    views, _ = plugin.views("auto", {}, layout, data, mean, std, None, prefer=cls.preferred_views.get(plugin.name))
    n = min(48, len(data))
    index = torch.arange(n)
    samples = plugin.gather(data.samples, index)
    labels = None if data.labels is None else data.labels[:n]
    stored = data.samples
    from selfsup.methods.base import TrainData

    method.prepare(TrainData(stored, data.labels, list(mean), list(std)))
    view_list, params = views(samples, torch.Generator().manual_seed(0))  # one fixed batch of views
    batch = Batch(view_list, params, samples, labels, index, 0.0, layout["n_global"], layout.get("n_local", 0))
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=2e-3)
    method.train()
    losses, steps = [], 12
    for step in range(steps):
        torch.manual_seed(step)
        batch.progress = step / steps
        out = method(batch)
        loss = out["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss), f"{data_id}/{name}: loss {loss}"
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.on_step_end((step + 1) / steps)
        losses.append(loss.item())
    if name in NOT_ON_A_FIXED_BATCH:
        return
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.97 * first, f"{data_id}/{name}: loss did not fall on a fixed batch: {losses}"
