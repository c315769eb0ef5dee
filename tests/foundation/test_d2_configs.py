"""Detectron2's own ``configs/`` tree (vendored in tests/fixtures/detectron2_configs, see its NOTICE.md).

Every yaml loads through ``get_cfg()`` + ``merge_from_file``. The box-detection ones translate into a
canonical config whose model kiln builds (datasets replaced by small generated data registered under
new names); configs that need a mask, keypoint, semantic or panoptic head stop with one message naming
the head. Cases that need another engineer's modules are listed in ``WAITING`` with what they wait for.
"""

from __future__ import annotations

import glob
import os.path as osp

import pytest

from kiln.cli.d2_config import add_fewshot_defaults
from kiln.config import get_cfg
from kiln.config.dialects.detectron2 import d2_to_canonical

ROOT = osp.join(osp.dirname(osp.dirname(__file__)), "fixtures", "detectron2_configs")
ALL = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, "**", "*.yaml"), recursive=True))
BOX_DIRS = ("COCO-Detection", "PascalVOC-Detection", "Detectron1-Comparisons", "Misc")
_HEAD_MESSAGES = (
    "MODEL.KEYPOINT_ON=True: kiln has no keypoint head",
    "kiln has no semantic segmentation",
    "kiln has no panoptic segmentation",
)



def _is_box_case(rel: str) -> bool:
    return rel.startswith(BOX_DIRS) and "/" in rel


def _load(rel: str):
    cfg = add_fewshot_defaults(get_cfg())
    cfg.merge_from_file(osp.join(ROOT, rel))
    return cfg


def test_the_whole_tree_is_vendored():
    assert len(ALL) == 92 and osp.isfile(osp.join(ROOT, "NOTICE.md"))
    assert len([r for r in ALL if r.startswith("COCO-Detection/")]) == 16


