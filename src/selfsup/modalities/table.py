"""Tables: float32 rows (N, F) of numeric values and categorical codes, SCARF's corruption, an MLP.

Reader: CSV/TSV/parquet (``data/table.py``) and the named table ``adult``. The encoding of the
columns (``TableSchema``) is inferred from the training table and saved with the encoder, so new
files are encoded alike. Views: ``views/table.py``. Backbone: ``mlp``.
"""
from __future__ import annotations

from ..errors import DataError
from ..registry import register
from ..views import TableViewConfig
from .base import Modality


@register("modality", "table")
class Table(Modality):
    name = "table"
    noun, nouns = "row", "rows"
    unreadable = "broken row(s)"
    provides = ()  # rows hold category codes: no pixels to transform, and mixing codes makes no category
    default_backbone = "mlp"
    input_keys = ("in_channels", "cardinalities")
    view_config = TableViewConfig
    presets = ("scarf",)
    formats = "tables (.csv, .tsv, .parquet)"
    priority = 10
    test_split_hint = ("a labelled table (.csv, .tsv or .parquet) with the same columns; when pretraining, "
                       "--set data.test_split=test.csv")

    @classmethod
    def claims(cls, path: str) -> bool:
        from ..data.table import is_table_file

        return is_table_file(path)

    @classmethod
    def load(cls, path: str, split: str, label=None, schema=None, categorical=(), numeric=(), **_):
        from ..data.table import load_table

        return load_table(path, label=label, schema=schema, categorical=tuple(categorical), numeric=tuple(numeric))

    @classmethod
    def from_samples(cls, samples, labels, ids, name, source, classes=None, schema=None):
        from ..data.table import TableDataset

        return TableDataset(samples, labels, ids, name, source, schema)

    # ------------------------------------------------------------------ views

    @classmethod
    def preset_config(cls, preset: str, dataset, layout: dict):
        from ..views import scarf_views

        return scarf_views()

    @classmethod
    def make_views(cls, config, dataset, mean, std, device):
        from ..views import TableViews

        numeric = [c.kind == "numeric" for c in dataset.schema.columns]
        pool = dataset.values if device is None else dataset.values.to(device)
        return TableViews(config, mean, std, pool, numeric)

    @classmethod
    def eval_views(cls, encoder, dataset):
        # Every view corrupted: invariance between two corrupted copies, not to the clean anchor.
        import dataclasses

        from ..views import TableViews, scarf_views

        numeric = [c.kind == "numeric" for c in dataset.schema.columns]
        config = dataclasses.replace(scarf_views(corrupt_first=True), n_global=2, n_local=0)
        return TableViews(config, encoder.mean.flatten().tolist(), encoder.std.flatten().tolist(), dataset.values,
                          numeric)

    # ------------------------------------------------------------------ the encoder

    @classmethod
    def schema_from_dict(cls, data: dict):
        from ..data.table import TableSchema

        return TableSchema.from_dict(data)

    # ------------------------------------------------------------------ checks

    @classmethod
    def check_encoder_input(cls, encoder, dataset, data_name: str) -> None:
        expected = encoder.mean.numel()
        if dataset.values.shape[1] != expected:
            raise DataError(f"'{data_name}' has {dataset.values.shape[1]} feature columns but the encoder expects {expected}.",
                            "pass a table with the columns the encoder was trained on.")
