"""Module names equal MMDetection's, so MMDetection checkpoints load strictly; old kiln names still load.

The expected key lists are facts read from MMDetection 3.3.0's source (``backbones/resnet.py``,
``necks/fpn.py``, ``dense_heads/{retina,rpn}_head.py``, ``roi_heads/bbox_heads/convfc_bbox_head.py``,
``roi_heads/shared_heads/res_layer.py``,
``roi_heads/cascade_roi_head.py``, MMCV's ``ConvModule``), written as small generators.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from kiln.config import Config
from kiln.models import build_detector

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BN = {"weight": (), "bias": (), "running_mean": (), "running_var": (), "num_batches_tracked": None}


def upstream_configs(version: str) -> str:
    """The ``configs/`` tree of the released MMDetection ``version`` (scripts/fetch_upstream_configs.py)."""
    root = os.environ.get("KILN_UPSTREAM_CONFIGS", os.path.join(REPO, ".venv", "upstream"))
    path = os.path.join(root, f"mmdet-{version}", "configs")
    if not os.path.isdir(path):
        pytest.fail(f"{path} missing: run `make test` or python scripts/fetch_upstream_configs.py")
    return path


# ---------------------------------------------------------------------- MMDetection's names, generated
def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.{k}": ((c,) if v == () else ()) for k, v in BN.items()}


def _conv_module(prefix: str, cout: int, cin: int, k: int) -> dict[str, tuple]:
    # MMCV ConvModule without norm: `conv` with a bias.
    return {f"{prefix}.conv.weight": (cout, cin, k, k), f"{prefix}.conv.bias": (cout,)}


def mmdet_resnet50() -> dict[str, tuple]:
    """``ResNet(depth=50)``: stem conv1/bn1, then layerN.M.conv1..3/bn1..3 and downsample.0/1."""
    keys = {"backbone.conv1.weight": (64, 3, 7, 7), **_bn("backbone.bn1", 64)}
    inplanes = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        planes = 64 * 2**stage
        for b in range(blocks):
            p = f"backbone.layer{stage + 1}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            keys.update(_bn(f"{p}.bn1", planes))
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            keys.update(_bn(f"{p}.bn2", planes))
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            keys.update(_bn(f"{p}.bn3", planes * 4))
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                keys.update(_bn(f"{p}.downsample.1", planes * 4))
            inplanes = planes * 4
    return keys


def mmdet_fpn(in_channels: list[int], start_level: int, num_outs: int, extra: str | None) -> dict:
    """``FPN``: lateral_convs.i, fpn_convs.i; extra convs (``add_extra_convs``) continue ``fpn_convs``
    after the used levels; without them the extra levels are max-pooled (no parameters)."""
    keys: dict[str, tuple] = {}
    used = in_channels[start_level:]
    for i, c in enumerate(used):
        keys.update(_conv_module(f"neck.lateral_convs.{i}", 256, c, 1))
        keys.update(_conv_module(f"neck.fpn_convs.{i}", 256, 256, 3))
    for j in range(num_outs - len(used) if extra else 0):
        cin = in_channels[-1] if (j == 0 and extra == "on_input") else 256
        keys.update(_conv_module(f"neck.fpn_convs.{len(used) + j}", 256, cin, 3))
    return keys


def mmdet_retinanet() -> dict[str, tuple]:
    keys = {**mmdet_resnet50(), **mmdet_fpn([256, 512, 1024, 2048], 1, 5, "on_input")}
    for branch in ("cls_convs", "reg_convs"):
        for i in range(4):
            keys.update(_conv_module(f"bbox_head.{branch}.{i}", 256, 256, 3))
    keys.update({"bbox_head.retina_cls.weight": (9 * 80, 256, 3, 3), "bbox_head.retina_cls.bias": (9 * 80,),
                 "bbox_head.retina_reg.weight": (9 * 4, 256, 3, 3), "bbox_head.retina_reg.bias": (9 * 4,)})
    return keys


def _rpn() -> dict[str, tuple]:
    # num_convs=1: `rpn_conv` is a bare Conv2d; 3 anchors, sigmoid objectness.
    return {"rpn_head.rpn_conv.weight": (256, 256, 3, 3), "rpn_head.rpn_conv.bias": (256,),
            "rpn_head.rpn_cls.weight": (3, 256, 1, 1), "rpn_head.rpn_cls.bias": (3,),
            "rpn_head.rpn_reg.weight": (12, 256, 1, 1), "rpn_head.rpn_reg.bias": (12,)}


def _shared2fc(prefix: str, reg_out: int) -> dict[str, tuple]:
    return {f"{prefix}.shared_fcs.0.weight": (1024, 256 * 7 * 7), f"{prefix}.shared_fcs.0.bias": (1024,),
            f"{prefix}.shared_fcs.1.weight": (1024, 1024), f"{prefix}.shared_fcs.1.bias": (1024,),
            f"{prefix}.fc_cls.weight": (81, 1024), f"{prefix}.fc_cls.bias": (81,),
            f"{prefix}.fc_reg.weight": (reg_out, 1024), f"{prefix}.fc_reg.bias": (reg_out,)}


def mmdet_faster_rcnn() -> dict[str, tuple]:
    return {**mmdet_resnet50(), **mmdet_fpn([256, 512, 1024, 2048], 0, 5, None), **_rpn(),
            **_shared2fc("roi_head.bbox_head", 4 * 80)}


def mmdet_cascade_rcnn() -> dict[str, tuple]:
    keys = {**mmdet_resnet50(), **mmdet_fpn([256, 512, 1024, 2048], 0, 5, None), **_rpn()}
    for stage in range(3):  # class-agnostic regression in every stage
        keys.update(_shared2fc(f"roi_head.bbox_head.{stage}", 4))
    return keys


def mmdet_faster_rcnn_c4() -> dict[str, tuple]:
    """C4: the backbone stops after layer3; res5 is ``roi_head.shared_head.layer4`` (MMDetection's
    ``ResLayer`` registers the stage as ``layer{stage + 1}``); the RPN has 1024 channels and 15 anchors;
    ``BBoxHead(with_avg_pool=True)`` predicts from 2048 channels."""
    resnet = mmdet_resnet50()
    keys = {k: v for k, v in resnet.items() if not k.startswith("backbone.layer4.")}
    keys.update({k.replace("backbone.layer4.", "roi_head.shared_head.layer4."): v
                 for k, v in resnet.items() if k.startswith("backbone.layer4.")})
    keys.update({"rpn_head.rpn_conv.weight": (1024, 1024, 3, 3), "rpn_head.rpn_conv.bias": (1024,),
                 "rpn_head.rpn_cls.weight": (15, 1024, 1, 1), "rpn_head.rpn_cls.bias": (15,),
                 "rpn_head.rpn_reg.weight": (60, 1024, 1, 1), "rpn_head.rpn_reg.bias": (60,),
                 "roi_head.bbox_head.fc_cls.weight": (81, 2048), "roi_head.bbox_head.fc_cls.bias": (81,),
                 "roi_head.bbox_head.fc_reg.weight": (320, 2048), "roi_head.bbox_head.fc_reg.bias": (320,)})
    return keys


CASES = {
    "faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py": mmdet_faster_rcnn_c4,
    "retinanet/retinanet_r50_fpn_1x_coco.py": mmdet_retinanet,
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py": mmdet_faster_rcnn,
    "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py": mmdet_cascade_rcnn,
}


def _build(rel: str) -> torch.nn.Module:
    cfg = Config.fromfile(os.path.join(upstream_configs("3.3.0"), rel))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_detector(cfg.model)


@pytest.mark.parametrize("rel", sorted(CASES))
def test_state_dict_names_and_shapes_equal_mmdetection(rel):
    model = _build(rel)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = CASES[rel]()
    assert sorted(set(ours) - set(expected)) == []
    assert sorted(set(expected) - set(ours)) == []
    assert {k: s for k, s in ours.items() if expected[k] != s} == {}


@pytest.mark.parametrize("rel", sorted(CASES))
def test_a_state_dict_under_mmdetection_names_loads_strictly(rel):
    model = _build(rel)
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, shape in CASES[rel]().items():
        state[k] = (torch.tensor(7) if k.endswith("num_batches_tracked")
                    else torch.randn(shape, generator=g))
    model.load_state_dict({"state_dict": state}["state_dict"], strict=True)
    loaded = model.state_dict()
    if "c4" in rel:
        for k in ("roi_head.shared_head.layer4.2.conv3.weight", "roi_head.bbox_head.fc_reg.weight"):
            assert torch.equal(loaded[k], state[k])
        return
    for k in ("neck.fpn_convs.2.conv.weight", "neck.lateral_convs.0.conv.bias"):
        assert torch.equal(loaded[k], state[k])
    if "rpn_head.rpn_conv.weight" in state:
        assert torch.equal(loaded["rpn_head.rpn_conv.weight"], state["rpn_head.rpn_conv.weight"])
        head = "roi_head.bbox_head" + (".2" if "cascade" in rel else "")
        assert torch.equal(loaded[f"{head}.shared_fcs.1.weight"], state[f"{head}.shared_fcs.1.weight"])
    else:
        assert torch.equal(loaded["neck.fpn_convs.4.conv.weight"], state["neck.fpn_convs.4.conv.weight"])


# ---------------------------------------------------------------------- kiln's old names keep loading
def _old_kiln_names(state: dict[str, torch.Tensor], used_levels: int) -> dict[str, torch.Tensor]:
    """The state dict as kiln saved it before the renaming (the old scheme, written out independently):
    FPN extra convs in ``neck.extra_convs.<i>``; ``rpn_conv`` and the box head's shared layers in
    ``nn.Sequential(layer, ReLU, ...)`` (parameters at even indices, bare ``Conv2d`` without ``.conv``);
    ConvNormAct norm layers called ``norm``."""
    import re

    out = {}
    for k, v in state.items():
        m = re.match(r"^neck\.fpn_convs\.(\d+)\.(.*)$", k)
        if m and int(m.group(1)) >= used_levels:
            k = f"neck.extra_convs.{int(m.group(1)) - used_levels}.{m.group(2)}"
        k = re.sub(r"^rpn_head\.rpn_conv\.(weight|bias)$", r"rpn_head.rpn_conv.0.\1", k)
        k = re.sub(r"^rpn_head\.rpn_conv\.(\d+)\.conv\.",
                   lambda m: f"rpn_head.rpn_conv.{2 * int(m.group(1))}.", k)
        k = re.sub(r"\.shared_fcs\.(\d+)\.", lambda m: f".shared_fcs.{2 * int(m.group(1))}.", k)
        k = re.sub(r"\.shared_convs\.(\d+)\.conv\.", lambda m: f".shared_convs.{2 * int(m.group(1))}.", k)
        k = re.sub(r"^(neck\..*convs\.\d+)\.gn\.", r"\1.norm.", k)
        out[k] = v
    return out


def _tiny_two_stage(rpn_convs: int) -> dict:
    from twostage_configs import faster_rcnn_cfg

    cfg = faster_rcnn_cfg()
    cfg["neck"]["norm_cfg"] = dict(type="GN", num_groups=4)
    cfg["rpn_head"]["num_convs"] = rpn_convs
    head = cfg["roi_head"]["bbox_head"]
    head.update(type="ConvFCBBoxHead", num_shared_convs=2, num_shared_fcs=2, conv_out_channels=16)
    return cfg


@pytest.mark.parametrize("rpn_convs", [1, 2])
def test_a_checkpoint_saved_under_old_kiln_names_loads_strictly_with_the_same_outputs(tmp_path, rpn_convs):
    torch.manual_seed(0)
    source = build_detector(_tiny_two_stage(rpn_convs)).eval()
    state = source.state_dict()
    old = _old_kiln_names(state, used_levels=4)
    assert old.keys() != state.keys()  # the old scheme really differs
    assert any(k.startswith("neck.lateral_convs.0.norm.") for k in old)
    torch.save({"state_dict": old}, tmp_path / "old.pth")

    torch.manual_seed(1)
    target = build_detector(_tiny_two_stage(rpn_convs)).eval()
    loaded = torch.load(tmp_path / "old.pth", weights_only=True)["state_dict"]
    target.load_state_dict(loaded, strict=True)
    for k, v in state.items():
        assert torch.equal(target.state_dict()[k], v), k
    batch = [dict(img=torch.randn(3, 64, 64), img_metas=dict(img_shape=(64, 64, 3)))]
    with torch.no_grad():
        a, b = source(batch)[0], target(batch)[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def test_old_retinanet_extra_convs_map_to_fpn_convs_after_the_used_levels():
    import copy

    from retina_configs import TINY_RETINANET

    torch.manual_seed(0)
    source = build_detector(copy.deepcopy(TINY_RETINANET))
    old = _old_kiln_names(source.state_dict(), used_levels=3)
    assert {"neck.extra_convs.0.conv.weight", "neck.extra_convs.1.conv.weight"} <= set(old)
    target = build_detector(copy.deepcopy(TINY_RETINANET))
    target.load_state_dict(old, strict=True)
    assert torch.equal(target.neck.fpn_convs[3].conv.weight, source.neck.fpn_convs[3].conv.weight)
    assert torch.equal(target.neck.fpn_convs[4].conv.bias, source.neck.fpn_convs[4].conv.bias)


def test_the_checkpointer_loads_an_old_kiln_checkpoint_without_key_mismatches(tmp_path):
    from kiln.engine.checkpoint import Checkpointer

    torch.manual_seed(0)
    source = build_detector(_tiny_two_stage(1))
    torch.save({"model": _old_kiln_names(source.state_dict(), used_levels=4)}, tmp_path / "old.pth")
    target = build_detector(_tiny_two_stage(1))
    ckpt = Checkpointer(target, str(tmp_path))
    ckpt.load(str(tmp_path / "old.pth"), checkpointables=[])
    keys = ckpt.last_incompatible_keys
    assert (keys.missing_keys, keys.unexpected_keys, keys.incorrect_shapes) == ([], [], [])
    assert torch.equal(target.rpn_head.rpn_conv.weight, source.rpn_head.rpn_conv.weight)
    fc1 = "roi_head.bbox_head.shared_fcs.1.weight"
    assert torch.equal(target.state_dict()[fc1], source.state_dict()[fc1])


def test_group_norm_resnet_uses_mmdetection_gn_names_and_loads_old_bn_names():
    from kiln.registry import MODELS

    cfg = dict(type="ResNet", depth=50, base_channels=16, norm_cfg=dict(type="GN", num_groups=4))
    torch.manual_seed(0)
    source = MODELS.build(cfg)
    keys = set(source.state_dict())
    # MMDetection's ResNet names its norm layers after the type: gn1 (stem), layerN.M.gn1..3.
    assert {"gn1.weight", "layer1.0.gn1.weight", "layer1.0.gn3.bias", "layer4.2.gn2.weight"} <= keys
    assert "layer1.0.downsample.1.weight" in keys and not any(".bn" in k or k.startswith("bn") for k in keys)
    old = {k.replace("gn", "bn"): v for k, v in source.state_dict().items()}  # kiln's names before
    target = MODELS.build(cfg)
    target.load_state_dict(old, strict=True)
    assert torch.equal(target.layer3[1].gn2.weight, source.layer3[1].gn2.weight)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(target.eval()(x)[-1], source.eval()(x)[-1])
