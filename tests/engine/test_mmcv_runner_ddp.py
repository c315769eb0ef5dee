"""The MMCV EpochBasedRunner under 2 gloo processes: identical weights, val-phase means over all ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

_SCRIPT = """
import json, sys
sys.path.insert(0, {test_dir!r})
import torch
from kiln.config import Config
from kiln.engine import EpochBasedRunner, Hook
from kiln.engine.launch import init_from_env
from mmcv_toys import KilnToy, MMCVToy, PairDataset

rank, world_size = init_from_env(backend="gloo")

class KeepVal(Hook):
    def after_val_epoch(self, runner):
        self.means = dict(runner.log_buffer.output)

torch.manual_seed(0)
model = KilnToy()
runner = EpochBasedRunner(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), work_dir={work!r},
                          max_epochs=1, cfg=Config(dict(data=dict(samples_per_gpu=2, workers_per_gpu=0))))
keep = runner.register_hook(KeepVal())
runner.run([PairDataset(16), PairDataset(8, seed=2)], [("train", 1), ("val", 1)])
torch.save(model.state_dict(), {out!r} + f"/weights{{rank}}.pt")
refused = ""
try:
    m = MMCVToy()
    EpochBasedRunner(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), max_epochs=1).run(
        [PairDataset(8)], [("train", 1)])
except RuntimeError as e:
    refused = str(e)
result = dict(val=keep.means, iters=runner.iter, refused=refused)
json.dump(result, open({out!r} + f"/rank{{rank}}.json", "w"))
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("mmcv_ddp")
    script = out / "train.py"
    script.write_text(
        _SCRIPT.format(test_dir=os.path.dirname(__file__), work=str(out / "work"), out=str(out))
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_ranks_train_identical_weights_on_their_shards(out):
    w0, w1 = (torch.load(out / f"weights{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["iters"] for r in results] == [4, 4]  # 16 samples, 2 per rank and step, 2 ranks


def test_val_phase_means_cover_every_sample_of_every_rank(out):
    sys.path.insert(0, os.path.dirname(__file__))
    from mmcv_toys import KilnToy, PairDataset

    model = KilnToy()
    model.load_state_dict(torch.load(out / "weights0.pt", weights_only=True))
    val = PairDataset(8, seed=2)
    with torch.no_grad():
        expected = float(((model.fc(val.x) - val.y) ** 2).mean())
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["val"] == results[1]["val"]
    assert results[0]["val"]["loss"] == pytest.approx(expected, rel=1e-5)


def test_an_mmcv_train_step_under_ddp_is_refused(out):
    refused = json.loads((out / "rank0.json").read_text())["refused"]
    assert "MMCV-style model.train_step under distributed training is not supported" in refused
