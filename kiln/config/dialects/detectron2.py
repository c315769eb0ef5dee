"""Detectron2 yaml configs (a merged ``CfgNode``) -> the canonical run schema.

Loading (framework defaults < project defaults < the yaml's ``_BASE_`` chain < ``--opts``) happens in
:mod:`kiln.cli.d2_config`; this module maps the frozen result onto kiln's components:

=====================================  ==========================================================
Detectron2 key                         canonical key
=====================================  ==========================================================
MODEL.META_ARCHITECTURE                ``RetinaNet`` -> RetinaNet, ``GeneralizedRCNN`` -> FasterRCNN
MODEL.BACKBONE.NAME                    ``build_(retinanet_)resnet_fpn_backbone`` -> ResNet + FPN
MODEL.BACKBONE.FREEZE_AT               model.backbone.frozen_stages (= FREEZE_AT - 1)
MODEL.RESNETS.DEPTH / NORM             model.backbone.depth / norm_cfg (FPN in_channels follow);
                                       ``NORM: SyncBN`` also sets ``sync_bn='torch'``
MODEL.RETINANET.* / ROI_HEADS.* / RPN  num_classes, thresholds, NMS, sampling in model.train/test_cfg
MODEL.WEIGHTS                          ImageNet URLs -> model.pretrained, a file -> load_from
MODEL.PIXEL_MEAN/STD, INPUT.FORMAT     Normalize (to_rgb when FORMAT is RGB)
MODEL.DEVICE                           device
SOLVER.BASE_LR/MOMENTUM/WEIGHT_DECAY   optim_wrapper.optimizer (SGD)
SOLVER.IMS_PER_BATCH                   train_dataloader.batch_size (= IMS_PER_BATCH / number of GPUs)
SOLVER.STEPS/GAMMA/WARMUP_*            param_scheduler (MultiStepLR + warmup, by iteration)
SOLVER.MAX_ITER                        train_cfg=dict(type='IterBasedTrainLoop', max_iters)
SOLVER.CHECKPOINT_PERIOD               default_hooks.checkpoint.interval (by iteration)
SOLVER.CLIP_GRADIENTS / AMP            optim_wrapper.clip_grad / AmpOptimWrapper
DATASETS.TRAIN/TEST                    catalog names -> CocoDataset(s) from their metadata
INPUT.MIN/MAX_SIZE_TRAIN/TEST          Resize img_scale (multi-scale 'value' mode in training)
INPUT.RANDOM_FLIP                      RandomFlip flip_ratio
DATALOADER.NUM_WORKERS                 *_dataloader.num_workers
TEST.EVAL_PERIOD / DETECTIONS_PER_IMG  default_hooks.eval.interval / max_per_img
OUTPUT_DIR, SEED, CUDNN_BENCHMARK      work_dir, randomness.seed, env_cfg.cudnn_benchmark
MODEL.BACKBONE.FREEZE, MODEL.          frozen_modules (few-shot fine-tuning, DeFRCN's flags)
PROPOSAL_GENERATOR.FREEZE,
MODEL.ROI_HEADS.FREEZE_FEAT
=====================================  ==========================================================

Keys with no kiln counterpart (masks, keypoints, C4 backbones, ...) fail with a message naming them
when they are set to something kiln cannot honour. Resolving dataset names needs the dataset catalog
and the model base configs need the model zoo, both imported when a translation runs.
"""

from __future__ import annotations

import logging
from typing import Any

from .canonical import FREEZE_GROUPS
from .mmcv import mmcv_to_canonical

__all__ = ["d2_to_canonical"]

logger = logging.getLogger("kiln.config")

_FPN_BACKBONES = {"build_resnet_fpn_backbone", "build_retinanet_resnet_fpn_backbone"}
_IMAGENET_PREFIXES = ("detectron2://ImageNetPretrained/", "catalog://ImageNetPretrained/")
_NORMS = {"FrozenBN": dict(type="FrozenBN", requires_grad=False), "BN": dict(type="BN", requires_grad=True),
          "SyncBN": dict(type="SyncBN", requires_grad=True), "GN": dict(type="GN", num_groups=32,
                                                                       requires_grad=True)}



