"""Data: readers for the official image formats, image folders, numpy arrays and tables, and a catalogue.

``load_dataset("fashion-mnist")``, ``load_dataset("path/to/folder", split="test")`` and
``load_dataset("images.npz")`` return an :class:`ImageDataset`; ``load_dataset("adult")`` and
``load_dataset("table.csv", label="y")`` a :class:`TableDataset`. Both expose ``modality``,
``samples``, ``labels``, ``ids``, ``classes``, ``skipped``, ``input_spec()`` and ``normalization()``,
which is all the trainer and the evaluation use.
"""
from .arrays import load_arrays
from .catalogue import dataset_names, describe_datasets, load_dataset, search_dirs
from .cifar import load_cifar10, load_cifar100
from .dataset import ImageDataset
from .folder import IMAGE_EXTENSIONS, load_image_folder
from .idx import load_idx, read_idx
from .stl10 import load_stl10
from .table import Column, TableDataset, TableSchema, load_table

__all__ = [
    "Column",
    "IMAGE_EXTENSIONS",
    "ImageDataset",
    "TableDataset",
    "TableSchema",
    "load_table",
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
