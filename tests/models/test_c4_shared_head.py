"""C4 and DC5 Faster R-CNN parts: the ``ResLayer`` res5 shared head, ``BBoxHead(with_avg_pool=True)``,
``StandardRoIHead(shared_head=...)``, the dilated res5 of DC5, and FPN / conv box heads with norms."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.ops import roi_align
from twostage_configs import faster_rcnn_cfg, one_thread  # noqa: F401  (fixture)

from kiln.models import build_detector
from kiln.registry import MODELS

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomize_norms(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def test_res_layer_is_torchvision_layer4_with_the_same_weights():
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).layer4
    _randomize_norms(reference, 1)
    head = MODELS.build(dict(type="ResLayer", depth=50, stage=3, stride=2, style="pytorch"))
    # MMDetection's / torchvision's names: a ResNet checkpoint's layer4.* loads strictly.
    head.load_state_dict({f"layer4.{k}": v for k, v in reference.state_dict().items()}, strict=True)
    head.eval()
    reference.eval()
    x = torch.randn(3, 1024, 14, 14)
    with torch.no_grad():
        out = head(x)
        expected = reference(x)
    assert out.shape == (3, 2048, 7, 7)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_res_layer_caffe_style_strides_in_the_first_1x1_and_dilation_reaches_every_block():
    head = MODELS.build(dict(type="ResLayer", depth=50, stage=3, stride=2, dilation=2, style="caffe"))
    first = head.layer[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    assert all(block.conv2.dilation == (2, 2) and block.conv2.padding == (2, 2) for block in head.layer)


def test_res_layer_norm_eval_keeps_batch_norm_statistics_while_training():
    head = MODELS.build(dict(type="ResLayer", depth=18, stage=3, base_channels=8, norm_eval=True))
    head.train()
    x = torch.randn(4, 32, 8, 8) * 3 + 1
    before = head.layer[0].bn1.running_mean.clone()
    head(x)
    torch.testing.assert_close(head.layer[0].bn1.running_mean, before)
    assert head.layer[0].bn1.training is False


def test_res_layer_loads_its_stage_from_a_resnet_checkpoint(tmp_path):
    torch.manual_seed(0)
    backbone = MODELS.build(dict(type="ResNet", depth=18, base_channels=8))
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": backbone.state_dict()}, path)
    head = MODELS.build(
        dict(
            type="ResLayer",
            depth=18,
            stage=3,
            base_channels=8,
            init_cfg=dict(type="Pretrained", checkpoint=str(path)),
        )
    )
    head.init_weights()
    torch.testing.assert_close(head.layer[1].conv2.weight, backbone.layer4[1].conv2.weight)


def test_res_layer_refuses_what_it_cannot_build():
    with pytest.raises(NotImplementedError, match="dcn"):
        MODELS.build(dict(type="ResLayer", depth=50, dcn=dict(type="DCNv2")))
    with pytest.raises(KeyError, match="depth=42"):
        MODELS.build(dict(type="ResLayer", depth=42))


def test_bbox_head_with_avg_pool_predicts_from_the_pooled_vector():
    head = MODELS.build(
        dict(type="BBoxHead", with_avg_pool=True, roi_feat_size=7, in_channels=32, num_classes=3)
    )
    assert head.fc_cls.in_features == 32 and head.fc_reg.out_features == 12
    x = torch.randn(5, 32, 7, 7)
    cls, reg = head(x)
    torch.testing.assert_close(cls, head.fc_cls(x.mean(dim=(2, 3))))
    flat = MODELS.build(dict(type="BBoxHead", roi_feat_size=7, in_channels=32, num_classes=3))
    assert flat.fc_cls.in_features == 32 * 49


def test_bbox_head_refuses_a_head_without_classifier():
    with pytest.raises(NotImplementedError, match="with_cls=False"):
        MODELS.build(dict(type="BBoxHead", with_cls=False, num_classes=3))


def _c4_cfg(num_classes: int = 1, base: int = 8) -> dict:
    cfg = faster_rcnn_cfg(num_classes=num_classes, base=base)
    cfg["backbone"].update(
        num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2,), style="caffe"
    )
    cfg.pop("neck")
    cfg["rpn_head"]["in_channels"] = cfg["rpn_head"]["feat_channels"] = base * 4
    cfg["rpn_head"]["anchor_generator"]["strides"] = [16]
    cfg["roi_head"] = dict(
        type="StandardRoIHead",
        shared_head=dict(
            type="ResLayer", depth=18, stage=3, stride=2, style="caffe", base_channels=base, norm_eval=True
        ),
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
            out_channels=base * 4,
            featmap_strides=[16],
        ),
        bbox_head=dict(
            type="BBoxHead",
            with_avg_pool=True,
            roi_feat_size=7,
            in_channels=base * 8,
            num_classes=num_classes,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]
            ),
        ),
    )
    cfg["test_cfg"]["rcnn"] = dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=1.0), max_per_img=1000)
    return cfg


def test_c4_roi_head_scores_each_roi_from_res5_on_its_14x14_pool():
    """Detectron2's Res5ROIHeads: RoIAlign 14×14 at stride 16 → res5 (stride 2) → mean → predictors."""
    torch.manual_seed(0)
    model = build_detector(_c4_cfg(num_classes=1))
    model.eval()
    roi_head = model.roi_head
    nn.init.zeros_(roi_head.bbox_head.fc_reg.weight)  # no box refinement: detections are the RoIs
    feats = (torch.randn(1, 32, 6, 8),)
    rois = torch.tensor([[4.0, 8.0, 60.0, 70.0], [30.0, 2.0, 120.0, 90.0], [10.0, 40.0, 50.0, 95.0]])
    with torch.no_grad():
        ((boxes, scores, labels),) = roi_head.simple_test(feats, [rois], [(96, 128)])
        pooled = roi_align(feats[0], [rois], (14, 14), 1 / 16, 0, aligned=True)
        res5 = roi_head.shared_head.layer(pooled)
        expected = roi_head.bbox_head.fc_cls(res5.mean(dim=(2, 3))).softmax(1)[:, 0]
    order = expected.argsort(descending=True)
    torch.testing.assert_close(scores, expected[order])
    torch.testing.assert_close(boxes, rois[order])