def _catalog_dataset(names: Any, pipeline: list, key: str, test_mode: bool) -> dict:
    from kiln.data import DatasetCatalog, MetadataCatalog

    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names:
        raise ValueError(f"{key} is empty; name at least one registered dataset")
    parts = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise ValueError(f"{key}: dataset '{name}' is not registered; registered: "
                           f"{', '.join(sorted(DatasetCatalog.list())) or 'none'}. Register it with "
                           f"register_coco_instances(name, {{}}, json_file, image_root).")
        meta = MetadataCatalog.get(name)
        if not meta.get("json_file"):
            DatasetCatalog.get(name)  # lazily registered sets (shapes) write their json on first load
            meta = MetadataCatalog.get(name)
        json_file, image_root = meta.get("json_file"), meta.get("image_root")
        if not json_file:
            raise ValueError(f"{key}: dataset '{name}' has no json_file in its metadata; kiln maps "
                           f"COCO-format catalog entries (register_coco_instances) onto CocoDataset")
        ds = dict(type="CocoDataset", ann_file=json_file, img_prefix=image_root or "", pipeline=pipeline,
                  test_mode=test_mode)
        if meta.get("thing_classes"):
            ds["classes"] = list(meta.thing_classes)
        parts.append(ds)
    return parts[0] if len(parts) == 1 else dict(type="ConcatDataset", datasets=parts)


def _pipelines(d2: Any) -> tuple[list, list]:
    fmt = d2.INPUT.FORMAT
    if fmt not in ("BGR", "RGB"):
        raise ValueError(f"INPUT.FORMAT={fmt!r}: kiln maps BGR and RGB images only")
    norm = dict(type="Normalize", mean=list(d2.MODEL.PIXEL_MEAN), std=list(d2.MODEL.PIXEL_STD),
                to_rgb=fmt == "RGB")
    min_train = d2.INPUT.MIN_SIZE_TRAIN
    min_train = [min_train] if isinstance(min_train, int) else list(min_train)
    max_train = d2.INPUT.MAX_SIZE_TRAIN
    if d2.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range" and len(min_train) == 2:
        resize = dict(type="Resize", img_scale=[(max_train, min_train[0]), (max_train, min_train[1])],
                      multiscale_mode="range", keep_ratio=True)
    elif len(min_train) == 1:
        resize = dict(type="Resize", img_scale=(max_train, min_train[0]), keep_ratio=True)
    else:
        resize = dict(type="Resize", img_scale=[(max_train, s) for s in min_train], multiscale_mode="value",
                      keep_ratio=True)
    flip = {"horizontal": 0.5, "none": 0.0, "vertical": 0.5}.get(d2.INPUT.RANDOM_FLIP)
    if flip is None:
        raise ValueError(f"INPUT.RANDOM_FLIP={d2.INPUT.RANDOM_FLIP!r}: expected horizontal, vertical or none")
    flip_step = dict(type="RandomFlip", flip_ratio=flip)
    if d2.INPUT.RANDOM_FLIP == "vertical":
        flip_step["direction"] = "vertical"
    train = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        resize,
        flip_step,
        norm,
        dict(type="Pad", size_divisor=32),
        dict(type="DefaultFormatBundle"),
        dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
    ]
    test = [
        dict(type="LoadImageFromFile"),
        dict(type="MultiScaleFlipAug", img_scale=(d2.INPUT.MAX_SIZE_TEST, d2.INPUT.MIN_SIZE_TEST), flip=False,
             transforms=[dict(type="Resize", keep_ratio=True), dict(type="RandomFlip"), dict(norm),
                         dict(type="Pad", size_divisor=32), dict(type="ImageToTensor", keys=["img"]),
                         dict(type="Collect", keys=["img"])]),
    ]
    return train, test


