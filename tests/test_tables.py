"""Tables: the CSV/parquet reader (schema, broken rows, bad files), the mlp backbone, SCARF views,
and pretrain -> evaluate -> embed on a real table (scikit-learn's copy of the UCI wine and
breast-cancer data, always installed)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from selfsup.backbones.base import build_backbone
from selfsup.cli import main
from selfsup.data import load_dataset, load_table
from selfsup.data.table import MAX_FIELD, TableSchema
from selfsup.errors import ConfigError, DataError
from selfsup.views import TableViews, scarf_views


def write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def small_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    size = rng.normal(10, 2, size=n).round(3)
    count = rng.integers(0, 5, size=n)
    label = np.where(size > 10, "big", "small")
    return pd.DataFrame({"size": size, "colour": colour, "count": count, "label": label})


@pytest.fixture(scope="module")
def wine_csv(tmp_path_factory):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.sample(frac=1.0, random_state=0)  # classes are sorted in the file
    frame["target"] = frame["target"].map({0: "cultivar_a", 1: "cultivar_b", 2: "cultivar_c"})
    root = tmp_path_factory.mktemp("wine")
    frame.iloc[:120].to_csv(root / "train.csv", index=False)
    frame.iloc[120:].to_csv(root / "test.csv", index=False)
    return root


# ---------------------------------------------------------------- the reader

def test_columns_kinds_codes_fill_and_ids(tmp_path):
    path = write(tmp_path / "t.csv", "size,colour,count,label\n"
                 "1.5,red,3,a\n"
                 "2.5,blue,,b\n"      # missing numeric -> the median of 1.5, 2.5, 4.0 = 2.5
                 ",red,1,a\n"
                 "4.0,?,2,b\n")       # "?" is missing: categorical code 0
    ds = load_table(path)
    assert ds.schema.label == "label" and ds.classes == ["a", "b"]
    kinds = {c.name: c.kind for c in ds.schema.columns}
    assert kinds == {"size": "numeric", "colour": "categorical", "count": "numeric"}
    colour = ds.schema.columns[1]
    assert colour.categories == ("red", "blue")  # most frequent first, ties by name
    assert ds.values.tolist() == [[1.5, 1, 3], [2.5, 2, 2], [2.5, 1, 1], [4.0, 0, 2]]
    assert ds.labels.tolist() == [0, 1, 0, 1]
    assert ds.ids == ["t.csv:2", "t.csv:3", "t.csv:4", "t.csv:5"] and ds.skipped == []
    assert ds.input_spec() == {"in_channels": 3, "cardinalities": [0, 3, 0]}
    mean, std = ds.normalization()
    assert mean[0] == pytest.approx(np.mean([1.5, 2.5, 2.5, 4.0])) and (mean[1], std[1]) == (0.0, 1.0)
    assert std[0] == pytest.approx(np.std([1.5, 2.5, 2.5, 4.0], ddof=1))


def test_broken_rows_are_skipped_counted_and_named(tmp_path):
    rows = [f"{i / 10},{'red' if i % 2 else 'blue'},{i % 3},{'x' if i % 2 else 'y'}" for i in range(200)]
    rows[10] = "1.0,red,2"                      # too few fields (line 12)
    rows[20] = "1.0,red,2,x,extra"              # too many (line 22)
    rows[30] = "abc,red,2,x"                    # not a number in a numeric column (0.5% of the column)
    rows[40] = "1.0,red,2,"                     # no label
    rows[50] = "1.0,re\x00d,2,x"                # a NUL byte
    rows[60] = '1.0,"' + "z" * (MAX_FIELD + 10) + '",2,x'  # a runaway field
    rows[70] = ""                               # a blank line: not a row, not a problem
    rows[80] = '2.0,"red, dark",1,"x"'          # quoted separator: a good row
    path = write(tmp_path / "t.csv", "size,colour,count,label\n" + "\n".join(rows) + "\n")
    ds = load_table(path)
    reasons = dict(ds.skipped)
    assert set(reasons) == {"t.csv:12", "t.csv:22", "t.csv:32", "t.csv:42", "t.csv:52", "t.csv:62"}
    assert "has 3 fields, the header has 4" in reasons["t.csv:12"]
    assert "has 5 fields" in reasons["t.csv:22"]
    assert "'abc' in the numeric column 'size'" in reasons["t.csv:32"]
    assert "no value in the label column 'label'" in reasons["t.csv:42"]
    assert "NUL" in reasons["t.csv:52"]
    assert "field larger than" in reasons["t.csv:62"]
    assert len(ds) == 200 - 6 - 1
    assert "red, dark" in ds.schema.columns[1].categories
    assert all(torch.isfinite(ds.values).all(dim=1))


def test_forced_kinds_and_the_one_percent_rule(tmp_path):
    frame = small_table(50)
    frame["size"] = frame["size"].astype(object)
    frame.loc[3, "size"] = "n.a."  # 2% of 50: the column is then text, unless forced
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    assert load_table(path).schema.columns[0].kind == "categorical"
    forced = load_table(path, numeric=("size",), categorical=("count",))
    assert [c.kind for c in forced.schema.columns] == ["numeric", "categorical", "categorical"]
    assert len(forced) == 49 and "'n.a.' in the numeric column 'size'" in forced.skipped[0][1]
    with pytest.raises(DataError, match="data.numeric names column.*'sise'.*Did you mean 'size'"):
        load_table(path, numeric=("sise",))


def test_schema_reuse_unseen_categories_and_labels(tmp_path):
    train = write(tmp_path / "train.csv", "size,colour,label\n1,red,a\n2,blue,b\n3,red,a\n")
    test = write(tmp_path / "test.csv", "colour,size,label\npurple,5,a\nred,6,c\nblue,x,b\n")
    ds = load_table(train)
    other = load_table(test, schema=ds.schema)
    assert other.schema == ds.schema
    assert other.values.tolist() == [[5.0, 0.0]]  # purple unseen -> 0; column order follows the schema
    reasons = [r for _, r in other.skipped]
    assert any("label 'c', which the training table does not have" in r for r in reasons)
    assert any("'x' in the numeric column 'size'" in r for r in reasons)
    unlabelled = load_table(write(tmp_path / "new.csv", "size,colour\n7,blue\n"), schema=ds.schema)
    assert unlabelled.labels is None and unlabelled.values.tolist() == [[7.0, 2.0]]
    with pytest.raises(DataError, match="lacks the column.*'colour'"):
        load_table(write(tmp_path / "bad.csv", "size,label\n1,a\n"), schema=ds.schema)
    assert TableSchema.from_dict(json.loads(json.dumps(ds.schema.to_dict()))) == ds.schema


def test_parquet_and_csv_and_separators_read_alike(tmp_path):
    frame = small_table(120)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    frame.to_csv(tmp_path / "semi.csv", sep=";", index=False)
    ref = load_table(tmp_path / "t.csv")
    for name in ("t.parquet", "t.tsv", "semi.csv"):
        ds = load_table(tmp_path / name)
        assert ds.schema == ref.schema, name
        assert torch.equal(ds.values, ref.values) and torch.equal(ds.labels, ref.labels), name


def test_not_utf8_is_read_as_windows_1252_with_a_note(tmp_path):
    path = write(tmp_path / "t.csv", "city,n,label\nMünchen,1,a\nZürich,2,b\n", encoding="cp1252")
    ds = load_table(path)
    assert ds.schema.columns[0].categories == ("München", "Zürich")
    assert "not valid UTF-8" in ds.notes[0]


@pytest.mark.parametrize("content, needle", [
    ("", "is empty"),
    ("\n\n  \n", "is empty"),
    ("a,b,label\n", "no usable data rows"),
    ("a,b,label\n1,2\n3\n", "no usable data rows.*has 2 fields"),
    ("a,a,label\n1,2,x\n", "duplicate column names: 'a'"),
    ("a,b,label\n1,2,\n3,4,\n", "no usable data rows.*no value in the label column"),
    ("label\nx\ny\n", "no feature columns"),
])
def test_unreadable_tables_are_data_errors(tmp_path, content, needle):
    with pytest.raises(DataError, match=needle):
        load_table(write(tmp_path / "t.csv", content))


def test_unknown_label_column_and_damaged_parquet(tmp_path):
    path = write(tmp_path / "t.csv", "size,kind\n1,a\n")
    with pytest.raises(DataError, match="no column 'knid'.*Did you mean 'kind'"):
        load_table(path, label="knid")
    assert load_table(path, label="").labels is None
    small_table(20).to_parquet(tmp_path / "t.parquet")
    data = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot be read as parquet"):
        load_table(tmp_path / "cut.parquet")


def test_cli_trains_on_a_table_with_broken_rows_and_lists_them(tmp_path, wine_csv, capsys):
    lines = (wine_csv / "train.csv").read_text().splitlines()
    lines[5] = lines[5] + ",surplus"
    lines[9] = "not,a,row"
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["pretrain", "--data", str(tmp_path / "train.csv"), "--method", "simclr", "--steps", "6",
            "--batch-size", "32", "--out", str(out), "--no-progress", "--set", f"data.test_split={wine_csv / 'test.csv'}",
            "--set", "backbone.width=32", "--set", "backbone.depth=2", "--set", "method.hidden_dim=32",
            "--set", "method.out_dim=16"]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    err = capsys.readouterr().err
    assert "skipped 2 broken row(s)" in err
    assert (out / "skipped.txt").read_text().count("\n") == 2
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["knn"]["accuracy"] <= 1 and results["linear"]["accuracy"] > 0.5
    config = json.loads((out / "encoder" / "encoder.json").read_text())
    assert config["modality"] == "table" and config["schema"]["label"] == "target"
    assert config["backbone"]["name"] == "mlp"


@pytest.mark.parametrize("flags, needle", [
    (["--method", "obow"], "method 'obow' needs images whose pixels can be rotated.*is table data"),
    (["--method", "simclr", "--backbone", "convnet6"], "backbone 'convnet6' encodes image data.*--backbone mlp"),
    (["--method", "simclr", "--set", "method.aux=[{name: pretext}]"], "auxiliary 'pretext' needs images whose pixels"),
    (["--method", "simclr", "--set", "views.crop_scale=[0.2, 1.0]"], "unknown config key 'views.crop_scale'"),
    (["--method", "simclr", "--set", "backbone.cardinalities=[1]"], "unknown config key 'backbone.cardinalities'"),
])
def test_image_only_choices_are_refused_before_any_work(tmp_path, wine_csv, capsys, flags, needle):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(wine_csv / "train.csv"), "--steps", "2", "--batch-size", "16",
              "--out", str(out), "--no-progress", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and __import__("re").search(needle, err), err
    assert not out.exists()


# ---------------------------------------------------------------- backbone and views

def test_mlp_embeds_each_categorical_column_and_clamps_codes():
    torch.manual_seed(0)
    model = build_backbone("mlp", in_channels=3, cardinalities=[0, 3, 5], width=8, depth=1, embed_dim=2)
    assert model.embedding.num_embeddings == 8 and model.dim == 8
    assert model.offsets.tolist() == [0, 3]
    model.eval()
    x = torch.tensor([[0.5, 1.0, 4.0], [0.5, 2.0, 4.0]])
    a, b = model(x)
    assert not torch.equal(a, b)  # the category changes the features
    # a code past the column's cardinality (data the schema did not cover) is clamped, not an index error
    assert torch.equal(model(torch.tensor([[0.5, 2.0, 99.0]])), model(torch.tensor([[0.5, 2.0, 4.0]])))
    with pytest.raises(ConfigError, match="2 column cardinalities for 3 columns"):
        build_backbone("mlp", in_channels=3, cardinalities=[0, 3])


def test_scarf_views_replace_exactly_q_features_from_the_marginals():
    g = torch.Generator().manual_seed(0)
    pool = torch.stack([torch.arange(1000.0), 1000 + torch.arange(1000.0), torch.full((1000,), 7.0),
                        torch.arange(1000.0) % 4, -torch.arange(1000.0)], dim=1)  # (1000, 5); distinct per column
    rows = pool[:64].clone()
    views = TableViews(scarf_views(corruption_rate=0.6), [0.0] * 5, [1.0] * 5, pool)
    (clean, corrupt), params = views(rows, torch.Generator().manual_seed(3))
    assert torch.equal(clean, rows) and params[0]["corrupted"].sum() == 0  # the anchor stays clean
    mask = params[1]["corrupted"].bool()
    assert (mask.sum(dim=1) == math.floor(0.6 * 5)).all()  # exactly q per row
    assert torch.equal(corrupt[~mask], rows[~mask])
    for j in range(5):  # each replacement is a value of the same column, i.e. a draw from its marginal
        assert torch.isin(corrupt[mask[:, j], j], pool[:, j]).all()
    # replacements come from the whole table, not just the batch
    assert (corrupt[mask[:, 0], 0] >= 64).any()
    # uniform subsets: every feature is picked about 60% of the time over many rows
    big = pool.clone()
    _, many = TableViews(scarf_views(), [0.0] * 5, [1.0] * 5, pool)(big, g)
    assert torch.allclose(many[1]["corrupted"].mean(0), torch.full((5,), 0.6), atol=0.05)
    # the same generator state gives the same views; normalization is (x - mean) / std
    again, _ = views(rows, torch.Generator().manual_seed(3))
    assert torch.equal(again[1], corrupt)
    norm = TableViews(scarf_views(corrupt_first=True), [1.0] * 5, [2.0] * 5, pool)
    both, p = norm(rows, torch.Generator().manual_seed(3))
    assert p[0]["corrupted"].sum() > 0
    with pytest.raises(ConfigError, match="corruption_rate"):
        scarf_views(corruption_rate=1.5)


def test_scarf_noise_touches_only_numeric_columns_of_corrupted_views():
    pool = torch.randn(100, 3)
    pool[:, 1] = torch.randint(1, 4, (100,)).float()
    views = TableViews(scarf_views(corruption_rate=0.0, noise_std=0.5), [0.0] * 3, [1.0] * 3, pool,
                       numeric=[True, False, True])
    (clean, noisy), _ = views(pool[:10], torch.Generator().manual_seed(0))
    assert torch.equal(clean, pool[:10]) and torch.equal(noisy[:, 1], pool[:10, 1])
    assert not torch.equal(noisy[:, 0], pool[:10, 0])


# ---------------------------------------------------------------- end to end on real tables

def test_every_table_method_trains_a_few_steps(tmp_path, wine_csv):
    """Every method (and auxiliary) that says it works on tables trains on one: the shared smoke
    test for the table modality; the image-only ones are refused (tested above)."""
    import selfsup
    from selfsup import registry

    small = {"hidden_dim": 32, "out_dim": 16}
    sizes = {"byol": {**small, "pred_hidden_dim": 32}, "simsiam": {**small, "pred_hidden_dim": 16},
             "moco_v2": {**small, "queue_size": 64}, "nnclr": {**small, "queue_size": 64, "pred_hidden_dim": 32},
             "dino": {"hidden_dim": 32, "bottleneck_dim": 16, "out_dim": 64},
             "swav": {"hidden_dim": 32, "out_dim": 16, "num_prototypes": 16, "queue_length": 0},
             "mugs": {"hidden_dim": 32, "bottleneck_dim": 16, "out_dim": 64, "memory_size": 64},
             "msbreg": {**small, "pred_hidden_dim": 32}}
    from selfsup.capabilities import unmet
    from selfsup.modalities import modality_of

    trained = []
    for name in registry.names("method"):
        cls = registry.get("method", name)
        if unmet(cls.requires, modality_of("table"), registry.get("backbone", "mlp")):
            continue
        valid = set(registry.defaults(cls))
        options = {k: v for k, v in sizes.get(name, small).items() if k in valid}
        run = selfsup.pretrain({"data": {"name": str(wine_csv / "train.csv"), "test_split": str(wine_csv / "test.csv")},
                                "backbone": {"name": "mlp", "width": 32, "depth": 2},
                                "method": {"name": name, **options},
                                "train": {"steps": 3, "batch_size": 32, "progress": False, "checkpoint_every": 3},
                                "eval": {"protocols": ["knn"]}, "out": str(tmp_path / name)}, report=False)
        assert 0 <= run.results["knn"]["accuracy"] <= 1, name
        trained.append(name)
    assert {"simclr", "byol", "vicreg", "barlow_twins", "dino", "swav", "supcon"} <= set(trained)


def test_pretrain_evaluate_embed_round_trip(tmp_path, wine_csv, capsys):
    import selfsup

    out = tmp_path / "run"
    run = selfsup.pretrain({"data": {"name": str(wine_csv / "train.csv"), "test_split": str(wine_csv / "test.csv")},
                            "method": {"name": "simclr", "hidden_dim": 64, "out_dim": 32},
                            "backbone": {"name": "mlp", "width": 64, "depth": 2},
                            "train": {"steps": 60, "batch_size": 64, "progress": False, "checkpoint_every": 60},
                            "eval": {"protocols": ["knn", "linear", "rankme", "alignment_uniformity"]},
                            "out": str(out)}, report=True)
    # the wine cultivars are easy: a few steps of SCARF already separate them
    assert run.results["knn"]["accuracy"] > 0.8 and run.results["linear"]["accuracy"] > 0.8
    assert (out / "report.md").is_file()
    assert callable(selfsup.evaluate)  # the function, also after pretrain imported the protocols (selfsup.evaluation)
    again = selfsup.evaluate(out, data=str(wine_csv / "train.csv"), test_split=str(wine_csv / "test.csv"),
                             protocols=["knn", "linear"], device="cpu", report=False)
    assert again["knn"] == run.results["knn"]
    encoder = selfsup.load_encoder(out)
    assert encoder.modality == "table" and encoder.schema.label == "target"
    path = selfsup.embed(out, data=str(wine_csv / "test.csv"), out=tmp_path / "e.npy", device="cpu")
    test = load_dataset(str(wine_csv / "test.csv"), schema=encoder.schema)
    emb = np.load(path)
    assert emb.shape == (len(test), encoder.dim)
    assert np.allclose(emb, encoder(test.values).detach().numpy(), atol=1e-5)
    with pytest.raises(DataError, match="is image data, and the encoder was trained on table data"):
        selfsup.embed(out, data="fashion-mnist", out=tmp_path / "x.npy", device="cpu")


def test_named_adult_splits_when_present():
    try:
        train = load_dataset("adult", root="../shared/datasets")
    except DataError:
        pytest.skip("adult.parquet is not in ../shared/datasets here")
    test = load_dataset("adult", split="test", root="../shared/datasets", schema=train.schema)
    assert (len(train), len(test)) == (32_561, 16_281)
    assert train.classes == ["<=50K", ">50K"] and test.schema == train.schema
    assert train.ids[0] == "adult.parquet:16281"


def test_a_study_on_a_table_runs_every_protocol_that_works_on_features(tmp_path, wine_csv):
    import selfsup
    from selfsup import registry

    out = tmp_path / "run"
    selfsup.pretrain({"data": {"name": str(wine_csv / "train.csv"), "test_split": None},
                      "method": {"name": "simclr", "hidden_dim": 32, "out_dim": 16},
                      "backbone": {"name": "mlp", "width": 32, "depth": 2},
                      "train": {"steps": 4, "batch_size": 32, "progress": False, "checkpoint_every": 4},
                      "out": str(out)}, report=False)
    rows = selfsup.study(out, data=str(wine_csv / "train.csv"), test_split=str(wine_csv / "test.csv"), protocols="all",
                         options={"fewshot": {"episodes": 3, "shots": (1, 5)}, "separability": {"n": 100},
                                  "alignment_uniformity": {"n": 100}, "longtail": {"ratios": (5,)},
                                  "ood": {"k": 5}}, out=tmp_path / "e", quiet=True, embedding_map=False)
    ran = {r["protocol"] for r in rows}
    feature_level = {p for p in registry.names("protocol") if not registry.get("protocol", p).slow} - \
        {"robustness", "adversarial", "multilayer", "ridge"}  # these transform images; ridge needs a target
    assert ran == feature_level
    assert (tmp_path / "e" / "report.html").is_file()


def test_numbers_beyond_float32_are_not_numbers(tmp_path):
    """Values are float32: 1e300 (and inf) would become inf there. In a CSV such a cell makes its row
    broken (skipped and named); in a numeric parquet column it is a missing value (filled), like a
    null. Found by the parquet fuzz test."""
    import pandas as pd

    rows = [f"{i / 10},{i % 3},{'x' if i % 2 else 'y'}" for i in range(400)]  # 2 bad of 400: still a numeric column
    rows[5], rows[6] = "1e300,1,x", "-inf,2,y"
    ds = load_table(write(tmp_path / "t.csv", "size,count,label\n" + "\n".join(rows) + "\n"))
    assert dict(ds.skipped).keys() == {"t.csv:7", "t.csv:8"} and torch.isfinite(ds.values).all()
    assert "'1e300' in the numeric column 'size'" in dict(ds.skipped)["t.csv:7"]
    frame = pd.DataFrame({"size": [0.5, 1e300, 1.5, float("inf"), 2.5], "label": ["a", "b", "a", "b", "a"]})
    frame.to_parquet(tmp_path / "t.parquet")
    ds = load_table(tmp_path / "t.parquet")
    assert len(ds) == 5 and ds.skipped == [] and torch.isfinite(ds.values).all()
    assert ds.values[[1, 3], 0].tolist() == [1.5, 1.5]  # the median of the finite values
