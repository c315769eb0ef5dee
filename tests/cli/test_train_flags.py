"""`kiln train` flags are overrides of the canonical config, nothing more."""

from __future__ import annotations

import argparse

import pytest

from kiln.cli.common import load_canonical_config
from kiln.cli.errors import CLIError
from kiln.cli.train import add_parser, apply_train_args


def _args(*argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_parser(sub, "train")
    return parser.parse_args(["train", "cfg.py", *argv])


@pytest.fixture
def cfg_path(tmp_path):
    path = tmp_path / "mmcv_cfg.py"
    path.write_text("model = dict(type='X')\n"
                    "data = dict(samples_per_gpu=2, workers_per_gpu=0, train=dict(type='D'),\n"
                    "            val=dict(type='D'))\n"
                    "evaluation = dict(interval=2, metric='bbox')\n"
                    "optimizer = dict(type='SGD', lr=0.1)\n"
                    "total_epochs = 4\nseed = 1\n")
    return str(path)


def test_flags_become_canonical_keys(cfg_path, tmp_path):
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"")
    cfg = load_canonical_config(cfg_path)
    args = _args("--seed", "7", "--deterministic", "--device", "cuda:1", "--amp", "--load-from", str(ckpt),
                 "--resume-from", str(ckpt), "--work-dir", str(tmp_path / "out"))
    cfg = apply_train_args(cfg, args, cfg_path)
    assert cfg.randomness == dict(seed=7, deterministic=True)  # the flag wins over seed = 1
    assert cfg.device == "cuda:1" and cfg.optim_wrapper.type == "AmpOptimWrapper"
    assert cfg.load_from == str(ckpt) and cfg.resume == str(ckpt) and cfg.work_dir == str(tmp_path / "out")
    assert "seed" not in cfg and "resume_from" not in cfg  # only canonical keys


def test_no_validate_removes_validation_but_keeps_the_test_metric(cfg_path):
    cfg = apply_train_args(load_canonical_config(cfg_path), _args("--no-validate"), cfg_path)
    assert "val_evaluator" not in cfg and "eval" not in cfg.default_hooks
    assert cfg.test_evaluator == dict(metric="bbox")


def test_amp_without_an_optimizer_is_an_error(tmp_path):
    path = tmp_path / "no_opt.py"
    path.write_text("model = dict(type='X')\n")
    with pytest.raises(CLIError, match="--amp needs an optimizer"):
        apply_train_args(load_canonical_config(str(path)), _args("--amp"), str(path))
