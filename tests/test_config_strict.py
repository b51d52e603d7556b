"""Every config section rejects unknown keys (with the key path and the closest valid key), wrong
types and out-of-range values when the config is built: before any data is read or any file or
run directory is written. (tests/test_config.py covers the basics; this file covers each section.)
"""
from __future__ import annotations

import pytest

from selfsup import config as C
from selfsup.cli import main
from selfsup.errors import ConfigError

UNKNOWN = [
    ({"dataa": {}}, "unknown config key 'dataa'. Did you mean 'data'?"),
    ({"data": {"image_sise": 32}}, "unknown config key 'data.image_sise'. Did you mean 'image_size'?"),
    ({"backbone": {"name": "convnet6", "widht": 8}}, "unknown config key 'backbone.widht' for backbone 'convnet6'. Did you mean 'width'?"),
    ({"method": {"name": "simclr", "temprature": 0.1}}, "unknown config key 'method.temprature' for method 'simclr'. Did you mean 'temperature'?"),
    ({"method": {"aux": [{"name": "augaware", "hiden_dim": 8}]}}, "unknown config key 'method.aux[0].hiden_dim' for auxiliary 'augaware'. Did you mean 'hidden_dim'?"),
    ({"views": {"crop_scal": [0.2, 1.0]}}, "unknown config key 'views.crop_scal'. Did you mean 'crop_scale'?"),
    ({"optim": {"weight_decy": 0.1}}, "unknown config key 'optim.weight_decy'. Did you mean 'weight_decay'?"),
    ({"train": {"chekpoint_every": 5}}, "unknown config key 'train.chekpoint_every'. Did you mean 'checkpoint_every'?"),
    ({"eval": {"knn": 5}}, "unknown config key 'eval.knn'. Did you mean 'knn_k'?"),
]
NAMES = [
    ({"method": {"name": "simclrr"}}, "method.name='simclrr' is not a registered method. Did you mean 'simclr'?"),
    ({"backbone": {"name": "resnett18"}}, "backbone.name='resnett18' is not a registered backbone. Did you mean 'resnet18'?"),
    ({"method": {"aux": [{"name": "augawre"}]}}, "method.aux[0].name='augawre' is not a registered auxiliary. Did you mean 'augaware'?"),
    ({"eval": {"protocols": ["knn", "lineer"]}}, "eval.protocols[1]='lineer' is not a registered protocol. Did you mean 'linear'?"),
    ({"views": {"preset": "simclear"}}, "views.preset='simclear' is not a preset. Did you mean 'simclr'?"),
    ({"optim": {"name": "adam"}}, "optim.name='adam' is not a valid choice. Did you mean 'adamw'?"),
]
TYPES = [
    ({"data": {"image_size": "big"}}, "data.image_size must be an integer"),
    ({"data": {"name": ["a", "b"]}}, "data.name must be a string"),
    ({"backbone": {"width": "wide"}}, "backbone.width must be an integer (default"),
    ({"method": {"temperature": "abc"}}, "method.temperature must be a finite number (default 0.5), got 'abc'"),
    ({"method": {"aux": [{"name": "augaware", "weight": "heavy"}]}}, "method.aux[0].weight must be a finite number >= 0"),
    ({"method": {"aux": "augaware"}}, "method.aux[0] must be a mapping"),
    ({"views": {"crop_scale": 5}}, "views.crop_scale must be a list"),
    ({"views": {"flip_p": "often"}}, "views.flip_p must be a number"),
    ({"optim": {"lr": "fast"}}, "optim.lr must be a number"),
    ({"optim": {"betas": 0.9}}, "optim.betas must be a list"),
    ({"train": {"steps": "many"}}, "train.steps must be an integer"),
    ({"train": {"progress": "sometimes"}}, "train.progress must be true or false"),
    ({"eval": {"knn_k": 2.5}}, "eval.knn_k must be an integer"),
    ({"out": ["runs", "x"]}, "out must be a string"),
    ({"train": 5}, "section 'train' must be a mapping"),
]
RANGES = [
    ({"data": {"image_size": 0}}, "data.image_size=0 is out of range. Fix: use a value >= 1."),
    ({"method": {"aux": [{"name": "augaware", "weight": -0.5}]}}, "method.aux[0].weight must be a finite number >= 0"),
    ({"optim": {"lr": float("nan")}}, "optim.lr=nan is not a finite number"),
    ({"optim": {"lr": -1e-3}}, "optim.lr=-0.001 is out of range"),
    ({"optim": {"betas": [0.9, 1.0]}}, "optim.betas=(0.9, 1.0) is out of range. Fix: use a value >= 0.0 and < 1.0."),
    ({"optim": {"clip_grad": 0}}, "optim.clip_grad=0.0 is out of range. Fix: use a value > 0.0."),
    ({"optim": {"momentum": 1.5}}, "optim.momentum=1.5 is out of range"),
    ({"train": {"threads": 0}}, "train.threads=0 is out of range"),
    ({"train": {"monitor_bank": 0}}, "train.monitor_bank=0 is out of range"),
    ({"train": {"steps": -5}}, "train.steps=-5 is out of range"),
    ({"eval": {"batch_size": 0}}, "eval.batch_size=0 is out of range"),
    ({"eval": {"knn_temperature": 0}}, "eval.knn_temperature=0.0 is out of range. Fix: use a value > 0.0."),
    ({"eval": {"knn_temperature": float("inf")}}, "eval.knn_temperature=inf is not a finite number"),
]


