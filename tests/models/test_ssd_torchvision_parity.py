"""SSD300 built from MMDetection's published config computes what torchvision's ``ssd300_vgg16`` computes.

Both models are randomly initialised; torchvision's weights are copied onto kiln's model by position (the
23 convolutions of VGG-16 + fc6/fc7 + the extra layers, conv4_3's L2-norm weight, the head's per-level
convs), with the class channels reordered: torchvision puts background first, MMDetection (and kiln) last.
Same input → same feature maps, head outputs, anchors and post-processed detections.

One definitional difference: torchvision's ``DefaultBoxGenerator(clip=True)`` clips default-box widths
and heights to the image, which shrinks the wide and tall anchors of the last level (261·√2 = 369 px →
300 px); MMDetection's SSDAnchorGenerator does not clip. The test checks that difference and then compares
with torchvision's clipping switched off.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn
from upstream_helpers import upstream_configs

from kiln.config import Config
from kiln.models import build_detector

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def models():
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(0)
    tv = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1).eval()
    cfg = Config.fromfile(os.path.join(upstream_configs("3.3.0"), "ssd", "ssd300_coco.py"))
    model_cfg = cfg.to_dict()["model"]
    model_cfg["backbone"]["init_cfg"] = None
    model_cfg["bbox_head"]["num_classes"] = NUM_CLASSES
    # Keep every candidate so both frameworks run NMS on the same set (torchvision keeps the top 400
    # per class, kiln/MMDetection the top nms_pre per level).
    model_cfg["test_cfg"].update(nms_pre=100000, score_thr=0.01, max_per_img=100000)
    kiln_model = build_detector(model_cfg).eval()
    _copy_weights(tv, kiln_model)
    tv.topk_candidates = 100000
    tv.detections_per_img = 100000
    return tv, kiln_model


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _copy_weights(tv, model):
    src = _convs(tv.backbone)
    dst = _convs(model.backbone) + _convs(model.neck)
    assert len(src) == len(dst) == 23
    with torch.no_grad():
        for s, d in zip(src, dst):
            assert s.weight.shape == d.weight.shape
            d.weight.copy_(s.weight)
            d.bias.copy_(s.bias)
        model.neck.l2_norm.weight.copy_(tv.backbone.scale_weight)
        k = NUM_CLASSES + 1
        for level, (s_cls, s_reg) in enumerate(zip(tv.head.classification_head.module_list,
                                                   tv.head.regression_head.module_list)):
            d_cls = model.bbox_head.cls_convs[level][0]
            a = d_cls.out_channels // k
            # kiln channel a·K + j  ←  torchvision channel a·K + (j + 1) for classes, a·K + 0 for background
            order = torch.tensor([i * k + (j + 1) % k for i in range(a) for j in range(k)])
            d_cls.weight.copy_(s_cls.weight[order])
            d_cls.bias.copy_(s_cls.bias[order])
            d_reg = model.bbox_head.reg_convs[level][0]
            d_reg.weight.copy_(s_reg.weight)
            d_reg.bias.copy_(s_reg.bias)


def _tv_forward(tv, x):
    from torchvision.models.detection.image_list import ImageList

    feats = list(tv.backbone(x).values())
    head = tv.head(feats)
    anchors = tv.anchor_generator(ImageList(x, [(300, 300)]), feats)
    return feats, head, anchors


@pytest.fixture(scope="module")
def outputs(models):
    tv, model = models
    torch.manual_seed(1)
    x = torch.randn(1, 3, 300, 300) * 60
    with torch.no_grad():
        feats_k = model.extract_feat(x)
        cls_k, reg_k = model.bbox_head(feats_k)
        feats_t, head_t, anchors_clipped = _tv_forward(tv, x)
        tv.anchor_generator.clip = False
        try:
            _, _, anchors_t = _tv_forward(tv, x)
            dets_t = tv.postprocess_detections(head_t, anchors_t, [(300, 300)])[0]
        finally:
            tv.anchor_generator.clip = True
        dets_k = model.bbox_head.predict_by_feat(cls_k, reg_k, [dict(img_shape=(300, 300, 3))])[0]
    return dict(feats_k=feats_k, feats_t=feats_t, cls_k=cls_k, reg_k=reg_k, head_t=head_t,
                anchors_clipped=anchors_clipped[0], anchors_t=anchors_t[0], dets_t=dets_t, dets_k=dets_k,
                model=model)


def test_feature_maps_match(outputs):
    assert [tuple(f.shape[-2:]) for f in outputs["feats_k"]] == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3),
                                                                  (1, 1)]
    for fk, ft in zip(outputs["feats_k"], outputs["feats_t"]):
        torch.testing.assert_close(fk, ft, rtol=1e-4, atol=1e-4)


def test_head_outputs_match_with_background_moved_last(outputs):
    head = outputs["model"].bbox_head
    cls = head._flatten(outputs["cls_k"], NUM_CLASSES + 1)
    reg = head._flatten(outputs["reg_k"], 4)
    cls_t = outputs["head_t"]["cls_logits"]
    torch.testing.assert_close(cls[..., :NUM_CLASSES], cls_t[..., 1:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cls[..., NUM_CLASSES], cls_t[..., 0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reg, outputs["head_t"]["bbox_regression"], rtol=1e-4, atol=1e-4)


def test_anchors_match_torchvision_without_clipping(outputs):
    sizes = [tuple(f.shape[-2:]) for f in outputs["feats_k"]]
    anchors = torch.cat(outputs["model"].bbox_head.prior_generator.grid_priors(sizes))
    assert anchors.shape == (8732, 4)  # SSD300's published count of default boxes
    torch.testing.assert_close(anchors, outputs["anchors_t"], rtol=0, atol=1e-3)
    # The definitional difference: only the last level's wide/tall boxes differ under clipping.
    differs = (anchors - outputs["anchors_clipped"]).abs().amax(dim=1) > 1e-3
    assert differs.nonzero().flatten().tolist() == [8730, 8731]


def test_detections_match(outputs):
    dk, dt = outputs["dets_k"], dict(outputs["dets_t"])
    # The second definitional difference: MMDetection (and kiln) drop boxes of zero width or height (a
    # box decoded outside the image and clipped to its edge); torchvision keeps them.
    wh = dt["boxes"][:, 2:] - dt["boxes"][:, :2]
    keep = (wh > 0).all(dim=1)
    assert (~keep).any()
    dt = {k: v[keep] for k, v in dt.items()}
    assert len(dk["boxes"]) == len(dt["boxes"]) > 10
    torch.testing.assert_close(dk["scores"], dt["scores"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dk["labels"] + 1, dt["labels"])
    # torchvision builds anchors in [0, 1] units and scales them by 300: float32 rounding of ~1e-5 px,
    # multiplied by exp(dw) (up to 1000/16 at random init), leaves up to ~0.2 px on the widest boxes.
    torch.testing.assert_close(dk["boxes"], dt["boxes"], rtol=1e-3, atol=0.25)
    assert (dk["boxes"] - dt["boxes"]).abs().median() < 1e-3
