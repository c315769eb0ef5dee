"""``MODEL.META_ARCHITECTURE: FCOS`` / ``ATSS`` in a Detectron2-style project: ``DefaultTrainer.build_model``
builds kiln's FCOS / ATSS from the RetinaNet keys (as Detectron2's own FCOS config derives from RetinaNet's),
the model trains and predicts on Detectron2 ``DatasetMapper`` batches, and keys these heads do not read
are reported."""

from __future__ import annotations

import logging

import pytest
import torch

from kiln.config import get_cfg
from kiln.engine.trainer import DefaultTrainer
from kiln.model_zoo.paths import resolve_config_path
from kiln.structures import Boxes, Instances


def _cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_file(resolve_config_path("kiln::detectron2/Base-RetinaNet.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "50", "MODEL.RETINANET.NUM_CLASSES",
                         "3", "MODEL.RETINANET.NORM", "GN", *opts])
    cfg.freeze()
    return cfg


def _batch():
    g = torch.Generator().manual_seed(0)
    inst = Instances((64, 96))
    inst.gt_boxes = Boxes(torch.tensor([[8.0, 10.0, 40.0, 50.0], [50.0, 5.0, 90.0, 60.0]]))
    inst.gt_classes = torch.tensor([0, 2])
    img = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=g)
    return [dict(image=img, instances=inst, height=64, width=96, image_id=1)]


@pytest.mark.parametrize("arch, head", [("FCOS", "FCOSHead"), ("ATSS", "ATSSHead")])
def test_meta_architecture_builds_trains_and_predicts(arch, head):
    sizes = "[[32], [64], [128], [256], [512]]"  # ATSS: one anchor per location
    cfg = _cfg("MODEL.META_ARCHITECTURE", arch, "MODEL.ANCHOR_GENERATOR.SIZES", sizes)
    model = DefaultTrainer.build_model(cfg)
    assert type(model).__name__ == arch and type(model.bbox_head).__name__ == head
    assert model.bbox_head.num_classes == 3
    # P6 from P5 (Detectron2's FCOS top_block.in_feature='p5'): the P6 conv reads 256 FPN channels
    assert model.neck.fpn_convs[3].conv.in_channels == 256
    assert model.bbox_head.cls_convs[0].gn.num_groups == 32
    model.train()
    losses = model(_batch())
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_centerness"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        (out,) = model(_batch())
    assert out["boxes"].shape[1] == 4 and len(out["boxes"]) <= cfg.TEST.DETECTIONS_PER_IMAGE


def test_retinanet_keys_the_heads_do_not_read_are_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="kiln.config"):
        DefaultTrainer.build_model(_cfg("MODEL.META_ARCHITECTURE", "FCOS"))
    # Base-RetinaNet.yaml sets SMOOTH_L1_LOSS_BETA 0.0 and five levels of anchor sizes
    assert "MODEL.RETINANET.SMOOTH_L1_LOSS_BETA=0.0 has no effect" in caplog.text
    assert "MODEL.ANCHOR_GENERATOR.SIZES" in caplog.text and "no anchors" in caplog.text


def test_values_the_heads_cannot_honour_are_refused():
    with pytest.raises(ValueError, match="MODEL.RETINANET.PRIOR_PROB=0.05"):
        DefaultTrainer.build_model(
            _cfg("MODEL.META_ARCHITECTURE", "FCOS", "MODEL.RETINANET.PRIOR_PROB", "0.05"))
    with pytest.raises(ValueError, match="MODEL.RETINANET.NORM='BN'"):
        DefaultTrainer.build_model(_cfg("MODEL.META_ARCHITECTURE", "ATSS", "MODEL.RETINANET.NORM", "BN"))