@pytest.mark.parametrize("rel", ALL)
def test_every_yaml_loads(rel):
    cfg = _load(rel)
    cfg.freeze()
    assert cfg.VERSION == 2 and cfg.MODEL.META_ARCHITECTURE


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Generated COCO-format and VOC data: d2cfg_coco_{train,val} and d2cfg_voc_{trainval,test}."""
    from upstream_helpers import make_mini_coco, make_mini_voc

    from kiln.data import DatasetCatalog
    from kiln.data.datasets import register_coco_instances
    from kiln.data.datasets.pascal_voc import register_pascal_voc

    root = str(tmp_path_factory.mktemp("d2cfg"))
    if "d2cfg_coco_train" not in DatasetCatalog.list():
        coco = make_mini_coco(osp.join(root, "coco"), num_train=2, num_val=2, size=64)
        for split in ("train", "val"):
            register_coco_instances(
                f"d2cfg_coco_{split}",
                {},
                osp.join(coco, f"annotations/instances_{split}2017.json"),
                osp.join(coco, f"{split}2017"),
            )
        voc = make_mini_voc(osp.join(root, "voc"), years=("2007",), num_train=2, num_test=2, size=64)
        for split in ("trainval", "test"):
            register_pascal_voc(f"d2cfg_voc_{split}", osp.join(voc, "VOC2007"), split, 2007)
    return root


def _translate(rel: str):
    cfg = _load(rel)
    voc = rel.startswith("PascalVOC")
    cfg.DATASETS.TRAIN = ("d2cfg_voc_trainval",) if voc else ("d2cfg_coco_train",)
    cfg.DATASETS.TEST = ("d2cfg_voc_test",) if voc else ("d2cfg_coco_val",)
    cfg.MODEL.DEVICE = "cpu"
    if cfg.MODEL.LOAD_PROPOSALS:
        cfg.DATASETS.PROPOSAL_FILES_TRAIN = ("train_proposals.pkl",)
        cfg.DATASETS.PROPOSAL_FILES_TEST = ("val_proposals.pkl",)
    cfg.freeze()
    return cfg, d2_to_canonical(cfg)


def _refused_head(rel: str) -> bool:
    cfg = _load(rel)
    return bool(cfg.MODEL.KEYPOINT_ON) or cfg.MODEL.META_ARCHITECTURE in (
        "SemanticSegmentor",
        "PanopticFPN",
    )


@pytest.mark.parametrize("rel", [r for r in ALL if _refused_head(r)])
def test_configs_needing_other_heads_load_then_stop_with_one_message(rel, small_data):
    with pytest.raises(ValueError) as info:
        _translate(rel)
    assert sum(m in str(info.value) for m in _HEAD_MESSAGES) == 1, str(info.value)


BOX_CASES = [r for r in ALL if _is_box_case(r) and not _refused_head(r) and not _load(r).MODEL.MASK_ON]
MASK_DIRS = ("COCO-InstanceSegmentation/", "Cityscapes/", "LVISv0.5-InstanceSegmentation/",
             "LVISv1-InstanceSegmentation/")
MASK_CASES = [r for r in ALL if r.startswith(MASK_DIRS)] + [
    "Detectron1-Comparisons/mask_rcnn_R_50_FPN_noaug_1x.yaml", "Misc/mask_rcnn_R_50_FPN_1x_cls_agnostic.yaml",
    "Misc/mask_rcnn_R_50_FPN_3x_gn.yaml", "quick_schedules/mask_rcnn_R_50_C4_instant_test.yaml",
    "quick_schedules/mask_rcnn_R_50_FPN_instant_test.yaml", "Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml",
    "Misc/cascade_mask_rcnn_R_50_FPN_3x.yaml", "quick_schedules/cascade_mask_rcnn_R_50_FPN_instant_test.yaml"]


@pytest.mark.parametrize("rel", MASK_CASES)
def test_mask_configs_translate_to_a_mask_rcnn_kiln_builds(rel, small_data):
    import torch

    from kiln.models import build_detector

    cfg, canonical = _translate(rel)
    assert cfg.MODEL.MASK_ON
    with torch.device("meta"):  # the build logic only
        model = build_detector(dict(canonical["model"], pretrained=None))
    cascade = cfg.MODEL.ROI_HEADS.NAME == "CascadeROIHeads"
    assert type(model).__name__ == ("CascadeRCNN" if cascade else "MaskRCNN")
    head = model.roi_head.mask_head  # Detectron2's cascade: one mask head for all stages
    assert head.num_classes == cfg.MODEL.ROI_HEADS.NUM_CLASSES
    assert head.class_agnostic == cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK
    assert head.conv_logits.out_channels == (1 if head.class_agnostic else head.num_classes)
    c4 = cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeads"
    assert len(head.convs) == (0 if c4 else cfg.MODEL.ROI_MASK_HEAD.NUM_CONV)
    # FPN: own 14x14 RoIAlign → 28x28 masks; C4: the res5 output of the box pooler (7x7) → 14x14 masks
    assert head.mask_size == (14 if c4 else 2 * cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION)
    rcnn = canonical["model"]["train_cfg"]["rcnn"]
    assert all(r["mask_size"] == head.mask_size for r in (rcnn if cascade else [rcnn]))
    assert (model.roi_head.mask_roi_extractor is None) == c4


def test_mask_cases_are_the_instance_segmentation_configs():
    assert len(MASK_CASES) == 26


@pytest.mark.parametrize("rel", BOX_CASES)
def test_box_configs_translate_to_a_model_kiln_builds(rel, small_data):
    from kiln.models import build_detector

    cfg, canonical = _translate(rel)
    model_cfg = dict(canonical["model"], pretrained=None)  # no ImageNet download in tests
    model = build_detector(model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params > 1_000_000
    if cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork":
        assert type(model).__name__ == "RPN" and hasattr(model, "rpn_head") and not hasattr(model, "roi_head")
        return
    head = canonical["model"].get("bbox_head") or canonical["model"]["roi_head"]["bbox_head"]
    classes = (
        cfg.MODEL.RETINANET.NUM_CLASSES
        if cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
        else cfg.MODEL.ROI_HEADS.NUM_CLASSES
    )
    assert (head[-1] if isinstance(head, list) else head)["num_classes"] == classes


def test_box_cases_are_the_detection_configs():
    assert len(BOX_CASES) == 19


def test_translations_follow_the_files(small_data):
    # a few facts of the files, read back from the canonical configs
    _, x101 = _translate("COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x.yaml")
    bb = x101["model"]["backbone"]
    assert (bb["type"], bb["depth"], bb["groups"], bb["base_width"], bb["style"]) == (
        "ResNeXt",
        101,
        32,
        8,
        "pytorch",
    )
    # (downloaded into the cache and converted when the model initialises)
    assert x101["model"]["pretrained"] == "detectron2://ImageNetPretrained/FAIR/X-101-32x8d.pkl"
    _, dc5 = _translate("COCO-Detection/faster_rcnn_R_50_DC5_1x.yaml")
    bb = dc5["model"]["backbone"]
    assert bb["strides"] == (1, 2, 2, 1) and bb["dilations"] == (1, 1, 1, 2) and bb["out_indices"] == (3,)
    assert dc5["model"]["rpn_head"]["anchor_generator"]["strides"] == [16]
    assert dc5["model"]["roi_head"]["bbox_roi_extractor"]["featmap_strides"] == [16]
    _, c4 = _translate("COCO-Detection/faster_rcnn_R_50_C4_1x.yaml")
    assert c4["model"]["roi_head"]["shared_head"]["type"] == "ResLayer"
    assert c4["model"]["roi_head"]["bbox_head"]["with_avg_pool"] is True
    _, retina = _translate("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    assert retina["model"]["neck"]["in_channels"] == [512, 1024, 2048]
    assert retina["model"]["bbox_head"]["anchor_generator"]["sizes"][0][1] == pytest.approx(32 * 2 ** (1 / 3))
    _, voc = _translate("PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml")
    assert voc["train_dataloader"]["dataset"]["type"] == "VOCDataset"
    assert voc["val_evaluator"] == dict(type="PascalVOCDetectionEvaluator", dataset_name="d2cfg_voc_test")
    _, rpn = _translate("COCO-Detection/rpn_R_50_FPN_1x.yaml")
    assert rpn["model"]["type"] == "RPN" and rpn["val_evaluator"] == dict(metric="proposal_fast")
    _, fast = _translate("COCO-Detection/fast_rcnn_R_50_FPN_1x.yaml")
    assert fast["model"]["type"] == "FastRCNN"
    assert fast["train_dataloader"]["dataset"]["proposal_file"] == "train_proposals.pkl"
    steps = [s["type"] for s in fast["train_dataloader"]["dataset"]["pipeline"]]
    assert steps[:3] == ["LoadImageFromFile", "LoadAnnotations", "LoadProposals"]


def test_kiln_train_runs_a_detectron2_config_from_its_tree(small_data, tmp_path):
    # Detectron2's own Faster R-CNN FPN file, shrunk on the command line (R18, 64-pixel images, 2 iterations).
    import json

    from kiln.cli import main

    out = tmp_path / "out"
    opts = [
        "MODEL.WEIGHTS",
        "",
        "MODEL.RESNETS.DEPTH",
        "18",
        "MODEL.RESNETS.RES2_OUT_CHANNELS",
        "64",
        "DATASETS.TRAIN",
        "('d2cfg_coco_train',)",
        "DATASETS.TEST",
        "('d2cfg_coco_val',)",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.STEPS",
        "(1,)",
        "SOLVER.WARMUP_ITERS",
        "0",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "INPUT.MIN_SIZE_TRAIN",
        "(64,)",
        "INPUT.MAX_SIZE_TRAIN",
        "64",
        "INPUT.MIN_SIZE_TEST",
        "64",
        "INPUT.MAX_SIZE_TEST",
        "64",
        "DATALOADER.NUM_WORKERS",
        "0",
        "OUTPUT_DIR",
        str(out),
        "SEED",
        "1",
    ]
    path = osp.join(ROOT, "COCO-Detection", "faster_rcnn_R_50_FPN_1x.yaml")
    assert main(["train", "--config-file", path, "--opts", *opts]) == 0
    metrics = next(p for p in out.iterdir() if p.name.startswith("metrics.json"))
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert losses and {"loss_rpn_cls", "loss_cls"} <= set(losses[-1])
    assert any(
        k.startswith("bbox/AP") for r in records for k in r
    )  # TEST.EVAL_PERIOD 0: evaluated at the end