def _model(d2: Any) -> tuple[dict, str | None]:
    from kiln.config import Config
    from kiln.model_zoo.paths import resolve_config_path

    arch = d2.MODEL.META_ARCHITECTURE
    bases = {"RetinaNet": "kiln::_base_/models/retinanet_r50_fpn.py",
             "GeneralizedRCNN": "kiln::_base_/models/faster_rcnn_r50_fpn.py"}
    if arch not in bases:
        raise ValueError(f"MODEL.META_ARCHITECTURE={arch!r} has no kiln mapping; "
                         f"supported: {', '.join(bases)}")
    if d2.MODEL.MASK_ON or d2.MODEL.KEYPOINT_ON:
        raise ValueError("MODEL.MASK_ON/KEYPOINT_ON: kiln's Detectron2 mapping covers box detection only")
    if d2.MODEL.BACKBONE.NAME not in _FPN_BACKBONES:
        raise ValueError(f"MODEL.BACKBONE.NAME={d2.MODEL.BACKBONE.NAME!r} has no kiln mapping; supported: "
                       f"{', '.join(sorted(_FPN_BACKBONES))} (ResNet + FPN)")
    model = Config.fromfile(resolve_config_path(bases[arch])).model.to_dict()
    depth = int(d2.MODEL.RESNETS.DEPTH)
    if depth not in (18, 34, 50, 101, 152):
        raise ValueError(f"MODEL.RESNETS.DEPTH={depth}: expected 18, 34, 50, 101 or 152")
    bb = model["backbone"]
    bb["depth"] = depth
    if d2.MODEL.RESNETS.NORM not in _NORMS:
        raise ValueError(f"MODEL.RESNETS.NORM={d2.MODEL.RESNETS.NORM!r}: expected one of {', '.join(_NORMS)}")
    bb["norm_cfg"] = dict(_NORMS[d2.MODEL.RESNETS.NORM])
    bb["frozen_stages"] = int(d2.MODEL.BACKBONE.FREEZE_AT) - 1
    model["neck"]["in_channels"] = [64, 128, 256, 512] if depth < 50 else [256, 512, 1024, 2048]
    fpn_out = int(d2.MODEL.FPN.OUT_CHANNELS)
    model["neck"]["out_channels"] = fpn_out
    if arch == "RetinaNet":
        model["bbox_head"]["in_channels"] = fpn_out
    else:
        model["rpn_head"]["in_channels"] = fpn_out
        model["roi_head"]["bbox_roi_extractor"]["out_channels"] = fpn_out
        model["roi_head"]["bbox_head"]["in_channels"] = fpn_out
    weights = d2.MODEL.WEIGHTS or ""
    load_from = None
    if not weights:
        model["pretrained"] = None
    elif weights.startswith(_IMAGENET_PREFIXES) or weights.startswith("torchvision://"):
        tv = weights.startswith("torchvision://")
        model["pretrained"] = weights if tv else f"torchvision://resnet{depth}"
        if not tv:
            logger.warning("MODEL.WEIGHTS=%s: using ImageNet weights torchvision://resnet%d instead",
                           weights, depth)
    else:
        model["pretrained"] = None
        load_from = weights
    test_cfg, train_cfg = model["test_cfg"], model["train_cfg"]
    if arch == "RetinaNet":
        r = d2.MODEL.RETINANET
        head = model["bbox_head"]
        head["num_classes"] = int(r.NUM_CLASSES)
        head["stacked_convs"] = int(r.NUM_CONVS)
        head["anchor_generator"]["ratios"] = list(d2.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS[0])
        head["loss_cls"].update(gamma=float(r.FOCAL_LOSS_GAMMA), alpha=float(r.FOCAL_LOSS_ALPHA))
        neg, pos = r.IOU_THRESHOLDS
        train_cfg["assigner"].update(neg_iou_thr=float(neg), pos_iou_thr=float(pos))
        test_cfg.update(score_thr=float(r.SCORE_THRESH_TEST), nms_pre=int(r.TOPK_CANDIDATES_TEST),
                        nms=dict(type="nms", iou_thr=float(r.NMS_THRESH_TEST)),
                        max_per_img=int(d2.TEST.DETECTIONS_PER_IMAGE))
    else:
        rh, rpn = d2.MODEL.ROI_HEADS, d2.MODEL.RPN
        box_head = model["roi_head"]["bbox_head"]
        box_head["num_classes"] = int(rh.NUM_CLASSES)
        box_head["reg_class_agnostic"] = bool(d2.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG)
        model["rpn_head"]["anchor_generator"]["ratios"] = list(d2.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS[0])
        neg, pos = rpn.IOU_THRESHOLDS
        train_cfg["rpn"]["assigner"].update(neg_iou_thr=float(neg), pos_iou_thr=float(pos))
        train_cfg["rpn"]["sampler"].update(num=int(rpn.BATCH_SIZE_PER_IMAGE),
                                           pos_fraction=float(rpn.POSITIVE_FRACTION))
        train_cfg["rpn_proposal"].update(nms_pre=int(rpn.PRE_NMS_TOPK_TRAIN),
                                         max_per_img=int(rpn.POST_NMS_TOPK_TRAIN),
                                         nms=dict(type="nms", iou_thr=float(rpn.NMS_THRESH)))
        iou = float(rh.IOU_THRESHOLDS[0])
        train_cfg["rcnn"]["assigner"].update(pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou)
        train_cfg["rcnn"]["sampler"].update(num=int(rh.BATCH_SIZE_PER_IMAGE),
                                            pos_fraction=float(rh.POSITIVE_FRACTION))
        test_cfg["rpn"].update(nms_pre=int(rpn.PRE_NMS_TOPK_TEST), max_per_img=int(rpn.POST_NMS_TOPK_TEST),
                               nms=dict(type="nms", iou_thr=float(rpn.NMS_THRESH)))
        test_cfg["rcnn"].update(score_thr=float(rh.SCORE_THRESH_TEST),
                                nms=dict(type="nms", iou_thr=float(rh.NMS_THRESH_TEST)),
                                max_per_img=int(d2.TEST.DETECTIONS_PER_IMAGE))
    return model, load_from


