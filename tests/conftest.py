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


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 1,797 8x8 digits as 64-d float features, shuffled: 1,200 train, 597 test."""
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = torch.tensor(x, dtype=torch.float32)[perm], torch.tensor(y)[perm]
    return x[:1200], y[:1200], x[1200:], y[1200:]


def pytest_configure(config):
    # Tiny test tensors run faster on one thread, and a loaded 2-core machine makes two threads
    # wait on each other (seen: 80x slower BatchNorm on small batches).
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one torch thread (see pytest_configure); a test that changes it is undone."""
    import torch

    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


def assert_same(a, b, where: str = "", skip: tuple[str, ...] = ()) -> None:
    """Nested state (dicts, lists, tensors, numbers) equal bit for bit; paths in `skip` are not compared."""
    import torch

    if where in skip:
        return
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}" if where else str(k), skip)
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]", skip)
    elif torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_resume_bit_identical(make_config, tmp_path, steps: int = 6, stop: int = 3) -> dict:
    """Train `make_config(out)` uninterrupted and again stopped at `stop` then resumed; the exported
    encoder and the whole method state (teachers, queues, centers) must be equal bit for bit.
    Returns the final method state."""
    import torch
    from safetensors.torch import load_file

    from selfsup.train.loop import train

    full, split = tmp_path / "full", tmp_path / "split"
    train(make_config(full))
    assert train(make_config(split), stop_after=stop).steps == stop
    assert not (split / "encoder").exists()
    train(make_config(split), resume=True)
    a = load_file(str(full / "encoder" / "encoder.safetensors"))
    b = load_file(str(split / "encoder" / "encoder.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    name = f"step-{steps:08d}.pt"
    sa = torch.load(full / "checkpoints" / name, weights_only=True)["method"]
    sb = torch.load(split / "checkpoints" / name, weights_only=True)["method"]
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    return sa
