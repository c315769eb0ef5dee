"""Detectron2 ``INPUT.*``, ``DATASETS.*``, ``DATALOADER.*``, ``TEST.AUG.*`` -> datasets, pipelines, loaders.

Written in MMDetection 2.x data spelling (``data=dict(train=..., val=..., test=...)``) that
:func:`~.mmcv.mmcv_to_canonical` turns into ``*_dataloader``; the loader settings MMDetection 2.x
cannot say (sampler, aspect-ratio grouping) are set on the canonical dict by :func:`loader_settings`.
Catalog names resolve through :mod:`kiln.data`'s ``DatasetCatalog``/``MetadataCatalog``: COCO-format
entries (``json_file``, ``image_root``) become ``CocoDataset``, Pascal VOC entries (``dirname``,
``split``, ``year``) ``VOCDataset``, and each picks its evaluator (COCO bbox AP / Detectron2's VOC AP).
"""

from __future__ import annotations

from typing import Any

from .d2_check import refuse, warn_unread

__all__ = ["pipelines", "catalog_dataset", "evaluator_for", "loader_settings", "tta_settings"]


def _resize(d2: Any) -> dict:
    inp = d2.INPUT
    min_train = inp.MIN_SIZE_TRAIN
    min_train = [min_train] if isinstance(min_train, int) else [int(s) for s in min_train]
    max_train = int(inp.MAX_SIZE_TRAIN)
    if not min_train or min(min_train) <= 0 or max_train <= 0:
        raise refuse(
            "INPUT.MIN_SIZE_TRAIN",
            inp.MIN_SIZE_TRAIN,
            "kiln always resizes training images "
            "(ResizeShortestEdge): give positive sizes and a positive INPUT.MAX_SIZE_TRAIN",
        )
    sampling = inp.MIN_SIZE_TRAIN_SAMPLING
    if sampling == "range":
        if len(min_train) != 2:
            raise refuse(
                "INPUT.MIN_SIZE_TRAIN",
                inp.MIN_SIZE_TRAIN,
                "with MIN_SIZE_TRAIN_SAMPLING 'range' give (min, max), as Detectron2",
            )
        return dict(
            type="Resize",
            img_scale=[(max_train, min_train[0]), (max_train, min_train[1])],
            multiscale_mode="range",
            keep_ratio=True,
        )
    if sampling != "choice":
        raise refuse("INPUT.MIN_SIZE_TRAIN_SAMPLING", sampling, "expected 'choice' or 'range'")
    if len(min_train) == 1:
        return dict(type="Resize", img_scale=(max_train, min_train[0]), keep_ratio=True)
    return dict(
        type="Resize", img_scale=[(max_train, s) for s in min_train], multiscale_mode="value", keep_ratio=True
    )


def _crop(d2: Any) -> dict | None:
    crop = d2.INPUT.CROP
    if not crop.ENABLED:
        for key in ("TYPE", "SIZE"):
            warn_unread(d2, f"INPUT.CROP.{key}", "only read with INPUT.CROP.ENABLED True")
        return None
    if crop.TYPE not in ("relative_range", "relative", "absolute", "absolute_range"):
        raise refuse(
            "INPUT.CROP.TYPE", crop.TYPE, "expected relative_range, relative, absolute or absolute_range"
        )
    size = [float(s) if "relative" in crop.TYPE else int(s) for s in crop.SIZE]
    if len(size) != 2:
        raise refuse("INPUT.CROP.SIZE", list(crop.SIZE), "expected two numbers (height, width)")
    # Detectron2 crops before resizing and keeps crops without boxes (they are filtered later, if at all).
    return dict(type="RandomCrop", crop_type=crop.TYPE, crop_size=size, allow_negative_crop=True)