def d2_to_canonical(d2: Any, num_gpus: int = 1) -> dict[str, Any]:
    """Map a merged Detectron2-style ``CfgNode`` onto the canonical run schema (a plain dict).

    The solver, data and hook settings are first written the MMCV way (the mapping is the one kiln has
    always used) and then translated by :func:`~.mmcv.mmcv_to_canonical`; device, cuDNN, SyncBN and
    the seed are canonical keys directly.
    """
    model, load_from = _model(d2)
    s = d2.SOLVER
    if s.IMS_PER_BATCH % num_gpus:
        raise ValueError(f"SOLVER.IMS_PER_BATCH={s.IMS_PER_BATCH} is not divisible by {num_gpus} GPUs")
    train_pipeline, test_pipeline = _pipelines(d2)
    data: dict[str, Any] = dict(samples_per_gpu=s.IMS_PER_BATCH // num_gpus,
                                workers_per_gpu=int(d2.DATALOADER.NUM_WORKERS))
    data["train"] = _catalog_dataset(d2.DATASETS.TRAIN, train_pipeline, "DATASETS.TRAIN", False)
    if d2.DATASETS.TEST:
        test = _catalog_dataset(d2.DATASETS.TEST, test_pipeline, "DATASETS.TEST", True)
        data["val"] = test
        data["test"] = dict(test)
    steps = [int(x) for x in s.STEPS if int(x) < int(s.MAX_ITER)]
    lr_config: dict[str, Any] = dict(policy="step", by_epoch=False, step=steps, gamma=float(s.GAMMA))
    if s.WARMUP_ITERS > 0:
        lr_config.update(warmup=s.WARMUP_METHOD, warmup_iters=int(s.WARMUP_ITERS),
                         warmup_ratio=float(s.WARMUP_FACTOR))
    clip = s.CLIP_GRADIENTS
    grad_clip = None
    if clip.ENABLED:
        if clip.CLIP_TYPE != "norm":
            raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE={clip.CLIP_TYPE!r}: kiln maps 'norm' clipping")
        grad_clip = dict(max_norm=float(clip.CLIP_VALUE), norm_type=float(clip.NORM_TYPE))
    optimizer_config: dict[str, Any] = dict(grad_clip=grad_clip)
    if s.AMP.ENABLED:
        optimizer_config["type"] = "Fp16OptimizerHook"
    out: dict[str, Any] = dict(
        model=model,
        data=data,
        optimizer=dict(type="SGD", lr=float(s.BASE_LR), momentum=float(s.MOMENTUM),
                       weight_decay=float(s.WEIGHT_DECAY), nesterov=bool(s.NESTEROV)),
        optimizer_config=optimizer_config,
        lr_config=lr_config,
        runner=dict(type="IterBasedRunner", max_iters=int(s.MAX_ITER)),
        checkpoint_config=dict(interval=int(s.CHECKPOINT_PERIOD), by_epoch=False),
        log_config=dict(interval=20, hooks=[dict(type="TextLoggerHook"), dict(type="TensorboardLoggerHook")]),
        work_dir=d2.OUTPUT_DIR,
        load_from=load_from,
        workflow=[("train", 1)],
    )
    if "test" in data:
        period = int(d2.TEST.EVAL_PERIOD) or int(s.MAX_ITER)
        out["evaluation"] = dict(interval=period, by_epoch=False, metric="bbox")
    if d2.SEED >= 0:
        out["seed"] = int(d2.SEED)
    if d2.CUDNN_BENCHMARK:
        out["cudnn_benchmark"] = True
    frozen = []
    if d2.MODEL.BACKBONE.FREEZE:
        frozen += FREEZE_GROUPS["backbone"]
    if d2.MODEL.PROPOSAL_GENERATOR.FREEZE:
        frozen += FREEZE_GROUPS["rpn"]
    if d2.MODEL.ROI_HEADS.FREEZE_FEAT:
        frozen += FREEZE_GROUPS["roi_feat"]
    canonical = mmcv_to_canonical(out)
    if frozen:
        canonical["frozen_modules"] = frozen
    canonical["device"] = str(d2.MODEL.DEVICE)
    if d2.MODEL.RESNETS.NORM == "SyncBN":
        canonical["sync_bn"] = "torch"
    return canonical
