"""The seeds' MMCV 1.x runner samples, imports swapped only, run as scripts (tests/fixtures/mmcv_runner/)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mmcv_runner"
REPO = Path(__file__).resolve().parents[2]

# The config seed 000's script loads by name: a small Faster R-CNN (ResNet-18 FPN) on 102 generated
# 64x64 shapes images, one epoch of 51 iterations (batch 2, MMDetection's default loader settings).
FASTER_RCNN_CFG = """
_base_ = 'kiln::shapes/faster_rcnn_r18_fpn_shapes.py'
data = dict(train=dict(num_images=102, image_size=64))
runner = dict(type='EpochBasedRunner', max_epochs=1)
workflow = [('train', 1)]
train_cfg = {{_base_.model.train_cfg}}
test_cfg = {{_base_.model.test_cfg}}
"""


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        KILN_DATA=str(cwd / "data"),
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(FIXTURES / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_seed000_demo_hook_runner_trains_a_detector_and_its_hook_prints_real_losses(tmp_path):
    (tmp_path / "faster_rcnn_r50_fpn.py").write_text(FASTER_RCNN_CFG)
    proc = _run("seed000_demo_hook_runner.py", cwd=tmp_path)
    printed = re.findall(r"^\[Iter (\d+)\] loss=(\S+)$", proc.stdout, re.M)
    assert [int(i) for i, _ in printed] == [0, 50]  # every 50 iterations, iteration 0 included
    losses = [float(v) for _, v in printed]
    assert all(math.isfinite(v) and v > 0 for v in losses) and losses[0] != losses[1]
    assert (tmp_path / "work_dirs" / "demo").is_dir()


def _model_state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_seed004_runner_steps_run_and_resume_to_the_same_weights(tmp_path):
    full = _run("seed004_runner.py", "full", "4", cwd=tmp_path).stdout
    assert "val after epoch 3" in full and "val after epoch 4" in full  # ('train', 3), ('val', 1) + the end
    assert "epoch 3 iter 18 lr 0.00500" in full  # lr_config step=[2]
    _run("seed004_runner.py", "part", "2", cwd=tmp_path)
    resumed = _run("seed004_runner.py", "part", "4", "--resume", "part/latest.pth", cwd=tmp_path).stdout
    assert "epoch 1 " not in resumed and "epoch 3 iter 18" in resumed
    a, b = _model_state(tmp_path / "full" / "epoch_4.pth"), _model_state(tmp_path / "part" / "epoch_4.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    checksum = re.compile(r"^checksum (\S+)$", re.M)
    assert checksum.search(full).group(1) == checksum.search(resumed).group(1)
