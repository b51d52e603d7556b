"""Readers for IDX, CIFAR, STL-10 and numpy files, and the named-dataset catalogue.

Fixtures are written on the fly in the official layouts, with known pixel values.
"""
from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from selfsup.data import (
    dataset_names,
    describe_datasets,
    load_arrays,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_idx,
    load_stl10,
    read_idx,
)
from selfsup.data import catalogue
from selfsup.errors import ConfigError, DataError

FMNIST_SYSTEM = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------- fixture writers

def write_idx(path, array: np.ndarray, compress: bool = True) -> str:
    type_byte = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}[array.dtype]
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = str(path)
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(payload)
    return path


def make_idx_dataset(folder, n_train=5, n_test=3, seed=0, compress=True, side=4):
    """The four MNIST-style files in `folder`; returns the arrays written."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        ext = ".gz" if compress else ""
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{ext}"), x, compress)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{ext}"), y, compress)
        arrays[prefix] = (x, y)
    return arrays


def make_cifar10(folder, per_batch=2, protocol=2):
    """cifar-10-batches-py with dict records keyed by bytes, as the Python 2 originals are."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    written = {}
    for fname in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        record = {b"batch_label": fname.encode(), b"labels": labels, b"data": data,
                  b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}
        with open(os.path.join(folder, fname), "wb") as f:
            pickle.dump(record, f, protocol=protocol)
        written[fname] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=protocol)
    return written


def make_cifar100(folder, n=3):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(2)
    written = {}
    for fname in ("train", "test"):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n).tolist()
        record = {b"data": data, b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}
        with open(os.path.join(folder, fname), "wb") as f:
            pickle.dump(record, f, protocol=2)
        written[fname] = (data, fine)
    with open(os.path.join(folder, "meta"), "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}, f, protocol=2)
    return written


# ---------------------------------------------------------------- IDX

def test_idx_round_trip_gzip_and_raw(tmp_path):
    for compress in (True, False):
        folder = tmp_path / f"c{compress}"
        arrays = make_idx_dataset(folder, compress=compress)
        ext = ".gz" if compress else ""
        ds = load_idx(folder / f"train-images-idx3-ubyte{ext}", folder / f"train-labels-idx1-ubyte{ext}")
        x, y = arrays["train"]
        assert ds.images.shape == (5, 1, 4, 4) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
        assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == y.tolist()
        assert ds.ids[2] == f"train-images-idx3-ubyte{ext}/2"


def test_idx_header_dtype_is_parsed(tmp_path):
    a = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    path = write_idx(tmp_path / "ints.idx", a, compress=False)
    out = read_idx(path)
    assert out.dtype == np.int32 and out.shape == (2, 2) and out.tolist() == [[1, -2], [70000, 3]]
    f = np.array([0.5, -1.25], dtype=np.float32)
    assert read_idx(write_idx(tmp_path / "f.idx", f)).tolist() == [0.5, -1.25]


def test_idx_truncated_file_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8), compress=False)
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-5])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated: shape \(3, 4, 4\) needs 64 bytes, the file has 59"):
        read_idx(path)
    gz = write_idx(tmp_path / "x.gz", np.zeros((3, 4, 4), np.uint8))
    raw = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="x.gz is truncated or not valid gzip"):
        read_idx(gz)


def test_idx_bad_magic_and_mismatched_labels(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError, match="is not an IDX file"):
        read_idx(bad)
    x = write_idx(tmp_path / "x", np.zeros((3, 2, 2), np.uint8))
    y = write_idx(tmp_path / "y", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="has 4 labels but .* has 3 images"):
        load_idx(x, y)
    with pytest.raises(DataError, match="images must be uint8 \\(N, H, W\\)"):
        load_idx(y)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=120), compress=st.booleans(), keep_header=st.booleans())
