"""The runner builder reads only the canonical schema and applies everything a config says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator  # noqa: E402

from kiln.config import Config  # noqa: E402
from kiln.config.dialects import to_canonical  # noqa: E402
from kiln.engine import Runner  # noqa: E402
from kiln.engine.runner_builder import build_runner_from_canonical  # noqa: E402
from kiln.registry import DATASETS, EVALUATORS, MODELS, RUNNERS  # noqa: E402


@MODELS.register_module(force=True)
class CanonToyNet(nn.Module):
    """A 'backbone' and a 'head', so one part can be frozen."""

    def __init__(self, train_cfg=None, test_cfg=None):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 1)

    def forward(self, batch):
        x = torch.stack([s["x"] for s in batch])
        pred = self.head(self.backbone(x))
        if self.training:
            return {"loss": ((pred - torch.stack([s["y"] for s in batch])) ** 2).mean()}
        return [{"pred": p} for p in pred]


@DATASETS.register_module(force=True)
class CanonToyData(torch.utils.data.Dataset):
    def __init__(self, n=16, pipeline=None, test_mode=False):
        g = torch.Generator().manual_seed(3)
        self.items = [{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)} for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


EVALUATORS.register_module(name="CanonToyEvaluator", module=MSEEvaluator, force=True)


@RUNNERS.register_module(force=True)
class CanonTaggedRunner(Runner):
    """A runner subclass chosen by ``runner_type``."""


def _canonical(tmp_path, **extra):
    cfg = dict(
        model=dict(type="CanonToyNet"),
        train_dataloader=dict(batch_size=4, num_workers=0, dataset=dict(type="CanonToyData")),
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=0.01)),
        param_scheduler=[dict(type="MultiStepLR", milestones=[1], gamma=0.5)],
        work_dir=str(tmp_path / "work"),
    )
    cfg.update(extra)
    return cfg


def test_a_dialect_key_reaching_the_builder_is_refused_by_name(tmp_path):
    cfg = _canonical(tmp_path, lr_config=dict(policy="step", step=[1]))
    with pytest.raises(KeyError, match=r"outside the canonical run schema: \['lr_config'\].*to_canonical"):
        build_runner_from_canonical(cfg)
    cfg = _canonical(tmp_path, train_cfg=dict(assigner=dict(type="MaxIoUAssigner")))
    with pytest.raises(KeyError, match="not a loop config.*model.train_cfg"):
        build_runner_from_canonical(cfg)


def test_frozen_modules_from_the_config_are_frozen_by_runner_from_cfg(tmp_path):
    runner = Runner.from_cfg(Config(_canonical(tmp_path, frozen_modules=["backbone"])))
    model = runner.unwrapped_model
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.detach().clone()
    runner.train()
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())  # BN stats too
    assert not torch.equal(model.head.weight, head_before)
    model.train()
    assert model.head.training and not model.backbone.training  # the frozen part stays in eval mode


def test_frozen_modules_naming_a_missing_module_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="no submodule 'neck'"):
        Runner.from_cfg(Config(_canonical(tmp_path, frozen_modules=["neck"])))


def test_runner_type_builds_the_registered_runner_class(tmp_path):
    assert type(Runner.from_cfg(Config(_canonical(tmp_path, runner_type="CanonTaggedRunner")))) is \
        CanonTaggedRunner
    assert type(Runner.from_cfg(Config(_canonical(tmp_path)))) is Runner


def test_randomness_seed_is_applied_by_the_builder(tmp_path):
    def init(seed, before):
        torch.manual_seed(before)  # whatever the process did before must not matter
        r = Runner.from_cfg(Config(_canonical(tmp_path, randomness=dict(seed=seed))))
        return r.unwrapped_model.head.weight.detach().clone()

    assert torch.equal(init(5, before=1), init(5, before=2))
    assert not torch.equal(init(5, before=1), init(6, before=1))


def test_mmcv_and_canonical_spellings_of_one_run_train_identically(tmp_path):
    mmcv = dict(
        model=dict(type="CanonToyNet"),
        data=dict(samples_per_gpu=4, workers_per_gpu=0, train=dict(type="CanonToyData")),
        total_epochs=2,
        optimizer=dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=0.01),
        lr_config=dict(policy="step", step=[1], gamma=0.5),
        seed=0,
        work_dir=str(tmp_path / "a"),
    )
    canonical = _canonical(tmp_path, randomness=dict(seed=0), work_dir=str(tmp_path / "b"))
    a, b = Runner.from_cfg(Config(mmcv)), Runner.from_cfg(Config(canonical))
    for r in (a, b):
        r.train()
    assert a.iter == b.iter == 8
    sa, sb = a.unwrapped_model.state_dict(), b.unwrapped_model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert to_canonical(mmcv)["train_cfg"] == canonical["train_cfg"]


# ------------------------------------------------------------------ MMEngine runtime keys
def _lr(runner):
    return runner.optim_wrapper.optimizer.param_groups[0]["lr"]


def test_auto_scale_lr_scales_by_total_batch_over_base_batch_size(tmp_path):
    scale = dict(enable=True, base_batch_size=16)
    enabled = Runner.from_cfg(Config(_canonical(tmp_path, auto_scale_lr=scale)))
    assert _lr(enabled) == pytest.approx(0.1 * 4 / 16)  # batch_size 4 on one process
    disabled = Runner.from_cfg(Config(_canonical(tmp_path, auto_scale_lr=dict(scale, enable=False))))
    assert _lr(disabled) == pytest.approx(0.1)
    with pytest.raises(KeyError, match="auto_scale_lr has keys.*'base_lr'"):
        Runner.from_cfg(Config(_canonical(tmp_path, auto_scale_lr=dict(enable=True, base_lr=0.1))))
    with pytest.raises(ValueError, match="base_batch_size=None"):
        Runner.from_cfg(Config(_canonical(tmp_path, auto_scale_lr=dict(enable=True))))


def test_log_processor_window_size_sets_the_logger_smoothing_window(tmp_path):
    cfg = to_canonical(Config(_canonical(tmp_path, log_processor=dict(type="LogProcessor", window_size=7,
                                                                       by_epoch=True))))
    assert cfg["default_hooks"]["logger"]["window"] == 7
    runner = Runner.from_cfg(Config(cfg))
    assert [h.window for h in runner.hooks if type(h).__name__ == "LoggerHook"] == [7]


def test_log_processor_keys_kiln_cannot_honour_are_refused(tmp_path):
    with pytest.raises(ValueError, match="by_epoch=False but the train loop is epoch-based"):
        to_canonical(_canonical(tmp_path, log_processor=dict(by_epoch=False)))
    with pytest.raises(ValueError, match="log_processor.custom_cfg"):
        to_canonical(_canonical(tmp_path, log_processor=dict(custom_cfg=[dict(data_src="loss")])))
    with pytest.raises(ValueError, match="window_size='global'"):
        to_canonical(_canonical(tmp_path, log_processor=dict(window_size="global")))


def test_default_scope_other_than_mmdet_is_refused(tmp_path):
    assert to_canonical(_canonical(tmp_path, default_scope="mmdet"))["model"] == dict(type="CanonToyNet")
    with pytest.raises(ValueError, match="default_scope='mmyolo'.*not part of kiln"):
        to_canonical(_canonical(tmp_path, default_scope="mmyolo"))


def test_mmdet2_opencv_and_mp_keys_become_env_cfg(tmp_path):
    cfg = to_canonical(_canonical(tmp_path, opencv_num_threads=0, mp_start_method="fork"))
    assert cfg["env_cfg"]["mp_cfg"] == dict(opencv_num_threads=0, mp_start_method="fork")
    with pytest.raises(ValueError, match="disagree"):
        to_canonical(_canonical(tmp_path, opencv_num_threads=0,
                                env_cfg=dict(mp_cfg=dict(opencv_num_threads=2))))


def test_config_visualizer_gets_the_config_and_the_logged_scalars(tmp_path):
    import json

    vis = dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")], name="visualizer")
    hooks = dict(logger=dict(type="LoggerHook", interval=1))
    runner = Runner.from_cfg(Config(_canonical(tmp_path, visualizer=vis, default_hooks=hooks)))
    assert runner.visualizer is not None
    runner.train()
    vis_dir = tmp_path / "work" / "vis_data"
    assert "CanonToyNet" in (vis_dir / "config.py").read_text()
    lines = [json.loads(x) for x in (vis_dir / "scalars.json").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == list(range(1, 9))  # 2 epochs x 4 iterations


def test_head_and_dataset_class_counts_are_checked_at_build_in_every_dialect(tmp_path, monkeypatch):
    """No NumClassCheckHook in the config (MMEngine spelling after translation): the builder still refuses a
    head whose num_classes differs from the dataset's classes, naming both."""
    monkeypatch.setenv("KILN_DATA", str(tmp_path / "data"))
    small = ["data.train.num_images=2", "data.train.image_size=32", "data.val.num_images=1",
             "data.val.image_size=32", "data.test.num_images=1", "data.test.image_size=32",
             f"work_dir={tmp_path / 'work'}"]
    cfg = Config.fromfile("kiln::shapes/retinanet_r18_fpn_shapes.py", cfg_options=small)
    assert Runner.from_cfg(cfg).model is not None  # 3 classes, 3 shapes
    cfg = Config.fromfile("kiln::shapes/retinanet_r18_fpn_shapes.py",
                          cfg_options=small + ["model.bbox_head.num_classes=5"])
    with pytest.raises(ValueError, match=r"model\.bbox_head\.num_classes=5 but train_dataloader\.dataset.*3 "
                                         r"classes"):
        Runner.from_cfg(cfg)
