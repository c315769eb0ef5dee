"""MMCV 1.x / MMDetection 1.x-2.x run configs -> canonical schema (pure dict in, dict out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.config import Config
from kiln.config.dialects import check_canonical, detect_dialects, to_canonical
from kiln.config.dialects.mmcv import mmcv_to_canonical

SEED_001 = Path(__file__).resolve().parents[1] / "fixtures" / "retinanet_r101_fpn_1x.py"

# MMDetection 2.x's configs/_base_ files (runtime, schedule, dataset), as upstream writes them.
MMDET2_RUNTIME = """
checkpoint_config = dict(interval=1)
log_config = dict(interval=50, hooks=[dict(type='TextLoggerHook')])
custom_hooks = [dict(type='NumClassCheckHook')]
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
opencv_num_threads = 0
mp_start_method = 'fork'
auto_scale_lr = dict(enable=False, base_batch_size=16)
"""
MMDET2_SCHEDULE_1X = """
optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=None)
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
"""
MMDET2_COCO = """
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]
test_pipeline = [dict(type='LoadImageFromFile')]
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=2,
    train=dict(type=dataset_type, ann_file=data_root + 'annotations/instances_train2017.json',
               img_prefix=data_root + 'train2017/', pipeline=train_pipeline),
    val=dict(type=dataset_type, ann_file=data_root + 'annotations/instances_val2017.json',
             img_prefix=data_root + 'val2017/', pipeline=test_pipeline),
    test=dict(type=dataset_type, ann_file=data_root + 'annotations/instances_val2017.json',
              img_prefix=data_root + 'val2017/', pipeline=test_pipeline))
