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
    d2.MODEL.ANCHOR_GENERATOR.SIZES = [
        [x, x * 2 ** (1 / 3), x * 2 ** (2 / 3)] for x in (32, 64, 128, 256, 512)
    ]
    d2.MODEL.RETINANET.NUM_CLASSES = 3
    d2.DATASETS.TRAIN = ("d2dialect_train",)
    d2.DATASETS.TEST = ("d2dialect_val",)
    for key, value in solver.items():
        setattr(d2.SOLVER, key, value)
    return d2


def test_solver_maps_to_loop_optim_wrapper_and_param_scheduler(catalog):
    d2 = _node(
        BASE_LR=0.02,
        STEPS=(600, 800, 2000),
        MAX_ITER=900,
        WARMUP_ITERS=100,
        WARMUP_FACTOR=0.01,
        IMS_PER_BATCH=8,
        CHECKPOINT_PERIOD=300,
    )
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
    assert c["default_hooks"]["checkpoint"] == dict(type="CheckpointHook", interval=300, by_epoch=False,
                                                    filename_tmpl="model_{:07d}.pth",
                                                    final_filename="model_final.pth")
    assert c["default_hooks"]["logger"]["json_file"] == "metrics.json"
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
    d2.MODEL.KEYPOINT_ON = True
    with pytest.raises(ValueError, match="KEYPOINT_ON"):
        d2_to_canonical(d2)


def _rcnn(**keys):
    """A Faster R-CNN FPN node (Base-RCNN-FPN.yaml's keys) with dotted overrides."""
    from kiln.cli.d2_config import add_fewshot_defaults

    d2 = add_fewshot_defaults(get_default_cfg())
    d2.merge_from_list(
        [
            "MODEL.BACKBONE.NAME",
            "build_resnet_fpn_backbone",
            "MODEL.RESNETS.OUT_FEATURES",
            "['res2', 'res3', 'res4', 'res5']",
            "MODEL.FPN.IN_FEATURES",
            "['res2', 'res3', 'res4', 'res5']",
            "MODEL.ANCHOR_GENERATOR.SIZES",
            "[[32], [64], [128], [256], [512]]",
            "MODEL.RPN.IN_FEATURES",
            "['p2', 'p3', 'p4', 'p5', 'p6']",
            "MODEL.ROI_HEADS.NAME",
            "StandardROIHeads",
            "MODEL.ROI_HEADS.IN_FEATURES",
            "['p2', 'p3', 'p4', 'p5']",
            "MODEL.ROI_BOX_HEAD.NAME",
            "FastRCNNConvFCHead",
            "MODEL.ROI_BOX_HEAD.NUM_FC",
            "2",
            "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
            "7",
            "DATASETS.TRAIN",
            "('d2dialect_train',)",
            "DATASETS.TEST",
            "('d2dialect_val',)",
        ]
    )
    for key, value in keys.items():
        node = d2
        *parents, last = key.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return d2


def test_fpn_rcnn_model_follows_every_head_key(catalog):
    m = d2_to_canonical(
        _rcnn(
            MODEL__RPN__LOSS_WEIGHT=2.0,
            MODEL__RPN__BBOX_REG_LOSS_WEIGHT=3.0,
            MODEL__RPN__SMOOTH_L1_BETA=0.1,
            MODEL__RPN__BBOX_REG_WEIGHTS=(2.0, 2.0, 4.0, 4.0),
            MODEL__ROI_BOX_HEAD__NUM_CONV=4,
            MODEL__ROI_BOX_HEAD__NUM_FC=1,
            MODEL__ROI_BOX_HEAD__NORM="GN",
            MODEL__FPN__NORM="GN",
            MODEL__ANCHOR_GENERATOR__OFFSET=0.5,
            MODEL__ROI_HEADS__PROPOSAL_APPEND_GT=False,
        )
    )["model"]
    rpn = m["rpn_head"]
    assert rpn["loss_cls"]["loss_weight"] == 2.0
    assert rpn["loss_bbox"] == dict(type="SmoothL1Loss", beta=0.1, loss_weight=6.0)  # BBOX_REG x LOSS_WEIGHT
    assert rpn["bbox_coder"]["target_stds"] == [0.5, 0.5, 0.25, 0.25]  # 1 / BBOX_REG_WEIGHTS
    assert rpn["anchor_generator"] == dict(
        type="DefaultAnchorGenerator",
        sizes=[[32.0], [64.0], [128.0], [256.0], [512.0]],
        aspect_ratios=[0.5, 1.0, 2.0],
        strides=[4, 8, 16, 32, 64],
        offset=0.5,
    )
    assert m["neck"]["norm_cfg"]["type"] == "GN" and m["neck"]["num_outs"] == 5
    head = m["roi_head"]["bbox_head"]
    assert (head["type"], head["num_shared_convs"], head["num_shared_fcs"], head["norm_cfg"]["type"]) == (
        "ConvFCBBoxHead",
        4,
        1,
        "GN",
    )
    assert head["loss_bbox"] == dict(type="L1Loss", loss_weight=1.0)  # Detectron2's smooth_l1 with beta 0
    ext = m["roi_head"]["bbox_roi_extractor"]
    assert ext["featmap_strides"] == [4, 8, 16, 32] and ext["roi_layer"]["output_size"] == 7
    assert (ext["canonical_box_size"], ext["canonical_level"]) == (224, 4)  # Detectron2's level rule
    assert m["train_cfg"]["rcnn"]["sampler"]["add_gt_as_proposals"] is False


