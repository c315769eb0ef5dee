"""Seed 002's Python API on a real Detectron2 CfgNode: default_argument_parser, default_setup,
DefaultTrainer (kiln's detectors from the cfg, Detectron2's outputs, default evaluator, VIS_PERIOD),
DefaultPredictor."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from kiln.config import get_cfg
from kiln.data import DatasetCatalog, MetadataCatalog
from kiln.engine import default_argument_parser, default_setup
from kiln.engine.trainer import DefaultTrainer
from kiln.models.inference import DefaultPredictor

YAML = """\
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  BACKBONE:
    NAME: "build_resnet_fpn_backbone"
  RESNETS:
    DEPTH: 18
    RES2_OUT_CHANNELS: 64
    OUT_FEATURES: ["res2", "res3", "res4", "res5"]
  FPN:
    IN_FEATURES: ["res2", "res3", "res4", "res5"]
    OUT_CHANNELS: 32
  ANCHOR_GENERATOR:
    SIZES: [[32], [64], [128], [256], [512]]
  RPN:
    IN_FEATURES: ["p2", "p3", "p4", "p5", "p6"]
  ROI_HEADS:
    NAME: "StandardROIHeads"
    IN_FEATURES: ["p2", "p3", "p4", "p5"]
    NUM_CLASSES: 3
  ROI_BOX_HEAD:
    NAME: "FastRCNNConvFCHead"
    NUM_FC: 2
    POOLER_RESOLUTION: 7
  DEVICE: cpu
  PIXEL_STD: [57.375, 57.12, 58.395]
DATASETS:
  TRAIN: ("d2api_train",)
  TEST: ("d2api_val",)
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.001
  STEPS: ()
  WARMUP_ITERS: 0
  MAX_ITER: 3
  CHECKPOINT_PERIOD: 2
INPUT:
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 64
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 64
DATALOADER:
  NUM_WORKERS: 0
