"""Image folders: layouts, bad files among good ones, mixed modes and sizes, odd names, splits."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import load_dataset, load_image_folder
from selfsup.errors import ConfigError, DataError


def save(path, array, fmt=None):
    """Write `array` (H, W) or (H, W, C) uint8 as an image; `path` may be bytes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(f, format=fmt or "PNG")
    return path


def rgb(value, size=(4, 4)):
    return np.broadcast_to(np.array(value, np.uint8), (*size, 3)).copy()


def gray(value, size=(4, 4)):
    return np.full(size, value, np.uint8)


def test_labelled_folder_pixels_labels_and_recursion(tmp_path):
    pattern = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    save(tmp_path / "cat" / "a.png", pattern)
    save(tmp_path / "dog" / "b.png", rgb((10, 20, 30)))
    save(tmp_path / "dog" / "deeper" / "c.png", rgb((1, 2, 3)))
    save(tmp_path / "dog" / ".hidden.png", rgb((9, 9, 9)))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "no_images" / "x").mkdir(parents=True)  # a subfolder without images is no class
    (tmp_path / "no_images" / "x" / "readme.txt").write_text("x")
    ds = load_image_folder(tmp_path)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 1, 1]
    assert ds.ids == ["cat/a.png", "dog/b.png", "dog/deeper/c.png"]
    assert ds.images.shape == (3, 3, 4, 4) and ds.skipped == []
    assert torch.equal(ds.images[0], torch.from_numpy(pattern).permute(2, 0, 1))
    assert ds.images[2, :, 0, 0].tolist() == [1, 2, 3]


def test_flat_folder_is_unlabeled_and_loose_files_beside_classes_are_reported(tmp_path):
    flat = tmp_path / "flat"
    save(flat / "1.png", gray(5))
    save(flat / "2.PNG", gray(6))
    ds = load_image_folder(flat)
    assert ds.labels is None and ds.classes is None and ds.images.shape == (2, 1, 4, 4)
    assert ds.images[:, 0, 0, 0].tolist() == [5, 6]
    save(flat / "cls" / "3.png", gray(7))
    mixed = load_image_folder(flat)
    assert mixed.labels.tolist() == [0] and mixed.classes == ["cls"]
    assert [(os.path.basename(f), why) for f, why in mixed.skipped] == [
        ("1.png", "image outside the class folders"), ("2.PNG", "image outside the class folders")]


def test_corrupt_truncated_and_empty_files_are_skipped(tmp_path):
    save(tmp_path / "good1.png", rgb((100, 150, 200)))
    save(tmp_path / "good2.jpg", rgb((128, 128, 128)), fmt="JPEG")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really" + bytes(range(200)))
    (tmp_path / "empty.jpg").write_bytes(b"")
    big = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    save(tmp_path / "cut.jpg", big, fmt="JPEG")
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # header intact, scan data cut
    ds = load_image_folder(tmp_path, image_size=4)
    assert ds.ids == ["good1.png", "good2.jpg"]
    skipped = {os.path.basename(f): why for f, why in ds.skipped}
    assert set(skipped) == {"garbage.png", "empty.jpg", "cut.jpg"}
    assert "truncated" in skipped["cut.jpg"]
    assert ds.images[0, :, 2, 2].tolist() == [100, 150, 200]
    assert (ds.images[1].int() - 128).abs().max() <= 2  # JPEG of a flat grey is near exact


def test_decompression_bombs_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    save(tmp_path / "ok.png", gray(1, (8, 8)))  # 64 pixels
    save(tmp_path / "warn.png", gray(2, (12, 12)))  # 144 > 100: Pillow only warns
    save(tmp_path / "error.png", gray(3, (15, 15)))  # 225 > 2 * 100: Pillow raises
    ds = load_image_folder(tmp_path)
    assert ds.ids == ["ok.png"] and ds.image_size == (8, 8)
    reasons = dict((os.path.basename(f), why) for f, why in ds.skipped)
    assert reasons.keys() == {"warn.png", "error.png"}
    assert all(why.startswith("decompression bomb") for why in reasons.values())


