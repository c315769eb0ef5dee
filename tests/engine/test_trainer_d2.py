"""Detectron2's trainer API over the Runner: SimpleTrainer + HookBase, DefaultTrainer overrides, resume."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.config import get_cfg  # noqa: E402
from kiln.data import DatasetCatalog, build_train_loader  # noqa: E402
from kiln.engine import get_event_storage  # noqa: E402
from kiln.engine.hooks import CheckpointHook  # noqa: E402
from kiln.engine.trainer import AMPTrainer, DefaultTrainer, HookBase, SimpleTrainer  # noqa: E402
from kiln.registry import META_ARCH_REGISTRY  # noqa: E402


def _infinite(batches):
    while True:
        yield from batches


class StepRecorder(HookBase):
    def __init__(self):
        self.events = []

    def before_train(self):
        self.events.append(("before_train", self.trainer.iter))

    def after_step(self):
        storage = get_event_storage()
        self.events.append(("after_step", self.trainer.iter, storage.iter))

    def after_train(self):
        self.events.append(("after_train", self.trainer.iter))


def test_simple_trainer_runs_run_step_between_hook_calls_with_the_trainer_proxy():
    model = ToyRegressor()
    trainer = SimpleTrainer(model, _infinite(toy_batches(3)), torch.optim.SGD(model.parameters(), lr=0.01))
    rec = StepRecorder()
    trainer.register_hooks([rec, None])
    trainer.train(2, 6)
    assert rec.events[0] == ("before_train", 2) and rec.events[-1] == ("after_train", 6)
    assert [e for e in rec.events if e[0] == "after_step"] == [("after_step", i, i) for i in range(2, 6)]
    trainer.runner.flush_metrics()
    assert trainer.storage.history("total_loss").latest_iter() == 5
    assert "data_time" in trainer.storage.histories()
    hist = {k: [v for v, _ in trainer.storage.history(k).values()]
            for k in ("total_loss", "loss_mse", "loss_l1")}
    assert hist["total_loss"] == pytest.approx([a + b for a, b in zip(hist["loss_mse"], hist["loss_l1"])])


def test_amp_trainer_bf16_on_cpu_trains():
    model = ToyRegressor()
    before = model.fc.weight.detach().clone()
    trainer = AMPTrainer(
        model,
        _infinite(toy_batches(2)),
        torch.optim.SGD(model.parameters(), lr=0.1),
        precision=torch.bfloat16,
    )
    trainer.train(0, 3)
    assert not torch.equal(before, model.fc.weight)
    assert trainer.grad_scaler is None  # bf16 needs no loss scaling
    # The default precision, float16, runs on CPU too (trained in test_amp_fp16_cpu.py).
    fp16 = AMPTrainer(model, [], torch.optim.SGD(model.parameters(), lr=0.1))
    assert fp16.precision is torch.float16 and fp16.grad_scaler.get_scale() == 2.0**16


@META_ARCH_REGISTRY.register(name="ToyMetaArch")
class ToyMetaArch(ToyRegressor):
    """A Detectron2-style meta-architecture: built from the cfg."""

    def __init__(self, cfg):
        super().__init__()


def _register_toy_dataset(name):
    if name not in DatasetCatalog.list():
        g = torch.Generator().manual_seed(4)
        DatasetCatalog.register(
            name,
            lambda: [{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)} for _ in range(12)],
        )


class TextTrainer(DefaultTrainer):
    """The seed's example: only the train loader is customised."""

    built_loader = 0

    @classmethod
    def build_train_loader(cls, cfg):
        cls.built_loader += 1
        return build_train_loader(
            DatasetCatalog.get("toy_d2_train"),
            mapper=lambda d: d,
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            seed=1,
            infinite=True,
        )


def _d2_cfg(tmp_path, max_iter=6):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "ToyMetaArch"
    cfg.DATASETS.TRAIN = ("toy_d2_train",)
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = (4,)
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.CHECKPOINT_PERIOD = 3
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.SEED = 1
    return cfg


