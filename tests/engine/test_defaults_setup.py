"""default_setup / default_argument_parser / seed_all_rng."""

from __future__ import annotations

import logging
import os
import random

import pytest
import torch

from kiln.config import Config, get_cfg
from kiln.engine.defaults import default_argument_parser, default_setup, seed_all_rng


@pytest.fixture(autouse=True)
def _restore_kiln_logger():
    """default_setup configures the 'kiln' logger; put it back so later tests' caplog still works."""
    log = logging.getLogger("kiln")
    saved = (list(log.handlers), log.propagate, log.level)
    yield
    for h in list(log.handlers):
        if h not in saved[0]:
            log.removeHandler(h)
            h.close()
    log.propagate, log.level = saved[1], saved[2]


def test_seed_all_rng_makes_python_numpy_torch_repeatable():
    import numpy as np

    seed_all_rng(11)
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_all_rng(11)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == a
    assert isinstance(seed_all_rng(None), int)


def test_argument_parser_takes_detectron2_flags_and_trailing_overrides():
    args = default_argument_parser().parse_args(
        ["--config-file", "c.yaml", "--resume", "--num-gpus", "2", "SOLVER.BASE_LR", "0.1"]
    )
    assert args.config_file == "c.yaml" and args.resume and args.num_gpus == 2
    assert args.opts == ["SOLVER.BASE_LR", "0.1"]


def test_default_setup_creates_the_work_dir_log_and_config_dump_and_seeds(tmp_path):
    cfg = Config(dict(work_dir=str(tmp_path / "run"), seed=3, model=dict(type="X")))
    default_setup(cfg)
    x = float(torch.rand(1))
    assert os.path.isfile(tmp_path / "run" / "log.txt")
    assert "model" in (tmp_path / "run" / "config.py").read_text()
    seed_all_rng(3)
    assert float(torch.rand(1)) == x


def test_default_setup_reads_detectron2_output_dir(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "d2")
    cfg.SEED = 5
    default_setup(cfg)
    assert os.path.isfile(tmp_path / "d2" / "config.yaml") and os.path.isfile(tmp_path / "d2" / "log.txt")