def test_idx_random_bytes_give_dataset_or_data_error(tmp_path, data, compress, keep_header):
    if keep_header:  # a plausible header makes the parser go further before it fails
        data = b"\x00\x00\x08\x03" + data
    path = tmp_path / "rand"
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        ds = load_idx(path)
    except DataError:
        return
    n, h, w = (int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
    assert ds.images.shape == (n, 1, h, w)
    assert ds.images.flatten().tolist() == list(data[16:])


# ---------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_round_trip(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    written = make_cifar10(folder, protocol=protocol)
    train = load_cifar10(folder, "train")
    assert train.images.shape == (10, 3, 32, 32)
    data, labels = written["data_batch_3"]
    # the 1024 red values come first, in row-major order: pixel (row 1, col 2) of channel c
    # of the first image of batch 3 (index 4) is data[0, c * 1024 + 1 * 32 + 2]
    for c in range(3):
        assert train.images[4, c, 1, 2].item() == data[0, c * 1024 + 32 + 2]
    assert train.labels[4:6].tolist() == labels
    assert train.classes[9] == "truck"
    test = load_cifar10(folder, "test")
    assert len(test) == 2 and test.ids == ["cifar10/test/0", "cifar10/test/1"]
    assert torch.equal(test.images.reshape(2, -1), torch.from_numpy(written["test_batch"][0]))


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    written = make_cifar100(folder)
    ds = load_cifar100(folder, "test")
    assert ds.labels.tolist() == written["test"][1]
    assert ds.classes[:2] == ["c0", "c1"] and len(ds.classes) == 100
    assert torch.equal(ds.images.reshape(3, -1), torch.from_numpy(written["test"][0]))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="test_batch is damaged or not an official CIFAR python file"):
        load_cifar10(folder, "test")
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- STL-10

def test_stl10_column_major_layout_and_one_based_labels(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    raw = np.zeros((2, 3 * 96 * 96), np.uint8)
    # on disk each channel is column-major: byte c*9216 + col*96 + row is pixel (row, col)
    raw[1, 2 * 9216 + 5 * 96 + 7] = 200  # image 1, blue, row 7, col 5
    raw[0, 0 * 9216 + 0 * 96 + 95] = 17  # image 0, red, row 95, col 0
    (folder / "train_X.bin").write_bytes(raw.tobytes())
    (folder / "train_y.bin").write_bytes(bytes([1, 10]))
    (folder / "class_names.txt").write_text("airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n")
    ds = load_stl10(folder, "train")
    assert ds.images.shape == (2, 3, 96, 96)
    assert ds.images[1, 2, 7, 5].item() == 200 and ds.images[0, 0, 95, 0].item() == 17
    assert int(ds.images.sum()) == 217
    assert ds.labels.tolist() == [0, 9] and ds.classes[7] == "monkey"
    (folder / "unlabeled_X.bin").write_bytes(raw[:1].tobytes())
    both = load_stl10(folder, "train+unlabeled")
    assert len(both) == 3 and both.labels is None and both.ids[2] == "stl10/unlabeled/0"
    (folder / "test_X.bin").write_bytes(raw.tobytes()[:-1])
    (folder / "test_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(DataError, match=r"test_X.bin has 55295 bytes, not a positive multiple of 27648"):
        load_stl10(folder, "test")


# ---------------------------------------------------------------- numpy arrays

def test_npy_layouts(tmp_path):
    nhwc = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    np.save(tmp_path / "nhwc.npy", nhwc)
    ds = load_arrays(tmp_path / "nhwc.npy")
    assert ds.images.shape == (2, 3, 4, 5) and ds.labels is None
    assert ds.images[1, 2, 3, 4].item() == nhwc[1, 3, 4, 2]
    nchw = nhwc.transpose(0, 3, 1, 2).copy()
    np.save(tmp_path / "nchw.npy", nchw)
    assert torch.equal(load_arrays(tmp_path / "nchw.npy").images, ds.images)
    np.save(tmp_path / "nhw.npy", nhwc[..., 0])
    assert load_arrays(tmp_path / "nhw.npy").images.shape == (2, 1, 4, 5)


def test_npy_float_and_int_conversion(tmp_path):
    np.save(tmp_path / "f.npy", np.array([[[0.0, 0.5], [1.0, 0.2]]], dtype=np.float32))
    # 0.5 * 255 = 127.5 rounds to even (128), 0.2 * 255 = 51
    assert load_arrays(tmp_path / "f.npy").images.flatten().tolist() == [0, 128, 255, 51]
    np.save(tmp_path / "i.npy", np.array([[[3, 255]]], dtype=np.int64))
    assert load_arrays(tmp_path / "i.npy").images.flatten().tolist() == [3, 255]
    np.save(tmp_path / "big.npy", np.array([[[0.0, 2.0]]]))
    with pytest.raises(DataError, match=r"values in \[0, 2\]; float images must be finite and in \[0, 1\]"):
        load_arrays(tmp_path / "big.npy")


def test_npy_wrong_shape_names_shape_and_layouts(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 6, 7), np.uint8))
    with pytest.raises(DataError, match=r"shape \(2, 5, 6, 7\); images must be \(N, H, W\), \(N, H, W, C\) or \(N, C, H, W\)"):
        load_arrays(tmp_path / "bad.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot be read without pickle"):
        load_arrays(tmp_path / "obj.npy")