def pipelines(d2: Any, with_proposals: bool) -> tuple[list, list]:
    """(train pipeline, test pipeline) in MMDetection 2.x steps."""
    inp = d2.INPUT
    fmt = inp.FORMAT
    if fmt not in ("BGR", "RGB"):
        raise refuse("INPUT.FORMAT", fmt, "kiln maps BGR and RGB images only")
    for key in ("MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD"):
        values = d2.MODEL.PIXEL_MEAN if key.endswith("MEAN") else d2.MODEL.PIXEL_STD
        if len(values) != 3:
            raise refuse(key, list(values), "expected three values (one per colour channel)")
    norm = dict(
        type="Normalize", mean=list(d2.MODEL.PIXEL_MEAN), std=list(d2.MODEL.PIXEL_STD), to_rgb=fmt == "RGB"
    )
    flip = {"horizontal": 0.5, "none": 0.0, "vertical": 0.5}.get(inp.RANDOM_FLIP)
    if flip is None:
        raise refuse("INPUT.RANDOM_FLIP", inp.RANDOM_FLIP, "expected horizontal, vertical or none")
    flip_step = dict(type="RandomFlip", flip_ratio=flip)
    if inp.RANDOM_FLIP == "vertical":
        flip_step["direction"] = "vertical"
    keys = ["img", "gt_bboxes", "gt_labels"] + (["proposals"] if with_proposals else [])
    load = dict(type="LoadAnnotations", with_bbox=True)
    if d2.MODEL.MASK_ON:
        # DatasetMapper's instance masks: polygons stay polygons, 'bitmask' rasterizes them on load.
        if inp.MASK_FORMAT not in ("polygon", "bitmask"):
            raise refuse("INPUT.MASK_FORMAT", inp.MASK_FORMAT, "expected 'polygon' or 'bitmask'")
        load.update(with_mask=True, poly2mask=inp.MASK_FORMAT == "bitmask")
        keys.append("gt_masks")
    train: list[dict] = [dict(type="LoadImageFromFile"), load]
    if with_proposals:
        train.append(
            dict(type="LoadProposals", num_max_proposals=int(d2.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN))
        )
    crop = _crop(d2)
    if crop:
        if d2.MODEL.MASK_ON:  # DatasetMapper's recompute_boxes: the tight box of the cropped mask
            crop["recompute_bbox"] = True
        train.append(crop)
    train += [
        _resize(d2),
        flip_step,
        norm,
        dict(type="Pad", size_divisor=32),
        dict(type="DefaultFormatBundle"),
        dict(type="Collect", keys=keys),
    ]
    min_test, max_test = int(inp.MIN_SIZE_TEST), int(inp.MAX_SIZE_TEST)
    if min_test <= 0 or max_test <= 0:
        raise refuse(
            "INPUT.MIN_SIZE_TEST",
            min_test,
            "kiln always resizes test images: give positive INPUT.MIN_SIZE_TEST and INPUT.MAX_SIZE_TEST",
        )
    test: list[dict] = [dict(type="LoadImageFromFile")]
    if with_proposals:
        test.append(
            dict(type="LoadProposals", num_max_proposals=int(d2.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST))
        )
    test_keys = ["img"] + (["proposals"] if with_proposals else [])
    test.append(
        dict(
            type="MultiScaleFlipAug",
            img_scale=(max_test, min_test),
            flip=False,
            transforms=[
                dict(type="Resize", keep_ratio=True),
                dict(type="RandomFlip"),
                dict(norm),
                dict(type="Pad", size_divisor=32),
                dict(type="ImageToTensor", keys=["img"]),
                dict(type="Collect", keys=test_keys),
            ],
        )
    )
    return train, test


def tta_settings(d2: Any, test_pipeline: list) -> dict[str, Any]:
    """``tta_pipeline``/``tta_model`` from ``TEST.AUG`` (``{}`` when it is off)."""
    aug = d2.TEST.AUG
    if not aug.ENABLED:
        for key in ("MIN_SIZES", "MAX_SIZE", "FLIP"):
            warn_unread(d2, f"TEST.AUG.{key}", "only read with TEST.AUG.ENABLED True")
        return {}
    sizes = [int(s) for s in aug.MIN_SIZES]
    if not sizes or min(sizes) <= 0 or int(aug.MAX_SIZE) <= 0:
        raise refuse("TEST.AUG.MIN_SIZES", list(aug.MIN_SIZES), "give positive sizes and a positive MAX_SIZE")
    msfa = dict(test_pipeline[-1])
    # Detectron2's GeneralizedRCNNWithTTA: every min size, each also flipped when FLIP; the views'
    # boxes are merged by per-class NMS at the test NMS threshold, keeping DETECTIONS_PER_IMAGE.
    msfa.update(img_scale=[(int(aug.MAX_SIZE), s) for s in sizes], flip=bool(aug.FLIP))
    if d2.MODEL.META_ARCHITECTURE in ("RetinaNet", "FCOS", "ATSS"):  # dense heads: RETINANET's NMS
        iou = float(d2.MODEL.RETINANET.NMS_THRESH_TEST)
    elif d2.MODEL.META_ARCHITECTURE == "ProposalNetwork":
        iou = float(d2.MODEL.RPN.NMS_THRESH)
    else:
        iou = float(d2.MODEL.ROI_HEADS.NMS_THRESH_TEST)
    return dict(
        tta_pipeline=[*test_pipeline[:-1], msfa],
        tta_model=dict(
            type="DetTTAModel",
            tta_cfg=dict(
                nms=dict(type="nms", iou_threshold=iou), max_per_img=int(d2.TEST.DETECTIONS_PER_IMAGE)
            ),
        ),
    )


