"""Runner.from_cfg with the seed-001 schema (test-registered model, dataset and evaluator)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor  # noqa: E402

from kiln.config import Config  # noqa: E402
from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import CheckpointHook, EvalHook, TextLoggerHook, ValLossHook  # noqa: E402
from kiln.registry import DATASETS, EVALUATORS, MODELS  # noqa: E402


@MODELS.register_module(force=True)
class CfgToyDetector(ToyRegressor):
    """Accepts the seed's train_cfg/test_cfg like a detector."""

    def __init__(self, hidden=4, train_cfg=None, test_cfg=None, pretrained=None):
        super().__init__()
        self.train_cfg, self.test_cfg = train_cfg, test_cfg


@DATASETS.register_module(force=True)
class CfgToyDataset(torch.utils.data.Dataset):
    def __init__(self, n=16, pipeline=None, test_mode=False):
        g = torch.Generator().manual_seed(2)
        self.items = [{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)} for _ in range(n)]
        self.test_mode = test_mode

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


EVALUATORS.register_module(name="CfgToyEvaluator", module=MSEEvaluator, force=True)

SEED_STYLE = """
model = dict(type='CfgToyDetector', hidden=4)
train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5))
test_cfg = dict(score_thr=0.05)
dataset_type = 'CfgToyDataset'
data = dict(
    imgs_per_gpu=4,
    workers_per_gpu=0,
    train=dict(type=dataset_type, n=16),
    val=dict(type=dataset_type, n=8),
    test=dict(type=dataset_type, n=8))
evaluation = dict(type='CfgToyEvaluator', interval=1, save_best='mse')
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=5, warmup_ratio=1.0 / 3, step=[2])
checkpoint_config = dict(interval=1)
log_config = dict(interval=2, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
total_epochs = 3
dist_params = dict(backend='gloo')
log_level = 'INFO'
work_dir = '{work_dir}'
load_from = None
resume_from = None
workflow = [('train', 1)]
seed = 0
"""


def _cfg(tmp_path, text=SEED_STYLE, **fmt):
    path = tmp_path / "cfg.py"
    path.write_text(text.format(work_dir=str(tmp_path / "work"), **fmt))
    return Config.fromfile(str(path))


def test_seed_001_schema_builds_and_trains(tmp_path):
    runner = Runner.from_cfg(_cfg(tmp_path))
    model = runner.unwrapped_model
    assert isinstance(model, CfgToyDetector) and model.train_cfg["assigner"]["pos_iou_thr"] == 0.5
    assert model.test_cfg == {"score_thr": 0.05}
    assert runner.max_epochs == 3 and runner.epoch_length == 4
    assert runner.optim_wrapper._clip == ("norm", 35.0, 2.0)
    kinds = [type(h).__name__ for h in runner.hooks]
    assert {"TextLoggerHook", "TensorboardLoggerHook", "EvalHook", "CheckpointHook"} <= set(kinds)
    assert runner.schedule_set.values_at(0)["lr"][0] == pytest.approx(0.01 / 3)
    assert runner.schedule_set.values_at(8)["lr"][0] == pytest.approx(0.001)  # epoch 2
    runner.train()
    work = tmp_path / "work"
    assert {"epoch_1.pth", "epoch_2.pth", "epoch_3.pth", "metrics.jsonl"} <= set(os.listdir(work))
    assert any(p.startswith("best_mse_epoch_") for p in os.listdir(work))
    ckpt = torch.load(work / "epoch_3.pth", weights_only=True)
    assert "CfgToyDetector" in ckpt["meta"]["config"]
    rows = [json.loads(line) for line in open(work / "metrics.jsonl")]
    assert any("mse" in r for r in rows)
    assert runner.test()["mse"] >= 0


def test_resume_from_in_the_config_resumes(tmp_path):
    Runner.from_cfg(_cfg(tmp_path)).train()
    text = SEED_STYLE.replace("resume_from = None", "resume_from = '{work_dir}/epoch_2.pth'").replace(
        "total_epochs = 3", "total_epochs = 4"
    )
    runner = Runner.from_cfg(_cfg(tmp_path, text))
    starts = []
    runner.register_callback(lambda r: starts.append((r.epoch, r.iter)), "before_train")
    runner.train()
    assert starts == [(2, 8)] and runner.iter == 16


def test_iter_based_runner_and_mmengine_spellings(tmp_path):
    text = """
model = dict(type='CfgToyDetector')
data = dict(samples_per_gpu=2, workers_per_gpu=0, train=dict(type='CfgToyDataset', n=8))
runner = dict(type='IterBasedRunner', max_iters=7)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=0.001), clip_grad=None)
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, end=3)]
default_hooks = dict(logger=dict(type='LoggerHook', interval=3),
                     checkpoint=dict(type='CheckpointHook', interval=5))
work_dir = '{work_dir}'
"""
    runner = Runner.from_cfg(_cfg(tmp_path, text))
    assert runner.max_iters == 7 and not runner.by_epoch
    assert type(runner.optim_wrapper.optimizer).__name__ == "AdamW"
    runner.train()
    assert {"iter_5.pth", "iter_7.pth"} <= set(os.listdir(tmp_path / "work"))


def test_missing_training_length_says_how_to_give_it(tmp_path):
    text = SEED_STYLE.replace("total_epochs = 3", "")
    with pytest.raises(KeyError, match="total_epochs=12, or runner=dict"):
        Runner.from_cfg(_cfg(tmp_path, text))


def test_workflow_val_phase_logs_val_losses_and_the_evaluator_keeps_its_own_interval(tmp_path):
    # MMCV: ('val', 1) after ('train', 2) is a validation-loss pass every 2 epochs (ValLossHook);
    # the evaluator (EvalHook) comes from val_evaluator/evaluation with its own interval, not from workflow.
    text = SEED_STYLE.replace("workflow = [('train', 1)]", "workflow = [('train', 2), ('val', 1)]").replace(
        "evaluation = dict(type='CfgToyEvaluator', interval=1, save_best='mse')",
        "val_evaluator = dict(type='CfgToyEvaluator')",
    )
    runner = Runner.from_cfg(_cfg(tmp_path, text))
    vl = runner.get_hook(ValLossHook)
    assert vl is not None and (vl.interval, vl.length) == (2, 1)
    ev = runner.get_hook(EvalHook)
    assert ev is not None and ev.interval == 1
    assert isinstance(runner.get_hook(CheckpointHook), CheckpointHook)
    assert isinstance(runner.get_hook(TextLoggerHook), TextLoggerHook)
    # Without evaluation/val_evaluator, a workflow val phase builds no EvalHook at all.
    text = SEED_STYLE.replace("workflow = [('train', 1)]", "workflow = [('train', 2), ('val', 1)]").replace(
        "evaluation = dict(type='CfgToyEvaluator', interval=1, save_best='mse')",
        "test_evaluator = dict(type='CfgToyEvaluator')",
    )
    runner = Runner.from_cfg(_cfg(tmp_path, text))
    assert runner.get_hook(EvalHook) is None and runner.get_hook(ValLossHook) is not None
