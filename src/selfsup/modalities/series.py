"""Time series: float32 (N, C, T) with NaN for missing values and padding, augmentations and
crops drawn on the device, dilated CNNs, 1-D ResNets and patch transformers.

Readers: the UCR/UEA archive's ``.ts``, ``.tsv`` and ``.arff`` files and ``.npy``/``.npz`` arrays of
shape (N, C, T) (``data/series.py``); named sets (GunPoint, ...) resolve from the data root,
``$SELFSUP_DATA``, the system and user folders and an installed aeon or sktime. Views:
``views/series.py``. Backbones: ``backbones/series.py``.
"""
from __future__ import annotations

import os

from ..errors import DataError
from ..registry import register
from ..views.series import SeriesViewConfig
from .base import Modality


@register("modality", "series")
class Series(Modality):
    name = "series"
    noun, nouns = "series", "series"
    unreadable = "unreadable series"
    provides = ("mixable",)  # values on a common scale: two series can be mixed
    default_backbone = "ts2vec_cnn"
    input_keys = ("in_channels", "length")
    presets = ("series", "tstcc", "ts2vec", "plain")
    view_config = SeriesViewConfig
    formats = "time series (.ts, .arff and UCR-style *_TRAIN.tsv from the UCR/UEA archive; float .npy/.npz (N, C, T))"
    priority = 5  # before tables: a UCR .tsv is a series file, not a table
    test_split_hint = "a labelled series file of the same archive set (<Name>_TEST.ts), or pass a named set"

    @classmethod
    def claims(cls, path: str) -> bool:
        from ..data.series import is_series_array, is_ucr_tsv

        lower = path.lower()
        if lower.endswith((".ts", ".arff")):
            return True
        if lower.endswith(".tsv"):
            return is_ucr_tsv(path)
        if lower.endswith((".npy", ".npz")):
            return os.path.isfile(path) and is_series_array(path)
        return False

    @classmethod
    def load(cls, path: str, split: str, schema=None, **_):
        from ..data.series import load_series

        return load_series(path, split)

    @classmethod
    def from_samples(cls, samples, labels, ids, name, source, classes=None, schema=None):
        from ..data.series import SeriesDataset

        return SeriesDataset(samples, labels, ids, name, source, classes)

    # ------------------------------------------------------------------ views

    @classmethod
    def auto_preset(cls, dataset, layout: dict) -> str:
        return "plain" if layout.get("n_global", 2) == 1 else "series"

    @classmethod
    def preset_config(cls, preset: str, dataset, layout: dict):
        from ..views.series import plain_views, series_views, ts2vec_views, tstcc_views

        return {"series": series_views, "tstcc": tstcc_views, "ts2vec": ts2vec_views, "plain": plain_views}[preset]()

    @classmethod
    def make_views(cls, config, dataset, mean, std, device):
        from ..views.series import SeriesViews

        return SeriesViews(config, mean, std)

    # ------------------------------------------------------------------ the encoder

    @classmethod
    def stat_shape(cls) -> tuple[int, ...]:
        return (1, -1, 1)

    # ------------------------------------------------------------------ checks

    @classmethod
    def check_compatible(cls, data, reference, what: str) -> None:
        if data.channels != reference.channels:
            raise DataError(f"{what} series have {data.channels} channels but train series {reference.channels}.",
                            "pass series of the same kind as the training set.")

    @classmethod
    def check_encoder_input(cls, encoder, dataset, data_name: str) -> None:
        expected = encoder.mean.numel()
        if dataset.channels != expected:
            raise DataError(f"'{data_name}' has {dataset.channels}-channel series but the encoder expects {expected}.",
                            "pass series of the kind the encoder was trained on.")
