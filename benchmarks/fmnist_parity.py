"""Which piece makes selfsup's fmnist-cpu kNN differ from LightlySSL's? A plain training loop (the
peer script's loop) built from LightlySSL's pieces, with any subset swapped for selfsup's.

usage: .venv-bench/bin/python benchmarks/fmnist_parity.py [--swap model head loss opt] [--seeds 0 1] [--steps 200]

Views are always selfsup's fmnist views (LightlySSL's PIL views through selfsup's trainer gave
the same kNN as selfsup's own, see BENCHMARKS.md). Pieces: model = selfsup's convnet6,
head = selfsup.heads.mlp, loss = selfsup's nt_xent, opt = selfsup's AdamW param groups (no decay
on biases and norms). Prints ``PARITY swap=... seed=... knn=...`` per run. Needs LightlySSL
(`make bench` installs it into .venv-bench).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfsup.backbones.base import build_backbone  # noqa: E402
from selfsup.data import load_dataset  # noqa: E402
from selfsup.evaluation.knn import knn_accuracy  # noqa: E402
from selfsup.heads import mlp  # noqa: E402
from selfsup.losses.contrastive import nt_xent  # noqa: E402
from selfsup.train.optim import build_optimizer  # noqa: E402
from selfsup.views import ImageViews, fmnist_views  # noqa: E402

MEAN, STD = 0.286, 0.353


def peer_convnet6(w: int = 32) -> nn.Sequential:
    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    return nn.Sequential(block(1, w), block(w, w), nn.MaxPool2d(2), block(w, 2 * w), block(2 * w, 2 * w),
                         nn.MaxPool2d(2), block(2 * w, 4 * w), block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def run(swap: set[str], seed: int, steps: int, train, test) -> float:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    torch.manual_seed(seed)
    backbone = build_backbone("convnet6", in_channels=1, image_size=28) if "model" in swap else peer_convnet6()
    head = mlp([128, 512, 128]) if "head" in swap else SimCLRProjectionHead(128, 512, 128)
    criterion = (lambda a, b: nt_xent(a, b, temperature=0.2)) if "loss" in swap else NTXentLoss(temperature=0.2)
    params = nn.ModuleList([backbone, head])
    opt = (build_optimizer(params, "adamw", 2e-3, 1e-4) if "opt" in swap
           else torch.optim.AdamW(params.parameters(), lr=2e-3, weight_decay=1e-4))
    views = ImageViews(fmnist_views(), [MEAN], [STD])
    generator = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        perm = torch.randperm(len(train))
        for i in range(len(train) // 256):
            v, _ = views(train.images[perm[i * 256:(i + 1) * 256]], generator)
            z = head(backbone(torch.cat(v[:2])))
            loss = criterion(*z.chunk(2))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    backbone.eval()
    with torch.no_grad():
        def feats(x):
            return torch.cat([backbone(x[i:i + 1000].float().div(255).sub(MEAN).div(STD)) for i in range(0, len(x), 1000)])

        return float(knn_accuracy(feats(train.images), train.labels, feats(test.images), test.labels, fast=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--swap", nargs="*", default=[], choices=["model", "head", "loss", "opt"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    for seed in args.seeds:
        acc = run(set(args.swap), seed, args.steps, train, test)
        print(f"PARITY swap={','.join(sorted(args.swap)) or '-'} seed={seed} knn={acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