def test_default_trainer_subclass_overrides_the_loader_and_writes_checkpoints_and_metrics(tmp_path):
    _register_toy_dataset("toy_d2_train")
    trainer = TextTrainer(_d2_cfg(tmp_path))
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert TextTrainer.built_loader >= 1 and trainer.iter == 6
    # Detectron2's names: zero-based iteration indices, then model_final.pth.
    assert {"model_0000002.pth", "model_0000005.pth", "model_final.pth", "metrics.json"} <= set(
        os.listdir(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    assert "total_loss" in rows[-1] and rows[-1]["iteration"] == 5
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)  # decayed at step 4


def test_default_trainer_resume_or_load_continues_from_the_last_checkpoint(tmp_path):
    _register_toy_dataset("toy_d2_train")
    first = TextTrainer(_d2_cfg(tmp_path, max_iter=3))
    first.train()
    second = TextTrainer(_d2_cfg(tmp_path, max_iter=6))
    second.resume_or_load(resume=True)
    rec = StepRecorder()
    second.register_hooks([rec])
    second.train()
    assert rec.events[0] == ("before_train", 3)
    assert [e[1] for e in rec.events if e[0] == "after_step"] == [3, 4, 5]
    assert isinstance(second.runner.get_hook(CheckpointHook), CheckpointHook)


def test_default_trainer_build_evaluator_needs_an_override_without_an_evaluator_type(tmp_path):
    with pytest.raises(NotImplementedError, match="'toy' has evaluator_type=None.*Override build_evaluator"):
        DefaultTrainer.build_evaluator(_d2_cfg(tmp_path), "toy")


class EvalTrainer(TextTrainer):
    """Evaluates every TEST.EVAL_PERIOD iterations through build_test_loader/build_evaluator."""

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return toy_batches(2, seed=3)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name):
        from engine_toys import MSEEvaluator

        from kiln.evaluation import DatasetEvaluator

        class Evaluator(MSEEvaluator, DatasetEvaluator):
            pass

        return Evaluator()


def test_default_trainer_evaluates_every_eval_period_and_returns_the_last_results(tmp_path):
    _register_toy_dataset("toy_d2_train")
    cfg = _d2_cfg(tmp_path)
    cfg.DATASETS.TEST = ("toy_d2_val",)
    cfg.TEST.EVAL_PERIOD = 3
    trainer = EvalTrainer(cfg)
    seen = []
    trainer.runner.register_callback(lambda r, m: seen.append((r.iter, sorted(m))), "after_val_epoch")
    results = trainer.train()
    assert seen == [(2, ["toy_d2_val/mse"]), (5, ["toy_d2_val/mse"])]
    assert set(results) == {"toy_d2_val/mse"}


def test_default_trainer_default_train_loader_maps_real_images_to_model_inputs(tmp_path):
    """Without an override, DefaultTrainer reads DATASETS.TRAIN through DatasetMapper (real files)."""
    from kiln.data.datasets.coco import register_coco_instances
    from kiln.data.datasets.shapes import generate_shapes_dataset
    from kiln.structures import Instances

    paths = generate_shapes_dataset(str(tmp_path / "data"), num_images=4, image_size=64, seed=2)
    register_coco_instances("d2_default_loader_shapes", {}, paths["ann_file"], paths["img_prefix"])
    cfg = _d2_cfg(tmp_path)
    cfg.DATASETS.TRAIN = ("d2_default_loader_shapes",)
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.DATALOADER.NUM_WORKERS = 0
    batch = next(iter(DefaultTrainer.build_train_loader(cfg)))
    assert len(batch) == 2
    for sample in batch:
        assert isinstance(sample["image"], torch.Tensor) and sample["image"].shape[0] == 3
        assert isinstance(sample["instances"], Instances) and len(sample["instances"]) >= 1


def test_the_iteration_timer_keeps_the_data_time_run_step_measured():
    import time

    from kiln.engine.hooks import IterationTimer

    def slow(batches):
        for b in _infinite(batches):
            time.sleep(0.05)
            yield b

    model = ToyRegressor()
    trainer = SimpleTrainer(model, slow(toy_batches(3)), torch.optim.SGD(model.parameters(), lr=0.01))
    trainer.register_hooks([IterationTimer()])
    trainer.train(0, 3)
    trainer.runner.flush_metrics()
    data = [v for v, _ in trainer.storage.history("data_time").values()]
    assert len(data) == 3 and all(d >= 0.045 for d in data), data  # not overwritten by the timer
    assert len(trainer.storage.history("time")) == 3


def test_gather_metric_period_other_than_one_is_refused_with_the_reason():
    import pytest
    import torch

    from kiln.engine import SimpleTrainer

    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"gather_metric_period=20: kiln already gathers metrics"):
        SimpleTrainer(model, [], torch.optim.SGD(model.parameters(), lr=0.1), gather_metric_period=20)


class LrRecorder(HookBase):
    def __init__(self):
        self.lrs = []

    def after_step(self):  # the lr this iteration's step used
        self.lrs.append(self.trainer.optimizer.param_groups[0]["lr"])


def _lrs(tmp_path, *opts):
    _register_toy_dataset("toy_d2_train")
    cfg = _d2_cfg(tmp_path, max_iter=8)
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 100
    cfg.merge_from_list(list(opts))
    trainer = TextTrainer(cfg)
    rec = LrRecorder()
    trainer.register_hooks([rec])
    trainer.train()
    return rec.lrs