def test_anchor_aspect_ratios_differing_per_level_are_refused(catalog):
    d2 = _rcnn(
        MODEL__ANCHOR_GENERATOR__ASPECT_RATIOS=[[0.5, 1.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]
    )
    with pytest.raises(ValueError, match=r"MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS=.*shares one list"):
        d2_to_canonical(d2)


def test_schedulers_follow_lr_scheduler_name(catalog):
    c = d2_to_canonical(
        _rcnn(SOLVER__LR_SCHEDULER_NAME="WarmupCosineLR", SOLVER__BASE_LR_END=1e-4, SOLVER__STEPS=(30000,))
    )
    assert (
        c["param_scheduler"][0]["type"] == "CosineAnnealingLR" and c["param_scheduler"][0]["eta_min"] == 1e-4
    )
    c = d2_to_canonical(
        _rcnn(
            SOLVER__LR_SCHEDULER_NAME="WarmupStepWithFixedGammaLR",
            SOLVER__MAX_ITER=1000,
            SOLVER__NUM_DECAYS=3,
            SOLVER__GAMMA=0.5,
            SOLVER__WARMUP_METHOD="constant",
        )
    )
    assert c["param_scheduler"] == [
        dict(type="MultiStepLR", milestones=[250, 500, 750], gamma=0.5, by_epoch=False),  # 4 equal phases
        dict(type="ConstantLR", factor=0.001, begin=0, end=1000, by_epoch=False),
    ]


def test_reference_world_size_rescales_like_detectron2(catalog):
    c = d2_to_canonical(
        _rcnn(
            SOLVER__REFERENCE_WORLD_SIZE=8,
            SOLVER__IMS_PER_BATCH=16,
            SOLVER__BASE_LR=0.02,
            SOLVER__MAX_ITER=90000,
            SOLVER__STEPS=(60000, 80000),
            SOLVER__WARMUP_ITERS=1000,
            SOLVER__CHECKPOINT_PERIOD=5000,
        ),
        num_gpus=4,
    )
    assert c["train_dataloader"]["batch_size"] == 2  # 16 x 4/8 = 8 images over 4 GPUs
    assert c["optim_wrapper"]["optimizer"]["lr"] == pytest.approx(0.01)
    assert c["train_cfg"]["max_iters"] == 180000 and c["default_hooks"]["checkpoint"]["interval"] == 10000
    assert (
        c["param_scheduler"][0]["milestones"] == [120000, 160000] and c["param_scheduler"][1]["end"] == 2000
    )


def test_weight_decay_and_bias_settings_become_paramwise_multipliers(catalog):
    c = d2_to_canonical(
        _rcnn(
            SOLVER__WEIGHT_DECAY=1e-4,
            SOLVER__WEIGHT_DECAY_NORM=5e-5,
            SOLVER__BIAS_LR_FACTOR=2.0,
            SOLVER__WEIGHT_DECAY_BIAS=0.0,
        )
    )
    assert c["optim_wrapper"]["optimizer"]["paramwise_cfg"] == dict(
        norm_decay_mult=0.5, bias_lr_mult=2.0, bias_decay_mult=0.0
    )
    with pytest.raises(ValueError, match="SOLVER.WEIGHT_DECAY_NORM=0.1: .*SOLVER.WEIGHT_DECAY, which is 0"):
        d2_to_canonical(_rcnn(SOLVER__WEIGHT_DECAY=0.0, SOLVER__WEIGHT_DECAY_NORM=0.1))


def test_data_keys_become_samplers_crops_grouping_and_tta(catalog):
    c = d2_to_canonical(
        _rcnn(
            DATALOADER__SAMPLER_TRAIN="RepeatFactorTrainingSampler",
            DATALOADER__REPEAT_THRESHOLD=0.3,
            DATALOADER__ASPECT_RATIO_GROUPING=False,
            INPUT__CROP__ENABLED=True,
            INPUT__CROP__TYPE="absolute",
            INPUT__CROP__SIZE=[300, 400],
            DATALOADER__FILTER_EMPTY_ANNOTATIONS=False,
            TEST__AUG__ENABLED=True,
            TEST__AUG__MIN_SIZES=(500, 600),
            TEST__AUG__MAX_SIZE=1000,
            VIS_PERIOD=20,
        )
    )
    loader = c["train_dataloader"]
    assert loader["sampler"] == dict(type="RepeatFactorTrainingSampler", repeat_thresh=0.3)
    assert loader["batch_sampler"] is None and loader["dataset"]["filter_empty_gt"] is False
    steps = loader["dataset"]["pipeline"]
    assert [s["type"] for s in steps[:4]] == ["LoadImageFromFile", "LoadAnnotations", "RandomCrop", "Resize"]
    assert steps[2] == dict(
        type="RandomCrop", crop_type="absolute", crop_size=[300, 400], allow_negative_crop=True
    )
    aug = c["tta_pipeline"][-1]
    assert aug["img_scale"] == [(1000, 500), (1000, 600)] and aug["flip"] is True
    assert c["tta_model"]["tta_cfg"] == dict(nms=dict(type="nms", iou_threshold=0.5), max_per_img=100)
    assert dict(type="ProposalVisualizationHook", interval=20) in c["custom_hooks"]
    c = d2_to_canonical(
        _rcnn(DATALOADER__SAMPLER_TRAIN="RandomSubsetTrainingSampler", DATALOADER__RANDOM_SUBSET_RATIO=0.25)
    )
    assert c["train_dataloader"]["sampler"] == dict(type="RandomSubsetTrainingSampler", subset_ratio=0.25)
    assert "sampler" not in d2_to_canonical(_rcnn())["train_dataloader"]  # TrainingSampler: kiln's default


def test_c4_and_cascade_layouts(catalog):
    m = d2_to_canonical(
        _rcnn(
            MODEL__BACKBONE__NAME="build_resnet_backbone",
            MODEL__RESNETS__OUT_FEATURES=["res4"],
            MODEL__FPN__IN_FEATURES=[],
            MODEL__ANCHOR_GENERATOR__SIZES=[[32, 64, 128, 256, 512]],
            MODEL__RPN__IN_FEATURES=["res4"],
            MODEL__ROI_HEADS__NAME="Res5ROIHeads",
            MODEL__ROI_HEADS__IN_FEATURES=["res4"],
            MODEL__ROI_BOX_HEAD__NAME="",
            MODEL__ROI_BOX_HEAD__NUM_FC=0,
            MODEL__ROI_BOX_HEAD__POOLER_RESOLUTION=14,
        )
    )["model"]
    assert m["backbone"]["num_stages"] == 3 and m["backbone"]["out_indices"] == (2,) and "neck" not in m
    assert m["roi_head"]["shared_head"] == dict(
        type="ResLayer",
        depth=50,
        stage=3,
        stride=2,
        dilation=1,
        style="caffe",
        norm_cfg=dict(type="FrozenBN", requires_grad=False),
        norm_eval=True,
    )
    assert (
        m["roi_head"]["bbox_head"]["in_channels"] == 2048 and m["roi_head"]["bbox_head"]["roi_feat_size"] == 7
    )
    m = d2_to_canonical(
        _rcnn(
            MODEL__ROI_HEADS__NAME="CascadeROIHeads",
            MODEL__ROI_BOX_CASCADE_HEAD__IOUS=(0.5, 0.7),
            MODEL__ROI_BOX_CASCADE_HEAD__BBOX_REG_WEIGHTS=((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0)),
        )
    )["model"]
    assert m["type"] == "CascadeRCNN" and m["roi_head"]["num_stages"] == 2
    assert [h["bbox_coder"]["target_stds"][0] for h in m["roi_head"]["bbox_head"]] == [0.1, 0.05]
    assert [s["assigner"]["pos_iou_thr"] for s in m["train_cfg"]["rcnn"]] == [0.5, 0.7]