VIS_PERIOD: 2
SEED: 5
"""


@pytest.fixture(scope="module")
def yaml_path(tmp_path_factory):
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    root = tmp_path_factory.mktemp("d2api")
    for split, n in (("train", 4), ("val", 2)):
        if f"d2api_{split}" not in DatasetCatalog.list():
            p = generate_shapes_dataset(str(root), num_images=n, image_size=64, split=split)
            register_coco_instances(f"d2api_{split}", {}, p["ann_file"], p["img_prefix"])
    path = root / "faster.yaml"
    path.write_text(YAML)
    return str(path)


def _cfg(yaml_path, out, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(yaml_path)
    cfg.merge_from_list(["OUTPUT_DIR", str(out), *opts])
    cfg.freeze()
    return cfg


@pytest.fixture(scope="module")
def trained(yaml_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("d2api_run")
    cfg = _cfg(yaml_path, out)
    default_setup(cfg, None)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return cfg, trainer, out


def test_default_argument_parser_takes_defrcns_flags_and_trailing_opts():
    args = default_argument_parser().parse_args(
        ["--config-file", "a.yaml", "--eval-all", "--start-iter", "100", "--end-iter", "900",
         "MODEL.WEIGHTS", "w.pth", "OUTPUT_DIR", "out"])
    assert args.eval_all and (args.start_iter, args.end_iter, args.eval_iter) == (100, 900, -1)
    assert args.opts == ["MODEL.WEIGHTS", "w.pth", "OUTPUT_DIR", "out"]


def test_default_trainer_builds_kilns_detector_from_the_cfg_and_writes_detectron2_outputs(trained):
    cfg, trainer, out = trained
    assert type(trainer.model).__name__ == "FasterRCNN" and trainer.iter == 3
    names = set(os.listdir(out))
    assert {"model_0000001.pth", "model_final.pth", "last_checkpoint", "metrics.json", "config.yaml"} <= names
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and "total_loss" in rows[-1]
    # Detectron2's normalization of the loader's BGR images comes from MODEL.PIXEL_MEAN.
    assert trainer.model.pixel_mean.flatten().tolist() == pytest.approx(list(cfg.MODEL.PIXEL_MEAN))


def test_vis_period_draws_proposals_into_the_output_dirs_event_file(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, out = trained
    acc = EventAccumulator(str(out), size_guidance={"images": 0})
    acc.Reload()
    tag = "Left: GT bounding boxes;  Right: Predicted proposals"
    assert [e.step for e in acc.Images(tag)] == [0, 2]


def test_test_uses_the_datasets_evaluator_type_and_writes_inference_results(trained):
    cfg, trainer, out = trained
    results = DefaultTrainer.test(cfg, trainer.model)
    assert set(results) == {"d2api_val"} and "bbox/AP" in results["d2api_val"]
    dets = json.loads((out / "inference" / "coco_instances_results.json").read_text())
    assert isinstance(dets, list)


def test_an_unknown_evaluator_type_asks_for_an_override(trained):
    cfg, _, _ = trained
    if "d2api_other" not in DatasetCatalog.list():
        DatasetCatalog.register("d2api_other", lambda: [])
        MetadataCatalog.get("d2api_other").set(evaluator_type="lvis")
    with pytest.raises(NotImplementedError, match="'d2api_other' has evaluator_type='lvis'.*Override"):
        DefaultTrainer.build_evaluator(cfg, "d2api_other")


def test_resume_or_load_continues_after_model_final(yaml_path, trained):
    _, _, out = trained
    cfg = _cfg(yaml_path, out, "SOLVER.MAX_ITER", "4", "VIS_PERIOD", "0")
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.iter == 3
    trainer.train()
    assert trainer.iter == 4
    ckpt = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["meta"]["iter"] == 4


def test_default_predictor_returns_instances_in_the_images_pixels(yaml_path, trained, tmp_path):
    _, trainer, out = trained
    cfg = _cfg(yaml_path, tmp_path, "MODEL.WEIGHTS", str(out / "model_0000001.pth"),
               "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    predictor = DefaultPredictor(cfg)
    saved = torch.load(out / "model_0000001.pth", map_location="cpu", weights_only=True)["model"]
    key = next(k for k in saved if k.endswith("weight"))
    assert torch.equal(predictor.model.state_dict()[key], saved[key])  # MODEL.WEIGHTS loaded
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    inst = predictor(image)["instances"]
    assert inst.image_size == (96, 128)
    boxes = inst.pred_boxes.tensor
    assert len(inst.scores) == len(inst.pred_classes) == len(boxes) > 0
    assert float(boxes[:, 2].max()) <= 128 + 1e-3 and float(boxes[:, 3].max()) <= 96 + 1e-3
    with pytest.raises(ValueError, match="expected an H×W×3 uint8 BGR image"):
        predictor(image.astype(np.float32))


def test_default_predictor_names_missing_weights(yaml_path, tmp_path):
    cfg = _cfg(yaml_path, tmp_path, "MODEL.WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS .*nope.pth' does not exist"):
        DefaultPredictor(cfg)


class BrightBoxDetector(torch.nn.Module):
    """A real (if simple) detector under kiln's model contract: the box around the bright pixels of each
    Detectron2-form sample, mapped to the original pixels from height/width."""

    def forward(self, batch):
        out = []
        for s in batch:
            img = s["image"]
            vh, vw = img.shape[-2:]
            ys, xs = torch.nonzero(img[0] > 128, as_tuple=True)
            sx, sy = s["width"] / vw, s["height"] / vh
            box = torch.tensor([[xs.min() * sx, ys.min() * sy, (xs.max() + 1) * sx, (ys.max() + 1) * sy]])
            out.append({"boxes": box.float(), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])})
        return out


def test_tta_views_come_back_to_the_images_pixels_and_merge_into_one_box():
    from kiln.models.d2_tta import DetectorWithTTA

    image = np.full((60, 80, 3), 20, np.uint8)
    image[20:40, 10:30] = 250  # asymmetric: a flipped view finds it at x 50..70
    tta = DetectorWithTTA(None, BrightBoxDetector().eval(), min_sizes=(30, 60, 90), max_size=400, flip=True,
                          nms_thresh=0.5, max_dets=10)
    assert len(tta._views(image)) == 6
    # Given at the test mapper's size (30 px short edge): TTA starts again from the original 60x80.
    small = cv2_resize(image, 40, 30)
    (res,) = tta([{"image": torch.from_numpy(small.transpose(2, 0, 1).copy()), "height": 60, "width": 80}])
    assert len(res["boxes"]) == 1
    assert res["boxes"][0].tolist() == pytest.approx([10, 20, 30, 40], abs=1.5)


def cv2_resize(image, w, h):
    import cv2

    return cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)


def test_tta_needs_an_eval_mode_model():
    from kiln.models.d2_tta import DetectorWithTTA

    with pytest.raises(ValueError, match="must be in eval mode"):
        DetectorWithTTA(None, BrightBoxDetector().train(), min_sizes=(32,), max_size=64, flip=False,
                        nms_thresh=0.5, max_dets=10)


def test_test_with_tta_reports_suffixed_metrics_and_writes_inference_tta(yaml_path, trained):
    _, trainer, out = trained
    cfg = _cfg(yaml_path, out, "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)",
               "TEST.AUG.MAX_SIZE", "100")
    res = DefaultTrainer.test_with_TTA(cfg, trainer.runner.unwrapped_model)
    assert set(res) == {"d2api_val"} and "bbox/AP_TTA" in res["d2api_val"]
    assert "bbox/AP" not in res["d2api_val"]
    assert (out / "inference_TTA" / "coco_instances_results.json").is_file()


def test_build_model_takes_a_project_cfg_with_its_own_extra_keys(yaml_path, tmp_path):
    cfg = get_cfg()
    cfg.set_new_allowed(True)  # a DeFRCN-style project adds its own keys (seed 002's _CC)
    cfg.merge_from_file(yaml_path)
    cfg.MODEL.ROI_HEADS.ENABLE_DECOUPLE = False
    cfg.TEST.PCB_ENABLE = False
    cfg.freeze()
    model = DefaultTrainer.build_model(cfg)
    assert type(model).__name__ == "FasterRCNN" and model.roi_head.num_classes == 3
    assert cfg.MODEL.ROI_HEADS.ENABLE_DECOUPLE is False and cfg.is_frozen()  # the user's cfg untouched


def test_with_eval_period_0_the_test_sets_are_evaluated_once_after_the_last_iteration(trained):
    # Detectron2's EvalHook(0, ...) evaluates in after_train only; the file sets no TEST.EVAL_PERIOD.
    cfg, trainer, out = trained
    assert cfg.TEST.EVAL_PERIOD == 0 and cfg.DATASETS.TEST
    results = trainer.runner.last_metrics.get("val")
    assert results and "d2api_val/bbox/AP" in results, results


def test_an_rpn_only_model_is_evaluated_by_proposal_recall(yaml_path, tmp_path):
    cfg = _cfg(yaml_path, tmp_path, "MODEL.META_ARCHITECTURE", "ProposalNetwork")
    evaluator = DefaultTrainer.build_evaluator(cfg, "d2api_val")
    assert type(evaluator).__name__ == "CocoMetric" and "proposal_fast" in str(evaluator.metrics)
    box = DefaultTrainer.build_evaluator(_cfg(yaml_path, tmp_path), "d2api_val")
    assert type(box).__name__ == "COCOEvaluator"
