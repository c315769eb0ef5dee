"""A wrongly typed config value is refused naming the key the user wrote (never a key kiln derived from
it, never a TypeError from deep inside torch), and ``--cfg-options`` reads ``dict(...)`` values."""

from __future__ import annotations

import pytest
import torch

from kiln.cli import main
from kiln.config.dialects import to_canonical
from kiln.config.errors import ConfigError
from kiln.config.overrides import parse_cfg_options, parse_value
from kiln.engine.optim import build_optimizer

CFG = "kiln::shapes/retinanet_r18_fpn_shapes.py"


def _mmcv(**over):
    cfg = dict(model=dict(type="RetinaNet"), data=dict(samples_per_gpu=2, workers_per_gpu=0,
                                                        train=dict(type="CocoDataset")),
               optimizer=dict(type="SGD", lr=0.01), total_epochs=12)
    cfg.update(over)
    return cfg


@pytest.mark.parametrize("over, message", [
    (dict(data=dict(samples_per_gpu="two", train={})),
     "data.samples_per_gpu must be an integer >= 1, got 'two'"),
    (dict(data=dict(samples_per_gpu=0, train={})), "data.samples_per_gpu must be an integer >= 1, got 0"),
    (dict(data=dict(imgs_per_gpu=1.5, train={})), "data.imgs_per_gpu must be an integer >= 1, got 1.5"),
    (dict(data=dict(workers_per_gpu=-1, train={})), "data.workers_per_gpu must be an integer >= 0"),
    (dict(data=dict(train={}, val=dict(samples_per_gpu="x"))), "data.val.samples_per_gpu must be an integer"),
    (dict(total_epochs="12"), "total_epochs must be an integer >= 1, got '12' (str)"),
    (dict(total_epochs=None, runner=dict(type="IterBasedRunner", max_iters=1.5)),
     "runner.max_iters must be an integer >= 1, got 1.5"),
    (dict(log_config=dict(interval=1, hooks=["dict(type='TextLoggerHook')"])),
     "log_config.hooks[0] must be a dict"),
    (dict(optimizer="SGD"), "optimizer must be a dict such as dict(type='SGD'"),
    (dict(evaluation=dict(interval="1")), "evaluation.interval must be an integer"),
])
def test_mmcv_values_of_the_wrong_type_name_the_key_as_written(over, message):
    with pytest.raises((ValueError, TypeError)) as info:
        to_canonical(_mmcv(**over))
    assert message in str(info.value)
    assert "train_dataloader" not in str(info.value) and "batch_size" not in str(info.value)


def test_an_integral_float_is_an_integer():
    assert to_canonical(_mmcv(total_epochs=12.0))["train_cfg"]["max_epochs"] == 12


@pytest.mark.parametrize("runner, total, expect", [
    (dict(max_iters=100), None, dict(type="IterBasedTrainLoop", max_iters=100)),  # type implied by max_iters
    (dict(max_epochs=3), None, dict(type="EpochBasedTrainLoop", max_epochs=3)),
])
def test_the_runner_type_follows_from_its_length_key(runner, total, expect):
    assert to_canonical(_mmcv(total_epochs=total, runner=runner))["train_cfg"] == expect


@pytest.mark.parametrize("runner, total, message", [
    (dict(max_iters=100), 12, "the config trains by epochs"),  # MMCV would silently train 12 epochs
    (dict(type="EpochBasedRunner", max_iters=100), None, "use type='IterBasedRunner'"),
    (dict(max_iters=100, max_epochs=2), None, "both max_iters and max_epochs"),
    (dict(type="IterBasedRunner", max_iters=100, max_epochs=2), None, "drop runner.max_epochs"),
])
def test_a_length_key_the_runner_would_ignore_is_refused(runner, total, message):
    with pytest.raises(ValueError, match=message):
        to_canonical(_mmcv(total_epochs=total, runner=runner))


@pytest.mark.parametrize("cfg, message", [
    (dict(type="SGD", lr="abc"), "optimizer SGD: lr must be a number, got 'abc'"),
    (dict(type="SGD", lr=0.1, momentum="0.9"), "optimizer SGD: momentum must be a number"),
    (dict(type="AdamW", lr=0.1, betas=(0.9,)), "betas must be 2 numbers such as (0.9, 0.999)"),
])
def test_optimizer_hyperparameters_of_the_wrong_type_are_named(cfg, message):
    with pytest.raises(ValueError) as info:
        build_optimizer(torch.nn.Linear(2, 2), cfg)
    assert message in str(info.value)


def test_well_typed_optimizers_still_build():
    cfg = dict(type="AdamW", lr=1e-3, betas=[0.9, 0.99], weight_decay=0)
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    assert tuple(opt.defaults["betas"]) == (0.9, 0.99)


def test_cfg_options_read_dict_calls_without_calling_anything():
    assert parse_value("[dict(type='TextLoggerHook'), dict(type='T', interval=5, x=(1, None))]") == [
        {"type": "TextLoggerHook"}, {"type": "T", "interval": 5, "x": (1, None)}]
    with pytest.raises(ConfigError, match="--cfg-options a: .*'foo' is not a literal"):
        parse_cfg_options(["a=dict(b=foo)"])
    with pytest.raises(ConfigError, match="__import__"):
        parse_value("dict(a=__import__('os').system('true'))")


@pytest.mark.parametrize("option, message", [
    ("data.samples_per_gpu=two", "data.samples_per_gpu must be an integer >= 1, got 'two'"),
    ("optimizer.lr=abc", "optimizer AdamW: lr must be a number, got 'abc'"),
    ("runner.max_iters=5", "runner.max_iters=5 with total_epochs=6"),
])
def test_the_command_line_names_the_override(tmp_path, capsys, option, message, monkeypatch):
    monkeypatch.setenv("KILN_DATA", str(tmp_path / "data"))
    code = main(["train", CFG, "--work-dir", str(tmp_path / "w"), "--cfg-options", option,
                 "data.train.num_images=2", "data.val.num_images=2", "data.workers_per_gpu=0"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not list((tmp_path / "w").glob("*.pth"))