evaluation = dict(interval=1, metric='bbox')
"""


@pytest.fixture
def mmdet2(write):
    write("_base_/default_runtime.py", MMDET2_RUNTIME)
    write("_base_/schedule_1x.py", MMDET2_SCHEDULE_1X)
    write("_base_/coco_detection.py", MMDET2_COCO)
    return write


def _load(mmdet2, text: str) -> Config:
    path = mmdet2("cfg.py", "_base_ = ['_base_/coco_detection.py', '_base_/schedule_1x.py', "
                            "'_base_/default_runtime.py']\nmodel = dict(type='RetinaNet')\n" + text)
    return Config.fromfile(str(path))


def test_mmdet2_base_files_translate_to_the_mmengine_schema(mmdet2):
    c = to_canonical(_load(mmdet2, ""))
    check_canonical(c)
    assert c["train_cfg"] == dict(type="EpochBasedTrainLoop", max_epochs=12, val_interval=1)
    assert c["optim_wrapper"] == dict(optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=0.0001))
    assert c["param_scheduler"] == [
        dict(type="MultiStepLR", milestones=[8, 11], gamma=0.1, by_epoch=True),
        dict(type="LinearLR", start_factor=0.001, end_factor=1.0, begin=0, end=500, by_epoch=False),
    ]
    assert c["default_hooks"]["checkpoint"] == dict(type="CheckpointHook", interval=1)
    assert c["default_hooks"]["logger"] is None  # log_config's hooks replace the default logger
    assert c["custom_hooks"] == [dict(type="TextLoggerHook", interval=50), dict(type="NumClassCheckHook")]
    assert c["default_hooks"]["eval"] == dict(type="EvalHook", interval=1)
    assert c["val_evaluator"] == dict(metric="bbox")
    train = c["train_dataloader"]
    assert (train["batch_size"], train["num_workers"]) == (2, 2)
    assert train["dataset"]["ann_file"] == "data/coco/annotations/instances_train2017.json"
    assert c["val_dataloader"]["batch_size"] == 1 and c["test_dataloader"]["batch_size"] == 1
    assert c["log_level"] == "INFO"
    # config variables (data_root, pipelines) and MMCV keys are gone; load_from/resume_from were None
    for key in ("data", "runner", "lr_config", "optimizer", "data_root", "train_pipeline", "load_from",
                "resume", "workflow", "dist_params"):
        assert key not in c


def test_seed_001_config_translates_with_its_v1_layout_moved_into_the_model():
    cfg = Config.fromfile(str(SEED_001))
    assert detect_dialects(cfg) == ["mmcv", "mmdet_v1_heads"]
    c = to_canonical(cfg)
    assert c["model"]["train_cfg"]["assigner"]["pos_iou_thr"] == 0.5
    assert c["model"]["test_cfg"]["nms"] == dict(type="nms", iou_thr=0.5)
    head = c["model"]["bbox_head"]
    assert head["num_classes"] == 80 and "anchor_strides" not in head  # v1: 81 incl. background
    assert c["train_cfg"] == dict(type="EpochBasedTrainLoop", max_epochs=12, val_interval=1)
    assert c["train_dataloader"]["batch_size"] == 2  # imgs_per_gpu, the v1 name
    assert c["optim_wrapper"]["clip_grad"] == dict(max_norm=35, norm_type=2)
    assert c["work_dir"] == "./work_dirs/retinanet_r101_fpn_1x"
    assert "train_cfg" not in c["model"]["bbox_head"]


def test_per_split_batch_sizes_and_mmdet22_dataloader_overrides():
    c = mmcv_to_canonical(dict(data=dict(
        samples_per_gpu=4, workers_per_gpu=1, train=dict(type="X"),
        val=dict(type="X", samples_per_gpu=3), test=dict(type="X"),
        test_dataloader=dict(samples_per_gpu=8, workers_per_gpu=0))))
    assert c["train_dataloader"] == dict(batch_size=4, num_workers=1, dataset=dict(type="X"))
    assert c["val_dataloader"] == dict(batch_size=3, num_workers=1, dataset=dict(type="X"))
    assert c["test_dataloader"] == dict(batch_size=8, num_workers=0, dataset=dict(type="X"))


def test_iteration_runner_and_evaluation_by_iteration():
    c = mmcv_to_canonical(dict(runner=dict(type="IterBasedRunner", max_iters=90000),
                               evaluation=dict(interval=5000, by_epoch=False, metric="bbox", save_best="auto",
                                               gpu_collect=True)))
    assert c["train_cfg"] == dict(type="IterBasedTrainLoop", max_iters=90000, val_interval=5000)
    assert c["default_hooks"]["eval"] == dict(type="EvalHook", interval=5000, by_epoch=False,
                                              save_best="auto")
    assert c["val_evaluator"] == dict(metric="bbox")


def test_total_epochs_and_runner_disagreeing_is_an_error():
    with pytest.raises(ValueError, match="total_epochs=12 and runner.max_epochs=24 disagree"):
        mmcv_to_canonical(dict(total_epochs=12, runner=dict(type="EpochBasedRunner", max_epochs=24)))


def test_fp16_gradient_accumulation_and_grad_clip_make_an_amp_optim_wrapper():
    c = mmcv_to_canonical(dict(
        optimizer=dict(type="SGD", lr=0.01, paramwise_cfg=dict(norm_decay_mult=0.0)),
        optimizer_config=dict(type="GradientCumulativeFp16OptimizerHook", cumulative_iters=4,
                              grad_clip=dict(max_norm=10, norm_type=2)),
        fp16=dict(loss_scale=512.0)))
    assert c["optim_wrapper"] == dict(
        type="AmpOptimWrapper", loss_scale=512.0, accumulative_counts=4,
        clip_grad=dict(max_norm=10, norm_type=2),
        optimizer=dict(type="SGD", lr=0.01, paramwise_cfg=dict(norm_decay_mult=0.0)))
    dynamic = mmcv_to_canonical(dict(optimizer=dict(type="SGD", lr=0.1),
                                     optimizer_config=dict(type="Fp16OptimizerHook")))
    assert dynamic["optim_wrapper"]["loss_scale"] == "dynamic"


def test_unknown_optimizer_hook_and_optimizer_config_keys_are_refused_by_name():
    with pytest.raises(ValueError, match="optimizer_config.type='MyOptimizerHook'"):
        mmcv_to_canonical(dict(optimizer=dict(type="SGD", lr=0.1),
                               optimizer_config=dict(type="MyOptimizerHook")))
    with pytest.raises(KeyError, match=r"optimizer_config has keys kiln does not understand: \['grad_clipp'\]"
                                       r".*Did you mean 'grad_clip'"):
        mmcv_to_canonical(dict(optimizer=dict(type="SGD", lr=0.1), optimizer_config=dict(grad_clipp=None)))


def test_momentum_config_becomes_momentum_schedules():
    c = mmcv_to_canonical(dict(lr_config=dict(policy="cyclic", target_ratio=(10, 1e-4), cyclic_times=1),
                               momentum_config=dict(policy="cyclic", target_ratio=(0.85 / 0.95, 1))))
    assert [s["type"] for s in c["param_scheduler"]] == ["CyclicLR", "CyclicMomentum"]
    assert c["param_scheduler"][1]["by_epoch"] is False


def test_dialect_key_next_to_its_canonical_counterpart_is_an_error_not_a_choice():
    with pytest.raises(ValueError, match="both optimizer .* and optim_wrapper"):
        to_canonical(dict(optimizer=dict(type="SGD", lr=0.1), optim_wrapper=dict(optimizer=dict(type="SGD"))))
    with pytest.raises(ValueError, match="both lr_config .* and param_scheduler"):
        to_canonical(dict(lr_config=dict(policy="step", step=[1]), param_scheduler=[dict(type="ConstantLR")]))
    with pytest.raises(ValueError, match="both checkpoint_config .* and default_hooks.checkpoint"):
        to_canonical(dict(checkpoint_config=dict(interval=1),
                          default_hooks=dict(checkpoint=dict(type="CheckpointHook"))))


def test_workflow_val_phase_becomes_a_val_loss_hook_on_val_data_with_the_train_pipeline():
    data = dict(samples_per_gpu=4, workers_per_gpu=0,
                train=dict(type="X", pipeline=["train-pipe"]), val=dict(type="X", pipeline=["test-pipe"]))
    c = mmcv_to_canonical(dict(data=data, total_epochs=4, workflow=[("train", 2), ("val", 1)]))
    hook = c["default_hooks"]["val_loss"]
    assert (hook["type"], hook["interval"], hook["length"], hook["offset"]) == ("ValLossHook", 2, 1, 2)
    assert hook["dataloader"] == dict(batch_size=4, num_workers=0,
                                      dataset=dict(type="X", pipeline=["train-pipe"]),
                                      sampler=dict(type="DefaultSampler", shuffle=False))
    removed = mmcv_to_canonical(dict(data=data, total_epochs=4, workflow=[("train", 2), ("val", 1)],
                                     default_hooks=dict(val_loss=None)))
    assert removed["default_hooks"]["val_loss"] is None


def test_runtime_keys_map_to_randomness_env_cfg_and_resume():
    c = mmcv_to_canonical(dict(seed=3, deterministic=True, cudnn_benchmark=True, resume_from="w/epoch_2.pth",
                               gpu_ids=range(0, 1), dist_params=dict(backend="nccl")))
    assert c["randomness"] == dict(seed=3, deterministic=True)
    assert c["env_cfg"] == dict(cudnn_benchmark=True)
    assert c["resume"] == "w/epoch_2.pth"
    with pytest.raises(ValueError, match=r"gpu_ids=\[1\].*device"):
        mmcv_to_canonical(dict(gpu_ids=[1]))
    with pytest.raises(ValueError, match="seed=3 and randomness.seed=4 disagree"):
        mmcv_to_canonical(dict(seed=3, randomness=dict(seed=4)))


def test_a_misspelt_run_key_is_refused_with_a_suggestion_while_variables_pass(mmdet2):
    with pytest.raises(KeyError, match="'total_epoch'.*Did you mean 'total_epochs'"):
        to_canonical(_load(mmdet2, "total_epoch = 3\n"))
    with pytest.raises(KeyError, match="'lr_confg'.*Did you mean 'lr_config'"):
        to_canonical(dict(lr_confg=dict(policy="step", step=[1])))
    c = to_canonical(_load(mmdet2, "img_scale = (1333, 800)\nclasses = ('a', 'b')\n"))
    assert "img_scale" not in c and "classes" not in c


def test_translation_is_pure_and_idempotent(mmdet2):
    cfg = _load(mmdet2, "")
    before = cfg.to_dict()
    once = to_canonical(cfg)
    assert cfg.to_dict() == before  # the input is not modified
    assert to_canonical(once) == once  # canonical configs pass unchanged
    assert detect_dialects(once) == []


def test_every_shipped_config_translates_to_the_canonical_schema():
    import glob

    from kiln.model_zoo import resolve_config_path

    root = resolve_config_path("kiln::shapes/retinanet_r18_fpn_shapes.py").rsplit("/shapes/", 1)[0]
    files = [f for f in glob.glob(f"{root}/**/*.py", recursive=True) if "/_base_/" not in f]
    assert len(files) >= 4
    for f in files:
        c = to_canonical(Config.fromfile(f))
        check_canonical(c)
        assert {"model", "train_dataloader", "train_cfg", "optim_wrapper"} <= set(c), f


def test_mmengine_runtime_keys_are_translated_not_mistaken_for_typos():
    cfg = dict(model=dict(type="X"), default_scope="mmdet", log_processor=dict(window_size=50),
               model_wrapper_cfg=dict(type="MMDistributedDataParallel", find_unused_parameters=True))
    c = to_canonical(cfg)
    assert c == dict(model=dict(type="X"), find_unused_parameters=True,
                     default_hooks=dict(logger=dict(type="LoggerHook", window=50)))


def test_env_cfg_cudnn_benchmark_wins_over_a_top_level_one_with_a_warning(caplog):
    # MMDetection 3.x's SSD configs keep a 2.x top-level cudnn_benchmark=True next to default_runtime's
    # env_cfg.cudnn_benchmark=False; MMEngine reads only env_cfg.
    c = mmcv_to_canonical(dict(cudnn_benchmark=True, env_cfg=dict(cudnn_benchmark=False)))
    assert c["env_cfg"] == dict(cudnn_benchmark=False)
    assert "MMEngine reads only env_cfg" in caplog.text
