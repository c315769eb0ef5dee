"""Every checkpoint layout loads into kiln's ResNet and gives the publisher model's outputs."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from zoo_publishers import as_caffe2, as_detectron2, randomize_bn, write_pickle

from kiln.checkpoint_convert import convert_for_model, detect_layout, load_into, read_checkpoint
from kiln.engine.checkpoint import Checkpointer
from kiln.models.backbones import ResNet


@pytest.fixture(scope="module")
def tv_resnet18():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(weights=None)
    randomize_bn(tv)
    return tv.eval()


def _tv_c5(tv, x):
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    return tv.layer4(tv.layer3(tv.layer2(tv.layer1(x))))


def _x():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_torchvision_classification_state_dict_loads_and_drops_the_classifier(tmp_path, tv_resnet18):
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv_resnet18.state_dict(), path)
    model = ResNet(depth=18, out_indices=(3,)).eval()
    report = load_into(model, path)
    assert report.layout == "torchvision_classification"
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(model(_x())[-1], _tv_c5(tv_resnet18, _x()))


def test_detectron2_pkl_with_numpy_arrays_loads_into_kiln_resnet(tmp_path, tv_resnet18):
    path = tmp_path / "model_final_abc123.pkl"
    d2 = as_detectron2(tv_resnet18.state_dict())
    write_pickle({"model": d2, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, str(path))
    model = ResNet(depth=18, out_indices=(3,)).eval()
    report = load_into(model, path)
    assert report.layout == "detectron2"
    assert report.unexpected == [] and [k for k in report.missing if "num_batches" not in k] == []
    assert torch.equal(model(_x())[-1], _tv_c5(tv_resnet18, _x()))


def test_detectron2_pth_layout_loads_the_same(tmp_path, tv_resnet18):
    path = tmp_path / "model_final.pth"
    d2 = {k: torch.from_numpy(v) for k, v in as_detectron2(tv_resnet18.state_dict()).items()}
    torch.save({"model": d2, "iteration": 89999}, path)
    model = ResNet(depth=18, out_indices=(3,)).eval()
    assert load_into(model, path).layout == "detectron2"
    assert torch.equal(model(_x())[-1], _tv_c5(tv_resnet18, _x()))


@pytest.mark.parametrize("wrap", ["top_level", "blobs"])
def test_caffe2_blobs_with_folded_batchnorm_give_the_same_outputs(tmp_path, tv_resnet18, wrap):
    blobs = as_caffe2(tv_resnet18.state_dict())
    assert "res2_0_branch2a_w" in blobs and "res_conv1_bn_s" in blobs and "res3_0_branch1_bn_b" in blobs
    path = tmp_path / "R-18.pkl"
    write_pickle(blobs if wrap == "top_level" else {"blobs": blobs}, str(path))
    model = ResNet(depth=18, out_indices=(3,)).eval()
    report = load_into(model, path)
    assert report.layout == "caffe2" and report.unexpected == []
    torch.testing.assert_close(model(_x())[-1], _tv_c5(tv_resnet18, _x()), atol=1e-4, rtol=1e-4)


def test_mmdetection_meta_and_state_dict_loads_into_a_detector_backbone_by_prefix(tmp_path, tv_resnet18):
    from kiln.models import build_detector

    det = build_detector(dict(
        type="RetinaNet", backbone=dict(type="ResNet", depth=18, out_indices=(1, 2, 3)),
        neck=dict(type="FPN", in_channels=[128, 256, 512], out_channels=16, num_outs=5,
                  add_extra_convs="on_input"),
        bbox_head=dict(type="RetinaHead", num_classes=3, in_channels=16, feat_channels=16, stacked_convs=1,
                       anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=1,
                                             ratios=[1.0], strides=[8, 16, 32, 64, 128])),
        test_cfg=dict(nms_pre=100, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=10),
    )).eval()
    path = tmp_path / "resnet18_mm.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": tv_resnet18.state_dict()}, path)
    report = load_into(det, path)
    assert report.renamed["backbone.layer1.0.conv1.weight"] == "layer1.0.conv1.weight"
    assert report.renamed["backbone.conv1.weight"] == "conv1.weight"  # the stem, not a block's conv1
    assert all(k.startswith(("neck.", "bbox_head.")) or "num_batches" in k for k in report.missing)
    assert torch.equal(det.backbone(_x())[-1], _tv_c5(tv_resnet18, _x()))


def test_imagenet_weights_fill_the_c4_shared_head_with_their_last_stage(tv_resnet18):
    """The C4 layout: backbone has three stages, res5 lives in the RoI head (Detectron2's Res5ROIHeads)."""
    model = torch.nn.Module()
    model.backbone = ResNet(depth=18, num_stages=3, out_indices=(2,))
    model.roi_head = torch.nn.Module()
    model.roi_head.shared_head = torch.nn.Module()
    model.roi_head.shared_head.layer4 = ResNet(depth=18).layer4
    aligned, report = convert_for_model(
        {k: torch.from_numpy(v) for k, v in as_caffe2(tv_resnet18.state_dict()).items()}, model.state_dict())
    assert report.unexpected == []
    assert "roi_head.shared_head.layer4.1.conv2.weight" in aligned
    assert torch.equal(aligned["roi_head.shared_head.layer4.1.conv2.weight"],
                       tv_resnet18.layer4[1].conv2.weight)


def test_layout_is_detected_from_keys_not_file_names(tv_resnet18):
    tv = tv_resnet18.state_dict()
    assert detect_layout(tv) == "torchvision_classification"
    assert detect_layout(as_detectron2(tv)) == "detectron2"
    assert detect_layout(as_detectron2(tv, prefix="")) == "detectron2"
    assert detect_layout(as_caffe2(tv)) == "caffe2"
    assert detect_layout({"module." + k: v for k, v in tv.items() if not k.startswith("fc.")}) == "kiln"


def test_report_table_names_loaded_skipped_and_why(tmp_path, tv_resnet18, caplog):
    state = {k: v for k, v in tv_resnet18.state_dict().items()}
    state["layer4.1.conv2.weight"] = torch.zeros(3, 3, 3, 3)  # wrong shape
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": state}, path)
    model = ResNet(depth=18, out_indices=(3,))
    with caplog.at_level(logging.WARNING, logger="kiln.engine.checkpoint"):
        Checkpointer(model).load(str(path))
    text = caplog.records[-1].getMessage()
    assert "layout: torchvision_classification" in text
    assert "shape mismatch (skipped)" in text and "layer4.1.conv2.weight" in text
    assert "checkpoint (3, 3, 3, 3) vs model (512, 512, 3, 3)" in text
    assert "not in model" in text and "extra.weight" in text
    assert "loaded" in text and "ImageNet classifier (fc) dropped" in text


def test_a_checkpoint_of_another_model_says_nothing_matched(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"encoder.w": torch.zeros(2, 2)}}, path)
    model = ResNet(depth=18, base_channels=8)
    report = load_into(model, path)
    assert report.loaded == []
    assert "NOTHING matched" in report.summary_line() and "encoder.w" in report.summary_line()