def test_npz_keys_and_splits(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.savez(tmp_path / "plain.npz", images=x, labels=np.array([1, 0]), classes=np.array(["a", "b"]))
    ds = load_arrays(tmp_path / "plain.npz")
    assert ds.labels.tolist() == [1, 0] and ds.classes == ["a", "b"] and ds.images[1, 0, 2, 3].item() == 23
    np.savez(tmp_path / "keras.npz", x_train=x, y_train=np.array([4, 5]), x_test=x[:1] + 1, y_test=np.array([6]))
    test = load_dataset(str(tmp_path / "keras.npz"), split="test")
    assert len(test) == 1 and test.labels.tolist() == [6] and test.images[0, 0, 0, 0].item() == 1
    np.savez(tmp_path / "nolabels.npz", foo=x)
    with pytest.raises(DataError, match="has no images array for split 'train' \\(keys: foo\\)"):
        load_arrays(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "badlabels.npz", x=x, y=np.array([1, 2, 3]))
    with pytest.raises(DataError, match=r"labels must be integers of shape \(2,\)"):
        load_arrays(tmp_path / "badlabels.npz")


_DTYPES = st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_, np.uint32])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(array=hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)),
       junk=st.binary(max_size=64), use_junk=st.booleans())
def test_npy_random_arrays_give_dataset_or_data_error(tmp_path, array, junk, use_junk):
    path = tmp_path / "a.npy"
    if use_junk:
        path.write_bytes(junk)
    else:
        np.save(path, array)
    try:
        ds = load_arrays(path)
    except DataError:
        return
    assert not use_junk
    assert ds.images.dtype == torch.uint8 and ds.images.dim() == 4 and ds.images.shape[1] in (1, 3)
    assert ds.images.numel() == array.size and len(ds.ids) == len(array)


# ---------------------------------------------------------------- catalogue