def test_c4_detector_trains_and_predicts_with_the_shared_head():
    torch.manual_seed(0)
    model = build_detector(_c4_cfg(num_classes=3))
    model.train()
    batch = [
        dict(
            img=torch.randn(3, 96, 96),
            img_metas=dict(img_shape=(96, 96, 3), ori_shape=(96, 96, 3), scale_factor=[1.0] * 4),
            gt_bboxes=torch.tensor([[10.0, 12.0, 60.0, 70.0]]),
            gt_labels=torch.tensor([2]),
        )
    ]
    losses = model(batch)
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"} <= set(losses)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert model.roi_head.shared_head.layer[0].conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert out[0]["boxes"].shape[1] == 4


def test_dc5_res5_keeps_stride_16_with_dilation_2_in_every_block():
    """Detectron2's DC5 (RES5_DILATION: 2): res5's first block does not stride, all its 3×3 convs dilate."""
    backbone = MODELS.build(
        dict(
            type="ResNet",
            depth=50,
            base_channels=8,
            strides=(1, 2, 2, 1),
            dilations=(1, 1, 1, 2),
            out_indices=(3,),
            style="caffe",
        )
    )
    assert backbone.output_shape()["res5"].stride == 16
    assert all(
        b.conv2.dilation == (2, 2) and b.conv2.stride == (1, 1) and b.conv1.stride == (1, 1)
        for b in backbone.layer4
    )
    assert backbone.layer4[0].downsample[0].stride == (1, 1)
    (res5,) = backbone(torch.randn(1, 3, 64, 96))
    assert res5.shape == (1, 256, 4, 6)


