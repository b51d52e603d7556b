"""Images: uint8 (N, C, H, W) tensors kept on the device, batched augmentation, convnets and ViTs.

Readers: IDX, CIFAR pickles, STL-10 binaries (named datasets, ``data/catalogue.py``), image
folders and ``.npy``/``.npz`` arrays (``data/folder.py``, ``data/arrays.py``). Views:
``views/image.py``. Backbones: convnet4/6/8, resnet18/50, vit_tiny/small, scatnet, timm.
"""
from __future__ import annotations

import os

import torch

from ..errors import DataError
from ..registry import register
from ..views import ImageViewConfig
from .base import Modality


@register("modality", "image")
class Image(Modality):
    name = "image"
    noun, nouns = "image", "images"
    unreadable = "unreadable file(s)"
    provides = ("pixels", "mixable")
    default_backbone = "convnet6"
    input_keys = ("in_channels", "image_size")
    view_config = ImageViewConfig
    presets = ("fmnist", "simclr", "byol", "mae", "multicrop")
    formats = "image folders (class subfolders or flat), .npy/.npz arrays"
    priority = 1000  # any folder is an image folder: asked last
    test_split_hint = "a labelled image folder with class subfolders, or an .npz with x and y"

    @classmethod
    def claims(cls, path: str) -> bool:
        return os.path.isdir(path) or path.lower().endswith((".npy", ".npz"))

    @classmethod
    def load(cls, path: str, split: str, image_size=None, **_):
        from ..data.catalogue import load_image_path

        return load_image_path(path, split, image_size)

    @classmethod
    def from_samples(cls, samples, labels, ids, name, source, classes=None, schema=None):
        from ..data.dataset import ImageDataset

        return ImageDataset(samples, labels, ids, name, source, classes)

    # ------------------------------------------------------------------ views

    @classmethod
    def auto_preset(cls, dataset, layout: dict) -> str:
        if layout.get("n_local", 0) > 0:
            return "multicrop"
        if layout.get("n_global", 2) == 1:
            return "mae"
        # Small grey images (Fashion-MNIST, MNIST): the fmnist-cpu protocol's views; else SimCLR's.
        return "fmnist" if dataset.channels == 1 and max(dataset.image_size) <= 32 else "simclr"

    @classmethod
    def preset_config(cls, preset: str, dataset, layout: dict):
        import dataclasses

        from .. import views as V

        size = dataset.image_size[0]
        config = {"fmnist": lambda: V.fmnist_views(), "simclr": lambda: V.simclr_views(size),
                  "byol": lambda: V.byol_views(size), "mae": lambda: V.mae_views(size),
                  "multicrop": lambda: V.multicrop_views(size, layout.get("n_local", 6))}[preset]()
        return config if config.size is not None else dataclasses.replace(config, size=size)

    @classmethod
    def make_views(cls, config, dataset, mean, std, device):
        from ..views import ImageViews

        return ImageViews(config, mean, std)

    # ------------------------------------------------------------------ the encoder

    @classmethod
    def stat_shape(cls) -> tuple[int, ...]:
        return (1, -1, 1, 1)

    @classmethod
    def prepare_input(cls, x, mean, std):
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return (x.float() - mean) / std

    # ------------------------------------------------------------------ checks

    @classmethod
    def check_compatible(cls, data, reference, what: str) -> None:
        if data.image_size != reference.image_size or data.channels != reference.channels:
            raise DataError(f"{what} images are {data.channels}x{data.image_size} but train images are "
                            f"{reference.channels}x{reference.image_size}.",
                            "set data.image_size so both splits are resized alike.")

    @classmethod
    def check_encoder_input(cls, encoder, dataset, data_name: str) -> None:
        expected = encoder.mean.numel()
        if dataset.channels != expected:
            raise DataError(f"'{data_name}' has {dataset.channels}-channel images but the encoder expects {expected}.",
                            "pass images of the kind the encoder was trained on.")
