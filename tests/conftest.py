import gzip
from pathlib import Path

import numpy as np
import pytest

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def fmnist_arrays(n: int, split: str = "train"):
    prefix = "train" if split == "train" else "t10k"
    if not (FMNIST / f"{prefix}-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (make test installs it)")
    with gzip.open(FMNIST / f"{prefix}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(16 + n * 784), np.uint8, offset=16).reshape(n, 28, 28).copy()
    with gzip.open(FMNIST / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(8 + n), np.uint8, offset=8).astype(np.int64)
    return x, y


@pytest.fixture(scope="session")
def fmnist_npz(tmp_path_factory) -> Path:
    """600 real Fashion-MNIST train images with labels, as an .npz dataset file."""
    x, y = fmnist_arrays(600)
    path = tmp_path_factory.mktemp("data") / "fmnist600.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="session")
def fmnist_split_dir(tmp_path_factory) -> Path:
    """Two .npz files of real images, train.npz (500) and test.npz (200), in one folder."""
    x, y = fmnist_arrays(700)
    root = tmp_path_factory.mktemp("split")
    np.savez(root / "train.npz", x=x[:500], y=y[:500])
    np.savez(root / "test.npz", x=x[500:], y=y[500:])
    return root


def pytest_configure(config):
    # Tiny test tensors run faster on one thread, and a loaded 2-core machine makes two threads
    # wait on each other (seen: 80x slower BatchNorm on small batches).
    import torch

    torch.set_num_threads(1)