@pytest.mark.parametrize("data,needle", UNKNOWN + NAMES + TYPES + RANGES)
def test_each_section_rejects_bad_keys_types_and_values(data, needle):
    with pytest.raises(ConfigError) as info:
        C.from_dict(data)
    assert needle in str(info.value)
    assert " Fix: " in str(info.value)


def test_valid_options_pass_and_keep_their_values():
    cfg = C.from_dict({"method": {"name": "simclr", "temperature": 1, "aux": [{"name": "augaware", "weight": 0.2}]},
                       "backbone": {"width": 8}, "views": {"crop_scale": [0.3, 1.0]},
                       "eval": {"protocols": ["knn", "rankme"]}, "train": {"threads": 1}})
    assert cfg.method.options == {"temperature": 1} and cfg.backbone.options == {"width": 8}


def _flags(value: str) -> list[str]:
    return ["--set", value]


# One bad value per section, given on the command line. The data path does not exist: a config
# error must win over the data error, showing that nothing was read before the config was checked.
CLI_CASES = [
    (_flags("data.image_size=-2"), "data.image_size=-2"),
    (["--backbone", "resnett18"], "backbone.name='resnett18'"),
    (_flags("backbone.widht=8"), "backbone.widht"),
    (["--method", "byoll"], "method.name='byoll'"),
    (_flags("method.temperature=warm"), "method.temperature"),
    (_flags("method.aux=[{name: augaware, weight: -1}]"), "method.aux[0].weight"),
    (_flags("views.preset=bogus"), "views.preset='bogus'"),
    (_flags("views.solarize_treshold=0.5"), "Did you mean 'solarize_threshold'?"),
    (["--lr", "nan"], "optim.lr=nan"),
    (_flags("optim.betas=[0.9, 2]"), "optim.betas"),
    (["--steps", "0"], "train.steps=0"),
    (_flags("train.threads=0"), "train.threads=0"),
    (_flags("eval.protocols=[knnn]"), "Did you mean 'knn'?"),
    (_flags("eval.batch_size=0"), "eval.batch_size=0"),
]


@pytest.mark.parametrize("flags,needle", CLI_CASES)
def test_cli_rejects_before_reading_data_or_creating_the_run(tmp_path, capsys, flags, needle):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["pretrain", "--data", str(tmp_path / "no-such-data"), "--out", str(out), "--no-progress", *flags])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert info.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and needle in lines[0] and " Fix: " in lines[0]
    assert not out.exists()
