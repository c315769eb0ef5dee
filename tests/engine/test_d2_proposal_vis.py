"""ProposalVisualizationHook (Detectron2's VIS_PERIOD): ground truth and top RPN proposals, side by side, in a
real TensorBoard event file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from kiln.config import Config
from kiln.engine import Runner
from kiln.engine.hooks import HookError, ProposalVisualizationHook, TensorboardLoggerHook
from kiln.registry import MODELS
from kiln.structures import Boxes, Instances

TAG = "Left: GT bounding boxes;  Right: Predicted proposals"


def _model(name):
    cfg = Config.fromfile(f"kiln::shapes/{name}_r18_fpn_shapes.py")
    return MODELS.build(dict(cfg.model))


def _batches(n=3, size=64):
    """Detectron2-form samples: a grey image with one white square, labelled with its box."""
    out = []
    for i in range(n):
        img = np.full((3, size, size), 90, np.uint8)
        img[:, 16 + i:40 + i, 20:44] = 230
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor([[20.0, 16.0 + i, 44.0, 40.0 + i]]))
        inst.gt_classes = torch.tensor([1])
        out.append([{"image": torch.from_numpy(img), "instances": inst, "height": size, "width": size}])
    return out


def _run(tmp_path, model, hook, max_iters=3):
    runner = Runner(model, work_dir=str(tmp_path), train_dataloader=_batches(),
                    optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.001), max_iters=max_iters,
                    default_hooks={"logger": None, "checkpoint": None},
                    custom_hooks=[hook, TensorboardLoggerHook(interval=1, log_dir=str(tmp_path / "tb"))])
    runner.train()
    return runner


def test_faster_rcnn_training_writes_gt_and_top_proposals_side_by_side_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = _model("faster_rcnn")
    _run(tmp_path, model, ProposalVisualizationHook(interval=2, max_proposals=20))
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    events = acc.Images(TAG)
    assert [e.step for e in events] == [0, 2]  # Detectron2 draws when iter % VIS_PERIOD == 0
    img = cv2.imdecode(np.frombuffer(events[-1].encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (64, 128)  # two 64x64 copies of the input, side by side
    left, right = img[:, :64].astype(int), img[:, 64:].astype(int)
    # Left: the ground-truth box in green (BGR 0,255,0) on the third image (square moved by 2 px).
    green = (left[:, :, 1] > 200) & (left[:, :, 0] < 60) & (left[:, :, 2] < 60)
    ys, xs = np.nonzero(green)
    assert abs(xs.min() - 20) <= 2 and abs(ys.min() - 18) <= 2
    # Right: proposals drawn in their colour, none of the GT green.
    drawn = (right[:, :, 0] > 200) & (right[:, :, 1] > 100) & (right[:, :, 1] < 160) & (right[:, :, 2] < 60)
    assert drawn.any() and not ((right[:, :, 1] > 200) & (right[:, :, 0] < 60)).any()
    assert model.keep_proposals is False and model.last_proposals is None  # released after training


def test_only_max_proposals_best_are_drawn():
    hook = ProposalVisualizationHook(interval=1, max_proposals=1)
    sample = _batches(1)[0][0]
    one = hook.draw(sample, torch.tensor([[2.0, 2.0, 10.0, 10.0], [40.0, 40.0, 60.0, 60.0]]))[:, 64:]
    hook.max_proposals = 2
    two = hook.draw(sample, torch.tensor([[2.0, 2.0, 10.0, 10.0], [40.0, 40.0, 60.0, 60.0]]))[:, 64:]
    assert (one[50, 40:60] == one[50, 40:60][0]).all() and not np.array_equal(one, two)


def test_retinanet_makes_no_proposals_and_is_refused(tmp_path):
    with pytest.raises(HookError, match="RetinaNet makes none.*set VIS_PERIOD 0"):
        _run(tmp_path, _model("retinanet"), ProposalVisualizationHook(interval=2))


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval must be >= 1 \\(VIS_PERIOD > 0\\), got 0"):
        ProposalVisualizationHook(interval=0)


def _bgr(size=32):
    img = np.zeros((size, size, 3), np.uint8)
    img[4:12, 6:20] = (255, 0, 0)  # blue in BGR: shows whether the channel order survives
    img[20:28, 2:9] = (10, 200, 90)
    return img


def test_images_and_gt_are_recovered_from_every_batch_form():
    from kiln.engine.hooks.proposal_visualization import batch_image_and_gt
    from kiln.structures import DetDataSample, InstanceData

    bgr = _bgr()
    gt = torch.tensor([[6.0, 4.0, 20.0, 12.0]])
    # MM pipeline: normalized RGB (to_rgb=True), un-normalized with img_norm_cfg from img_metas.
    norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    rgb = bgr[:, :, ::-1].astype(np.float32)
    img = torch.from_numpy(((rgb - norm["mean"]) / norm["std"]).transpose(2, 0, 1).astype(np.float32))
    mm = {"img": img, "img_metas": {"img_norm_cfg": norm}, "gt_bboxes": gt}
    # MMDetection 3.x: BGR as loaded, ground truth in data_samples.
    ds = DetDataSample(metainfo={"img_shape": (32, 32)})
    ds.gt_instances = InstanceData(bboxes=gt, labels=torch.tensor([0]))
    mm3 = {"inputs": torch.from_numpy(bgr.transpose(2, 0, 1).copy()), "data_samples": ds}
    # Detectron2: INPUT.FORMAT RGB here.
    inst = Instances((32, 32))
    inst.gt_boxes = Boxes(gt)
    d2 = {"image": torch.from_numpy(bgr[:, :, ::-1].transpose(2, 0, 1).copy()), "instances": inst}
    for sample, fmt in ((mm, "BGR"), (mm3, "BGR"), (d2, "RGB")):
        image, boxes = batch_image_and_gt(sample, fmt)
        assert np.abs(image.astype(int) - bgr.astype(int)).max() <= 1
        assert boxes.tolist() == gt.tolist()
    with pytest.raises(KeyError, match="expected 'image' \\(Detectron2\\), 'img'"):
        batch_image_and_gt({"pixels": 1})


def test_a_translated_detectron2_run_draws_from_its_mm_pipeline_batches(tmp_path):
    """VIS_PERIOD as the translator emits it (custom_hooks), on the batches `kiln train x.yaml` feeds."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kiln.cli.common import load_canonical_config
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    if "d2vis_train" not in DatasetCatalog.list():
        p = generate_shapes_dataset(str(tmp_path / "data"), num_images=2, image_size=64, split="train")
        register_coco_instances("d2vis_train", {}, p["ann_file"], p["img_prefix"])
    yaml = tmp_path / "frcnn.yaml"
    yaml.write_text(
        "MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n  BACKBONE:\n    NAME: build_resnet_fpn_backbone\n"
        "  RESNETS:\n    DEPTH: 18\n    RES2_OUT_CHANNELS: 64\n    OUT_FEATURES: [res2, res3, res4, res5]\n"
        "  FPN:\n    IN_FEATURES: [res2, res3, res4, res5]\n    OUT_CHANNELS: 32\n"
        "  ANCHOR_GENERATOR:\n    SIZES: [[32], [64], [128], [256], [512]]\n"
        "  RPN:\n    IN_FEATURES: [p2, p3, p4, p5, p6]\n"
        "  ROI_HEADS:\n    NAME: StandardROIHeads\n    IN_FEATURES: [p2, p3, p4, p5]\n    NUM_CLASSES: 3\n"
        "  ROI_BOX_HEAD:\n    NAME: FastRCNNConvFCHead\n    NUM_FC: 2\n    POOLER_RESOLUTION: 7\n"
        "DATASETS:\n  TRAIN: ('d2vis_train',)\n  TEST: ()\nSOLVER:\n  IMS_PER_BATCH: 1\n  MAX_ITER: 2\n"
        "  STEPS: ()\n  WARMUP_ITERS: 0\nINPUT:\n  MIN_SIZE_TRAIN: (64,)\n  MAX_SIZE_TRAIN: 64\n"
        "DATALOADER:\n  NUM_WORKERS: 0\n")
    cfg = load_canonical_config(str(yaml), (), ["OUTPUT_DIR", str(tmp_path / "out")])
    cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="ProposalVisualizationHook", interval=1)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    tb = [h.log_dir for h in runner.hooks if isinstance(h, TensorboardLoggerHook)]
    acc = EventAccumulator(tb[0] or str(tmp_path / "out" / "tf_logs"), size_guidance={"images": 0})
    acc.Reload()
    assert [e.step for e in acc.Images(TAG)] == [0, 1]