def test_warmup_cosine_lr_goes_from_base_lr_to_base_lr_end(tmp_path):
    import math

    cfg_end = 0.002
    lrs = _lrs(tmp_path, "SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR")
    assert lrs == pytest.approx([0.01 * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(8)])
    cfg = _d2_cfg(tmp_path)
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    cfg.set_new_allowed(True)
    cfg.SOLVER.BASE_LR_END = cfg_end
    scheds = DefaultTrainer.build_lr_scheduler(cfg, None)
    assert scheds[0].eta_min == cfg_end


def test_step_with_fixed_gamma_decays_at_evenly_spaced_points(tmp_path):
    lrs = _lrs(tmp_path / "a", "SOLVER.LR_SCHEDULER_NAME", "WarmupStepWithFixedGammaLR",
               "SOLVER.GAMMA", "0.5")
    # NUM_DECAYS (3) decays at iterations 2, 4, 6 of 8.
    assert lrs == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.00125, 0.00125])


def test_unknown_scheduler_and_warmup_method_are_refused(tmp_path):
    cfg = _d2_cfg(tmp_path)
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
    with pytest.raises(ValueError, match="LR_SCHEDULER_NAME='WarmupPolyLR'.*WarmupCosineLR"):
        DefaultTrainer.build_lr_scheduler(cfg, None)
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
    cfg.SOLVER.WARMUP_METHOD = "exp"
    with pytest.raises(ValueError, match="WARMUP_METHOD='exp'"):
        DefaultTrainer.build_lr_scheduler(cfg, None)


def test_nesterov_and_bias_weight_decay_reach_the_optimizer(tmp_path):
    cfg = _d2_cfg(tmp_path)
    cfg.SOLVER.NESTEROV = True
    cfg.SOLVER.WEIGHT_DECAY = 0.1
    cfg.set_new_allowed(True)
    cfg.SOLVER.WEIGHT_DECAY_BIAS = 0.0
    opt = DefaultTrainer.build_optimizer(cfg, ToyMetaArch(cfg))
    assert all(g["nesterov"] for g in opt.param_groups)
    assert sorted({g["weight_decay"] for g in opt.param_groups}) == [0.0, 0.1]


def _one_step_change(tmp_path, *opts):
    _register_toy_dataset("toy_d2_train")
    cfg = _d2_cfg(tmp_path, max_iter=1)
    cfg.merge_from_list(["SOLVER.BASE_LR", "1.0", "SOLVER.WEIGHT_DECAY", "0.0", "SOLVER.WARMUP_ITERS", "0",
                         "SOLVER.STEPS", "()", *opts])
    trainer = TextTrainer(cfg)
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    return trainer, torch.cat([p.detach().flatten() for p in trainer.model.parameters()]) - before


def test_clip_gradients_full_model_bounds_the_step(tmp_path):
    _, free = _one_step_change(tmp_path / "a")
    _, clipped = _one_step_change(tmp_path / "b", "SOLVER.CLIP_GRADIENTS.ENABLED", "True",
                                  "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "full_model",
                                  "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "0.001")
    assert float(free.norm()) > 0.01 and float(clipped.norm()) == pytest.approx(0.001, rel=1e-3)
    _, by_value = _one_step_change(tmp_path / "c", "SOLVER.CLIP_GRADIENTS.ENABLED", "True",
                                   "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "value",
                                   "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "0.0005")
    assert float(by_value.abs().max()) <= 0.0005 + 1e-7


def test_per_parameter_norm_clipping_is_refused(tmp_path):
    _register_toy_dataset("toy_d2_train")
    cfg = _d2_cfg(tmp_path)
    cfg.merge_from_list(["SOLVER.CLIP_GRADIENTS.ENABLED", "True", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm"])
    with pytest.raises(ValueError, match="CLIP_TYPE='norm'.*Use 'full_model' or 'value'"):
        TextTrainer(cfg)


def test_amp_enabled_trains_with_a_grad_scaler_saved_in_checkpoints(tmp_path):
    _one_step_change(tmp_path / "amp", "SOLVER.AMP.ENABLED", "True", "SOLVER.BASE_LR", "0.01")
    _one_step_change(tmp_path / "fp32", "SOLVER.BASE_LR", "0.01")
    amp, fp32 = (torch.load(tmp_path / d / "model_final.pth", map_location="cpu", weights_only=True)
                 for d in ("amp", "fp32"))
    assert amp["optimizer"]["loss_scaler"]["scale"] > 0 and "loss_scaler" not in fp32["optimizer"]
