"""Mask outputs of the inference APIs: ``inference_detector`` (``masks``) and Detectron2's
``DefaultPredictor`` (``instances.pred_masks``), at the size of the image given."""

from __future__ import annotations

import numpy as np
import torch

from kiln.config import Config, get_cfg
from kiln.models.inference import DefaultPredictor, inference_detector, init_detector


def test_inference_detector_returns_masks_at_the_images_size():
    # The shipped shapes config resizes to 128 px; a 100×150 image comes back with 100×150 masks.
    cfg = Config.fromfile("kiln::shapes/mask_rcnn_r18_fpn_shapes.py")
    model = init_detector(cfg, cfg_options={"model.test_cfg.rcnn.score_thr": 0.0})
    image = np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8)
    out = inference_detector(model, image)
    n = len(out["boxes"])
    assert n > 0 and out["masks"].shape == (n, 100, 150) and out["masks"].dtype == torch.bool
    assert out["masks"].device.type == "cpu"


def test_default_predictor_gives_pred_masks_in_the_images_pixels(tmp_path):
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    if "maskpred_train" not in DatasetCatalog.list():  # DefaultTrainer.build_model reads DATASETS.TRAIN
        p = generate_shapes_dataset(str(tmp_path), num_images=2, image_size=64, split="train")
        register_coco_instances("maskpred_train", {}, p["ann_file"], p["img_prefix"])
    cfg = get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", "('maskpred_train',)", "DATASETS.TEST", "()",
        "MODEL.MASK_ON", "True", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
        "MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone", "MODEL.RESNETS.DEPTH", "18",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
        "MODEL.RESNETS.OUT_FEATURES", "['res2', 'res3', 'res4', 'res5']",
        "MODEL.FPN.IN_FEATURES", "['res2', 'res3', 'res4', 'res5']", "MODEL.FPN.OUT_CHANNELS", "32",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[32], [64], [128], [256], [512]]",
        "MODEL.RPN.IN_FEATURES", "['p2', 'p3', 'p4', 'p5', 'p6']", "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
        "MODEL.ROI_HEADS.IN_FEATURES", "['p2', 'p3', 'p4', 'p5']", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead",
        "MODEL.ROI_BOX_HEAD.NUM_FC", "2", "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "7",
        "MODEL.ROI_MASK_HEAD.NUM_CONV", "2", "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
        "MODEL.PIXEL_STD", "[57.375, 57.12, 58.395]",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96",
    ])
    predictor = DefaultPredictor(cfg)
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    inst = predictor(image)["instances"]
    n = len(inst.scores)
    assert n > 0 and inst.pred_masks.shape == (n, 96, 128) and inst.pred_masks.dtype == torch.bool
    # each mask stays inside its box (a pixel of sampling margin)
    for box, mask in zip(inst.pred_boxes.tensor, inst.pred_masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            assert xs.min() >= box[0].floor() - 1 and xs.max() <= box[2].ceil() + 1