@pytest.mark.parametrize(
    "norm_cfg, name, kind",
    [
        (dict(type="GN", num_groups=4), "gn", nn.GroupNorm),
        (dict(type="BN", requires_grad=True), "bn", nn.BatchNorm2d),
        (dict(type="SyncBN", requires_grad=True), "bn", nn.SyncBatchNorm),
    ],
)
def test_fpn_norm_cfg_puts_a_norm_after_every_conv(norm_cfg, name, kind):
    fpn = MODELS.build(dict(type="FPN", in_channels=[8, 16], out_channels=16, num_outs=3, norm_cfg=norm_cfg))
    for conv in [*fpn.lateral_convs, *fpn.fpn_convs]:
        assert isinstance(getattr(conv, name), kind) and conv.conv.bias is None  # MMCV ConvModule names
    keys = fpn.state_dict()
    assert f"lateral_convs.0.{name}.weight" in keys and f"fpn_convs.1.{name}.weight" in keys
    if kind is nn.SyncBatchNorm:
        return  # SyncBatchNorm runs only under a process group; its build and names are what matter here
    fpn.train()
    outs = fpn([torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)])
    assert [o.shape[-1] for o in outs] == [16, 8, 4]


def test_conv_fc_box_head_has_norm_convs_then_fcs():
    """Detectron2's ROI_BOX_HEAD NUM_CONV/NUM_FC/CONV_DIM/FC_DIM/NORM as ConvFCBBoxHead."""
    head = MODELS.build(
        dict(
            type="ConvFCBBoxHead",
            num_shared_convs=2,
            num_shared_fcs=1,
            in_channels=8,
            conv_out_channels=16,
            fc_out_channels=32,
            roi_feat_size=7,
            num_classes=3,
            norm_cfg=dict(type="GN", num_groups=4),
        )
    )
    assert [type(c.gn) for c in head.shared_convs] == [nn.GroupNorm, nn.GroupNorm]
    assert head.shared_fcs[0].in_features == 16 * 49
    cls, reg = head(torch.randn(4, 8, 7, 7))
    assert cls.shape == (4, 4) and reg.shape == (4, 12)


def test_res_layer_with_groups_is_the_resnext_backbones_res5():
    torch.manual_seed(0)
    backbone = MODELS.build(dict(type="ResNeXt", depth=50, groups=4, base_width=4, base_channels=16))
    head = MODELS.build(dict(type="ResLayer", depth=50, stage=3, groups=4, base_width=4, base_channels=16))
    head.load_state_dict(
        {k: v for k, v in backbone.state_dict().items() if k.startswith("layer4.")}, strict=True
    )
    assert head.layer[0].conv2.groups == 4
    head.eval()
    backbone.eval()
    x = torch.randn(2, 256, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(head(x), backbone.layer4(x))


@pytest.mark.parametrize(
    "norm_cfg, kind",
    [
        (dict(type="FrozenBN"), "FrozenBatchNorm2d"),
        (dict(type="GN", num_groups=4), "GroupNorm"),
        (dict(type="BN", requires_grad=False), "BatchNorm2d"),
    ],
)
def test_res_layer_takes_detectron2s_norms(norm_cfg, kind):
    """Detectron2's RESNETS.NORM (FrozenBN by default, GN, BN) reaches the res5 head too."""
    head = MODELS.build(dict(type="ResLayer", depth=18, stage=3, base_channels=8, norm_cfg=norm_cfg))
    norms = [m for m in head.modules() if type(m).__name__ == kind]
    assert len(norms) == 5  # 2 blocks × 2 norms + the shortcut's
    trainable_norm_params = [p for m in norms for p in m.parameters() if p.requires_grad]
    assert (len(trainable_norm_params) > 0) == (kind == "GroupNorm")
    head.train()
    assert head(torch.randn(2, 32, 8, 8)).shape == (2, 64, 4, 4)
