"""A merged Detectron2 CfgNode -> the canonical run schema (pure translation of the node)."""

from __future__ import annotations

import pytest

from kiln.config import get_default_cfg
from kiln.config.dialects import check_canonical, to_canonical
from kiln.config.dialects.detectron2 import d2_to_canonical


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Two small COCO-format splits registered as d2dialect_train / d2dialect_val."""
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    root = tmp_path_factory.mktemp("d2dialect")
    for split, n in (("train", 4), ("val", 2)):
        name = f"d2dialect_{split}"
        if name not in DatasetCatalog.list():
            p = generate_shapes_dataset(str(root), num_images=n, image_size=64, split=split)
            register_coco_instances(name, {}, p["ann_file"], p["img_prefix"])


def _node(**solver):
    from kiln.cli.d2_config import add_fewshot_defaults

    d2 = add_fewshot_defaults(get_default_cfg())
    d2.MODEL.META_ARCHITECTURE = "RetinaNet"
    d2.MODEL.BACKBONE.NAME = "build_retinanet_resnet_fpn_backbone"
    d2.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    d2.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    d2.MODEL.ANCHOR_GENERATOR.SIZES = [[x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)]
                                       for x in (32, 64, 128, 256, 512)]
    d2.MODEL.RETINANET.NUM_CLASSES = 3
    d2.DATASETS.TRAIN = ("d2dialect_train",)
    d2.DATASETS.TEST = ("d2dialect_val",)
    for key, value in solver.items():
        setattr(d2.SOLVER, key, value)
    return d2


def test_solver_maps_to_loop_optim_wrapper_and_param_scheduler(catalog):
    d2 = _node(BASE_LR=0.02, STEPS=(600, 800, 2000), MAX_ITER=900, WARMUP_ITERS=100, WARMUP_FACTOR=0.01,
               IMS_PER_BATCH=8, CHECKPOINT_PERIOD=300)
    d2.TEST.EVAL_PERIOD = 450
    c = d2_to_canonical(d2, num_gpus=2)
    check_canonical(c)
    assert c["train_cfg"] == dict(type="IterBasedTrainLoop", max_iters=900, val_interval=450)
    assert c["optim_wrapper"]["optimizer"]["lr"] == 0.02 and c["optim_wrapper"]["optimizer"]["type"] == "SGD"
    assert c["param_scheduler"] == [
        dict(type="MultiStepLR", milestones=[600, 800], gamma=0.1, by_epoch=False),  # 2000 > MAX_ITER dropped
        dict(type="LinearLR", start_factor=0.01, end_factor=1.0, begin=0, end=100, by_epoch=False),
    ]
    assert c["train_dataloader"]["batch_size"] == 4  # IMS_PER_BATCH over 2 GPUs
    assert c["default_hooks"]["checkpoint"] == dict(type="CheckpointHook", interval=300, by_epoch=False)
    assert c["default_hooks"]["eval"] == dict(type="EvalHook", interval=450, by_epoch=False)
    assert c["val_evaluator"] == dict(metric="bbox")
    assert c["model"]["bbox_head"]["num_classes"] == 3


def test_device_cudnn_syncbn_seed_amp_and_clipping(catalog):
    d2 = _node()
    d2.MODEL.DEVICE = "cuda:0"
    d2.CUDNN_BENCHMARK = True
    d2.MODEL.RESNETS.NORM = "SyncBN"
    d2.SEED = 11
    d2.SOLVER.AMP.ENABLED = True
    d2.SOLVER.CLIP_GRADIENTS.ENABLED = True
    d2.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"  # the norm of all gradients together
    d2.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 5.0
    c = to_canonical(d2)  # detected as Detectron2 by its UPPER_CASE keys
    assert c["device"] == "cuda:0"
    assert c["env_cfg"] == dict(cudnn_benchmark=True)
    assert c["sync_bn"] == "torch" and c["model"]["backbone"]["norm_cfg"]["type"] == "SyncBN"
    assert c["randomness"] == dict(seed=11)
    assert c["optim_wrapper"]["type"] == "AmpOptimWrapper"
    assert c["optim_wrapper"]["clip_grad"] == dict(max_norm=5.0, norm_type=2.0)
    d2.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
    d2.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.5
    assert to_canonical(d2)["optim_wrapper"]["clip_grad"] == dict(type="value", clip_value=0.5)
    # Detectron2's 'norm' clips each parameter on its own; kiln's wrapper clips the total norm only.
    d2.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    with pytest.raises(ValueError, match="SOLVER.CLIP_GRADIENTS.CLIP_TYPE='norm'.*each parameter"):
        to_canonical(d2)


def test_fewshot_freeze_flags_and_unmappable_settings(catalog):
    d2 = _node()
    d2.MODEL.BACKBONE.FREEZE = True
    d2.MODEL.PROPOSAL_GENERATOR.FREEZE = True
    assert d2_to_canonical(d2)["frozen_modules"] == ["backbone", "rpn_head"]
    d2.SOLVER.IMS_PER_BATCH = 6
    with pytest.raises(ValueError, match="SOLVER.IMS_PER_BATCH=6: .*not divisible by 4 GPUs"):
        d2_to_canonical(d2, num_gpus=4)
    d2.MODEL.MASK_ON = True
    with pytest.raises(ValueError, match="MASK_ON"):
        d2_to_canonical(d2)