def test_non_utf8_names_do_not_crash(tmp_path):
    root = os.fsencode(tmp_path)
    save(os.path.join(root, b"caf\xe9", b"\xff\xfe.png"), gray(9))
    save(os.path.join(root, b"plain", b"ok.png"), gray(8))
    ds = load_image_folder(tmp_path)
    assert ds.classes == ["caf\\xe9", "plain"]
    assert ds.ids == ["caf\\xe9/\\xff\\xfe.png", "plain/ok.png"]
    "\n".join(ds.ids + ds.classes).encode("utf-8")  # printable: no lone surrogates
    assert ds.images[:, 0, 0, 0].tolist() == [9, 8]


def test_mixed_sizes_use_most_common_or_requested_size(tmp_path):
    for i in range(3):
        save(tmp_path / f"small{i}.png", gray(10 * i, (6, 8)))
    save(tmp_path / "large.png", gray(99, (12, 16)))
    ds = load_image_folder(tmp_path)
    assert ds.image_size == (6, 8) and len(ds) == 4
    assert ds.images[0].unique().tolist() == [99]  # "large.png" sorts first; flat stays flat when resized
    sized = load_image_folder(tmp_path, image_size=(3, 5))
    assert sized.images.shape == (4, 1, 3, 5)
    ramp = np.tile(np.arange(0, 160, 20, dtype=np.uint8), (6, 1))  # (6, 8), columns 0, 20, ..., 140
    save(tmp_path / "small0.png", ramp)
    halved = load_image_folder(tmp_path, image_size=(3, 4), workers=1)
    # Pillow's bilinear downscale by 2 is a triangle filter 4 pixels wide: weights .25 .75 .75 .25
    # (renormalized at the border): (20*.75 + 40*.25) / 1.75 = 14.3, (20*.25 + 40*.75 + 60*.75 + 80*.25) / 2
    # = 50, ..., (100*.25 + 120*.75 + 140*.75) / 1.75 = 125.7
    assert halved.images[1, 0, 1].tolist() == [14, 50, 90, 126]
    with pytest.raises(ConfigError, match=r"image_size \(3, -1\)"):
        load_image_folder(tmp_path, image_size=(3, -1))


def test_channel_count_gray_rgb_mix_alpha_and_16_bit(tmp_path):
    all_gray = tmp_path / "gray"
    save(all_gray / "a.png", gray(100))
    Image.fromarray(np.full((4, 4), 0x8000 + 0x34, np.uint16)).save(all_gray / "b16.png")  # mode I;16
    ds = load_image_folder(all_gray)
    assert ds.channels == 1 and ds.images[:, 0, 0, 0].tolist() == [100, 0x80]
    mixed = tmp_path / "mixed"
    save(mixed / "a.png", gray(100))
    save(mixed / "b.png", rgb((1, 2, 3)))
    Image.fromarray(np.full((4, 4, 4), (5, 6, 7, 0), np.uint8), mode="RGBA").save(mixed / "c.png")
    ds = load_image_folder(mixed)
    assert ds.channels == 3
    assert ds.images[:, :, 1, 1].tolist() == [[100, 100, 100], [1, 2, 3], [5, 6, 7]]


def test_empty_or_unreadable_folders_are_data_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"image folder .*empty holds no image files.*\.png .*\.jpg"):
        load_image_folder(empty)
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"none of its 1 image files could be read \(first: .*x.png"):
        load_image_folder(bad)


def test_load_dataset_picks_split_subfolder(tmp_path):
    save(tmp_path / "split" / "train" / "a" / "1.png", gray(1))
    save(tmp_path / "split" / "train" / "b" / "2.png", gray(2))
    save(tmp_path / "split" / "test" / "b" / "3.png", gray(3))
    test = load_dataset(str(tmp_path / "split"), "test")
    assert test.ids == ["b/3.png"] and test.classes == ["b"] and test.name == "split"
    assert len(load_dataset(str(tmp_path / "split"))) == 2
    with pytest.raises(DataError, match="has split folders train, test but no 'unlabeled'"):
        load_dataset(str(tmp_path / "split"), "unlabeled")
    save(tmp_path / "plain" / "x.png", gray(4))
    assert load_dataset(str(tmp_path / "plain"), "test").ids == ["x.png"]  # no split folders: the folder itself
    assert load_dataset(str(tmp_path / "plain"), image_size=2).image_size == (2, 2)
