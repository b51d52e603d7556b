import pytest

from selfsup import config as C
from selfsup.errors import ConfigError


def test_defaults_and_overrides_compose():
    cfg = C.load(overrides=["optim.lr=1e-3", "method.temperature=0.2", "train.precision=fp32"], train__steps=7)
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.method.options == {"temperature": 0.2}
    assert cfg.train.steps == 7 and cfg.train.precision == "fp32"


def test_yaml_file_and_flag_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 50\n  batch_size: 32\nmethod:\n  name: byol\n  base_momentum: 0.9\n")
    cfg = C.load(path, ["train.steps=60"], train__batch_size=16)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.method.name) == (60, 16, "byol")
    assert cfg.method.options == {"base_momentum": 0.9}


def test_round_trip_through_dict():
    cfg = C.load(overrides=["optim.betas=[0.8, 0.99]", "eval.protocols=[knn]"])
    assert C.from_dict(C.to_dict(cfg)) == cfg


@pytest.mark.parametrize("data,needle", [
    ({"optim": {"lrr": 1}}, "unknown config key 'optim.lrr'. Did you mean 'lr'?"),
    ({"trian": {}}, "Did you mean 'train'?"),
    ({"train": {"steps": "many"}}, "train.steps must be an integer"),
    ({"train": {"steps": 1.5}}, "train.steps must be an integer"),
    ({"train": {"steps": 0}}, "train.steps=0 is out of range"),
    ({"optim": {"name": "adam"}}, "Did you mean 'adamw'?"),
    ({"optim": {"betas": [0.9]}}, "optim.betas needs 2 values"),
    ({"train": {"channels_last": "maybe"}}, "must be true or false"),
    ({"optim": {"final_lr_ratio": 2}}, "out of range"),
])
def test_bad_values_name_the_key_and_fix(data, needle):
    with pytest.raises(ConfigError) as info:
        C.from_dict(data)
    assert needle in str(info.value)
    assert "Fix:" in str(info.value)


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        C.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.load(bad)


def test_override_needs_equals():
    with pytest.raises(ConfigError, match="has no '='"):
        C.load(overrides=["optim.lr"])