@pytest.fixture
def clean_places(tmp_path, monkeypatch):
    """No system folder, no $SELFSUP_DATA, a private cache: only what a test puts there is found."""
    monkeypatch.setattr(catalogue, "SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_lookup_order_root_env_system_cache(clean_places, monkeypatch):
    tmp = clean_places
    make_idx_dataset(tmp / "cache" / "selfsup" / "mnist", n_train=1)
    assert len(load_dataset("mnist")) == 1
    make_idx_dataset(tmp / "system" / "mnist", n_train=2)
    assert len(load_dataset("mnist")) == 2
    make_idx_dataset(tmp / "env" / "MNIST" / "raw", n_train=3, compress=False)  # torchvision layout
    monkeypatch.setenv("SELFSUP_DATA", str(tmp / "env"))
    assert len(load_dataset("mnist")) == 3
    make_idx_dataset(tmp / "explicit" / "mnist", n_train=4)
    ds = load_dataset("MNIST", root=str(tmp / "explicit"))
    assert len(ds) == 4 and ds.name == "mnist" and ds.classes[3] == "3" and ds.ids[0] == "mnist/train/0"
    assert len(load_dataset("mnist", split="test", root=str(tmp / "explicit" / "mnist"))) == 3  # root = the folder
    assert catalogue.search_dirs(str(tmp / "explicit")) == [
        str(tmp / "explicit"), str(tmp / "env"), str(tmp / "system"), str(tmp / "cache" / "selfsup")]


def test_missing_named_dataset_says_what_where_and_how(clean_places, monkeypatch):
    tmp = clean_places
    monkeypatch.setenv("SELFSUP_DATA", str(tmp / "env"))
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist")
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz was not found" in msg and str(tmp / "env") in msg
    assert str(tmp / "cache" / "selfsup") in msg and "apt-get install dataset-fashion-mnist" in msg
    folder = tmp / "env" / "fashion-mnist"
    make_idx_dataset(folder)
    os.remove(folder / "t10k-labels-idx1-ubyte.gz")
    assert len(load_dataset("fashion_mnist")) == 5  # train is complete
    with pytest.raises(DataError, match=f"{folder / 't10k-labels-idx1-ubyte.gz'} is missing"):
        load_dataset("fashion-mnist", "test")
    with pytest.raises(DataError, match="data_batch_1 was not found.*cifar-10-python.tar.gz"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="fashion-mnist has no split 'tset'. Did you mean 'test'?"):
        load_dataset("fashion-mnist", "tset")


def test_unknown_name_suggests_closest(clean_places):
    with pytest.raises(DataError, match="no dataset or path 'cifar1O'. Did you mean 'cifar10'\\?.*image folder"):
        load_dataset("cifar1O")
    txt = clean_places / "notes.txt"
    txt.write_text("hi")
    with pytest.raises(DataError, match=r"no modality reads it.*\.csv.*\.npz"):
        load_dataset(str(txt))
    with pytest.raises(ConfigError, match="image_size 0"):
        load_dataset("mnist", image_size=0)


def test_named_cifar_stl_and_folder_detection(clean_places, monkeypatch):
    tmp = clean_places
    monkeypatch.setenv("SELFSUP_DATA", str(tmp / "env"))
    make_cifar10(tmp / "env" / "cifar-10-batches-py")
    make_cifar100(tmp / "env" / "cifar-100-python")
    assert len(load_dataset("cifar-10", "test")) == 2 and len(load_dataset("cifar100")) == 3
    detected = load_dataset(str(tmp / "env" / "cifar-10-batches-py"))
    assert detected.name == "cifar10" and len(detected) == 10
    arrays = make_idx_dataset(tmp / "mydigits")
    idx = load_dataset(str(tmp / "mydigits"), split="test")
    assert idx.name == "mydigits" and idx.classes is None
    assert idx.labels.tolist() == arrays["t10k"][1].tolist()
    make_idx_dataset(tmp / "tv" / "FashionMNIST" / "raw", compress=False)
    assert load_dataset(str(tmp / "tv" / "FashionMNIST" / "raw")).classes[0] == "T-shirt/top"
    rows = {r["name"]: r for r in describe_datasets()}
    assert set(rows) == set(dataset_names()) == {"fashion-mnist", "mnist", "kmnist", "cifar10", "cifar100", "stl10",
                                                     "adult", "nci_tpsa", "wehi", "chembl2321810", "karate"}
    assert rows["cifar10"]["where"] == str(tmp / "env" / "cifar-10-batches-py")
    assert rows["stl10"]["where"] == "missing" and "stl10_binary.tar.gz" in rows["stl10"]["how_to_get"]
    assert rows["stl10"]["splits"] == ["train", "test", "unlabeled", "train+unlabeled"]
    assert rows["cifar10"]["status"] == f"found in {tmp / 'env' / 'cifar-10-batches-py'}"
    assert rows["mnist"]["status"].startswith("missing: download the four IDX files")


def test_image_size_resizes_named_data(clean_places, monkeypatch):
    folder = clean_places / "env" / "kmnist"
    make_idx_dataset(folder, n_train=2)
    x = np.full((2, 4, 4), 77, np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", x)
    monkeypatch.setenv("SELFSUP_DATA", str(clean_places / "env"))
    ds = load_dataset("kmnist", image_size=(6, 8))
    assert ds.images.shape == (2, 1, 6, 8) and ds.images.unique().tolist() == [77]  # flat stays flat


@pytest.mark.skipif(not os.path.exists(os.path.join(FMNIST_SYSTEM, "train-images-idx3-ubyte.gz")),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    ds = load_dataset("fashion-mnist")
    assert ds.images.shape == (60000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.bincount().tolist() == [6000] * 10
    assert ds.labels[:5].tolist() == [9, 0, 0, 3, 0] and ds.classes[9] == "Ankle boot"
    assert ds.source.startswith(FMNIST_SYSTEM)
