"""Speed of batched image views on this machine's CPU (a few seconds).

    PYTHONPATH=src python benchmarks/views_speed.py [--threads N]

Measures the fmnist-cpu views (28x28 grayscale, batch 256, 2 views) and the SimCLR preset on 32x32
RGB, each as the median of timed calls after warm-up, side by side with the no-augmentation floor
(``normalize``: uint8 -> float and normalization of the same 2 x 256 images). The budget is
augmentation under 5% of a training step; convnet6 trains at roughly 200-1000 images/s here, so
the views need >= 20k images/s. Last line: ``RESULT views_per_s=... images_per_s=...`` (fmnist).
"""
from __future__ import annotations

import argparse

import torch
from common import median_seconds

from selfsup.views import ImageViews, fmnist_views, normalize, simclr_views


def one_thread(fn):
    # The floor runs under the same single thread as the views, so the ratio compares work, not contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def measure(name: str, config, images: torch.Tensor, mean, std) -> float:
    """Images/s of the default views (1 CPU thread), printed beside torch's thread count and the floor."""
    generator = torch.Generator().manual_seed(0)
    n_views, b = config.n_global + config.n_local, len(images)
    views = ImageViews(config, mean, std)
    aug = median_seconds(lambda: views(images, generator))
    all_threads = ImageViews(config, mean, std, cpu_threads=None)
    aug_all = median_seconds(lambda: all_threads(images, generator), repeats=10)
    floor = median_seconds(lambda: one_thread(lambda: [normalize(images, mean, std) for _ in range(n_views)]))
    print(f"{name}: {b / aug:,.0f} images/s = {n_views * b / aug:,.0f} views/s ({aug * 1e3:.2f} ms per batch of {b}); "
          f"with {torch.get_num_threads()} threads {aug_all * 1e3:.2f} ms ({aug_all / aug:.1f}x); "
          f"normalize-only floor (1 thread) {floor * 1e3:.2f} ms ({aug / floor:.1f}x)")
    return b / aug


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads outside the views (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    g = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8, generator=g)
    rgb = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, generator=g)
    fm = measure("fmnist_views 28x28x1, 2 views", fmnist_views(), gray, [0.286], [0.353])
    measure("simclr_views(32) 32x32x3, 2 views", simclr_views(32), rgb, [0.5] * 3, [0.25] * 3)
    print(f"RESULT views_per_s={2 * fm:.0f} images_per_s={fm:.0f}")


if __name__ == "__main__":
    main()