def test_non_data_pickle_is_refused_without_running_it(tmp_path):
    import pickle

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": __import__("collections").Counter()}}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="evil.pkl.*collections.Counter"):
        read_checkpoint(path)


def test_a_model_whose_own_names_look_foreign_loads_its_checkpoint_unchanged():
    """A user module named like Detectron2's (``stem.conv1.norm``) is not renamed when the names fit."""
    model = torch.nn.Module()
    model.stem = torch.nn.Module()
    model.stem.conv1 = torch.nn.Module()
    model.stem.conv1.norm = torch.nn.BatchNorm2d(4)
    state = {k: torch.rand(v.shape) for k, v in model.state_dict().items()}
    aligned, report = convert_for_model(state, model.state_dict(), model=model)
    assert report.layout == "kiln" and report.missing == [] and report.unexpected == []
    assert torch.equal(aligned["stem.conv1.norm.running_var"], state["stem.conv1.norm.running_var"])


def test_detectron2_c4_dc5_and_cascade_names_map_to_the_agreed_kiln_modules():
    """Names of the layouts whose kiln models other modules build (C4 shared head = MMDetection's ResLayer
    ``layer4``; cascade stages indexed like CascadeRoIHead's bbox_head list)."""
    from kiln.checkpoint_convert import to_kiln_names

    w = torch.zeros(1)
    d2 = {"backbone.res4.5.conv3.norm.weight": w, "backbone.stem.conv1.weight": w,
          "roi_heads.res5.0.shortcut.norm.running_var": w, "roi_heads.res5.2.conv2.weight": w,
          "roi_heads.box_head.1.fc2.bias": w, "roi_heads.box_predictor.2.cls_score.weight": w,
          "roi_heads.box_head.conv3.norm.bias": w, "proposal_generator.rpn_head.conv.weight": w}
    out, layout, _ = to_kiln_names(d2)
    assert layout == "detectron2"
    assert sorted(out) == sorted([
        "backbone.layer3.5.bn3.weight", "backbone.conv1.weight",
        "roi_head.shared_head.layer4.0.downsample.1.running_var",
        "roi_head.shared_head.layer4.2.conv2.weight",
        "roi_head.bbox_head.1.shared_fcs.1.bias", "roi_head.bbox_head.2.fc_cls.weight",
        "roi_head.bbox_head.shared_convs.2.bn.bias", "rpn_head.rpn_conv.weight"])
