"""Time the kNN and linear-probe protocols on random clustered features of Fashion-MNIST's size.

    PYTHONPATH=src python benchmarks/eval_speed.py [--train 60000] [--test 10000] [--dim 128]

Features: 10 Gaussian clusters whose centres are close enough that classes overlap (neither
protocol gets 100%), so the linear probe's L-BFGS has real work. Prints the accuracies and, as
the last line, ``RESULT knn_s=... linear_s=...`` (wall-clock seconds, one run each).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from selfsup.evaluate.knn import knn_accuracy
from selfsup.evaluate.linear import linear_probe


def clustered(n: int, dim: int, centres: torch.Tensor, generator: torch.Generator):
    """(n, dim) features around `centres` (K, dim), with labels (n,); classes overlap through noise."""
    labels = torch.randint(0, len(centres), (n,), generator=generator)
    features = centres[labels] + torch.randn(n, dim, generator=generator)
    return features, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=60_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(args.seed)
    # Centre spread 0.25 per dimension: centres are ~2.8 apart against unit noise -> overlapping classes.
    centres = 0.25 * torch.randn(args.classes, args.dim, generator=generator)
    train_x, train_y = clustered(args.train, args.dim, centres, generator)
    test_x, test_y = clustered(args.test, args.dim, centres, generator)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"features: train {tuple(train_x.shape)}, test {tuple(test_x.shape)}, {args.classes} classes")

    start = time.perf_counter()
    knn = knn_accuracy(train_x, train_y, test_x, test_y)
    knn_s = time.perf_counter() - start
    print(f"knn: accuracy {knn:.4f} in {knn_s:.2f} s")

    start = time.perf_counter()
    linear = linear_probe(train_x, train_y, test_x, test_y, seed=args.seed)
    linear_s = time.perf_counter() - start
    print(f"linear: accuracy {linear['accuracy']:.4f}, lambda {linear['lambda']:g}, "
          f"val {linear['val_accuracy']:.4f}, final fit {linear['iterations']:.0f} iterations, in {linear_s:.2f} s")
    print(f"RESULT knn_s={knn_s:.2f} linear_s={linear_s:.2f} knn_acc={knn:.4f} linear_acc={linear['accuracy']:.4f}")


if __name__ == "__main__":
    main()
