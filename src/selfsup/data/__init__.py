"""Image data: readers for the official formats, image folders and numpy arrays, and a catalogue.

``load_dataset("fashion-mnist")``, ``load_dataset("path/to/folder", split="test")`` and
``load_dataset("images.npz")`` all return an :class:`ImageDataset`.
"""
from .arrays import load_arrays
from .catalogue import dataset_names, describe_datasets, load_dataset, search_dirs
from .cifar import load_cifar10, load_cifar100
from .dataset import ImageDataset
from .folder import IMAGE_EXTENSIONS, load_image_folder
from .idx import load_idx, read_idx
from .stl10 import load_stl10

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "dataset_names",
    "describe_datasets",
    "load_arrays",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_idx",
    "load_image_folder",
    "load_stl10",
    "read_idx",
    "search_dirs",
]