def _names(names: Any) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def catalog_dataset(d2: Any, key: str, pipeline: list, test_mode: bool, proposal_key: str | None) -> dict:
    """The dataset dict for the catalog names in ``key`` (``DATASETS.TRAIN``/``TEST``)."""
    from kiln.data import DatasetCatalog, MetadataCatalog

    names = _names(d2.DATASETS[key.split(".")[1]])
    if not names:
        raise refuse(key, names, "name at least one registered dataset")
    proposals: list[str] = []
    if proposal_key:
        proposals = _names(d2.DATASETS[proposal_key.split(".")[1]])
        if len(proposals) != len(names):
            raise refuse(
                proposal_key, proposals, f"give one proposal file per dataset in {key} ({len(names)})"
            )
    parts = []
    for i, name in enumerate(names):
        if name not in DatasetCatalog.list():
            raise refuse(
                key,
                names,
                f"dataset '{name}' is not registered; registered: "
                f"{', '.join(sorted(DatasetCatalog.list())) or 'none'}. Register it with "
                f"register_coco_instances(name, {{}}, json_file, image_root) or register_pascal_voc",
            )
        meta = MetadataCatalog.get(name)
        if not meta.get("json_file") and not meta.get("dirname"):
            DatasetCatalog.get(name)  # lazily registered sets (shapes) write their json on first load
            meta = MetadataCatalog.get(name)
        if meta.get("json_file"):
            ds = dict(
                type="CocoDataset",
                ann_file=meta.json_file,
                img_prefix=meta.get("image_root") or "",
                pipeline=pipeline,
                test_mode=test_mode,
            )
        elif meta.get("dirname"):
            dirname = meta.dirname
            ds = dict(
                type="VOCDataset",
                ann_file=f"{dirname}/ImageSets/Main/{meta.get('split', 'trainval')}.txt",
                img_prefix=dirname,
                pipeline=pipeline,
                test_mode=test_mode,
            )
        else:
            raise refuse(
                key,
                names,
                f"dataset '{name}' has neither json_file (COCO format) nor dirname (Pascal "
                f"VOC) in its metadata; kiln maps those two kinds of catalog entries",
            )
        if meta.get("thing_classes"):
            ds["classes"] = list(meta.thing_classes)
        if not test_mode:
            ds["filter_empty_gt"] = bool(d2.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
        if proposals:
            ds["proposal_file"] = proposals[i]
        parts.append(ds)
    return parts[0] if len(parts) == 1 else dict(type="ConcatDataset", datasets=parts)


def evaluator_for(d2: Any) -> dict:
    """The canonical ``val_evaluator`` for ``DATASETS.TEST`` (Detectron2 picks it by the metadata)."""
    from kiln.data import MetadataCatalog

    if d2.MODEL.META_ARCHITECTURE == "ProposalNetwork":
        return dict(metric="proposal_fast")
    names = _names(d2.DATASETS.TEST)
    kinds = {MetadataCatalog.get(n).get("evaluator_type") or "coco" for n in names}
    if kinds == {"pascal_voc"}:
        if len(names) != 1:
            raise refuse("DATASETS.TEST", names, "kiln evaluates one Pascal VOC test set per run")
        return dict(type="PascalVOCDetectionEvaluator", dataset_name=names[0])
    if kinds != {"coco"}:
        raise refuse(
            "DATASETS.TEST",
            names,
            f"mixes evaluator types {sorted(kinds)}; kiln evaluates the test "
            f"sets of one run with one evaluator",
        )
    # Detectron2's COCOEvaluator adds mask AP when the predictions carry masks (MODEL.MASK_ON).
    return dict(metric=["bbox", "segm"]) if d2.MODEL.MASK_ON else dict(metric="bbox")


def loader_settings(d2: Any, canonical: dict) -> None:
    """Sampler and aspect-ratio grouping of ``train_dataloader`` (canonical spelling)."""
    dl = d2.DATALOADER
    loader = canonical["train_dataloader"]
    if not dl.ASPECT_RATIO_GROUPING:
        loader["batch_sampler"] = None  # no grouping: batches mix landscape and portrait images
    name = dl.SAMPLER_TRAIN
    if name == "TrainingSampler":
        # kiln's default training loader is Detectron2's TrainingSampler (infinite, shuffled, seeded).
        pass
    elif name == "RepeatFactorTrainingSampler":
        loader["sampler"] = dict(type="RepeatFactorTrainingSampler", repeat_thresh=float(dl.REPEAT_THRESHOLD))
        if not dl.REPEAT_SQRT:
            loader["sampler"]["sqrt"] = False  # repeat factor t/f instead of LVIS's sqrt(t/f)
    elif name == "RandomSubsetTrainingSampler":
        ratio = float(dl.RANDOM_SUBSET_RATIO)
        if not 0.0 < ratio <= 1.0:
            raise refuse("DATALOADER.RANDOM_SUBSET_RATIO", ratio, "expected a fraction in (0, 1]")
        loader["sampler"] = dict(type="RandomSubsetTrainingSampler", subset_ratio=ratio)
    else:
        raise refuse(
            "DATALOADER.SAMPLER_TRAIN",
            name,
            "expected TrainingSampler, RepeatFactorTrainingSampler or RandomSubsetTrainingSampler",
        )
    if name != "RepeatFactorTrainingSampler":
        for key in ("REPEAT_THRESHOLD", "REPEAT_SQRT"):
            warn_unread(
                d2, f"DATALOADER.{key}", "only read with DATALOADER.SAMPLER_TRAIN RepeatFactorTrainingSampler"
            )
    if name != "RandomSubsetTrainingSampler":
        warn_unread(
            d2,
            "DATALOADER.RANDOM_SUBSET_RATIO",
            "only read with DATALOADER.SAMPLER_TRAIN RandomSubsetTrainingSampler",
        )
