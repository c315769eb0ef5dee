"""`kiln surgery --method remove|randinit` on real detector checkpoints."""

from __future__ import annotations

import pytest
import torch

from kiln import model_zoo
from kiln.cli import main


@pytest.fixture(scope="module")
def retina_ckpt(tmp_path_factory):
    """A checkpoint of the shapes RetinaNet (3 classes, 9 anchors) in kiln's format."""
    model = model_zoo.get("shapes_retinanet_r18_fpn")
    path = tmp_path_factory.mktemp("surgery") / "base.pth"
    torch.save({"model": model.state_dict(), "optimizer": {"state": {}}, "meta": {"iter": 500}}, path)
    return path, model.state_dict()


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_remove_drops_classification_layer_and_keeps_everything_else(retina_ckpt, tmp_path):
    src, state = retina_ckpt
    out = tmp_path / "removed.pth"
    assert main(["surgery", "--method", "remove", "--src", str(src), "--out", str(out)]) == 0
    new = _load(out)
    assert "optimizer" not in new  # fine-tuning starts fresh
    assert new["meta"]["surgery"]["method"] == "remove"
    dropped = set(state) - set(new["model"])
    assert dropped == {"bbox_head.retina_cls.weight", "bbox_head.retina_cls.bias"}
    # RetinaNet's box regression is class-agnostic, so it carries over unchanged
    assert torch.equal(new["model"]["bbox_head.retina_reg.weight"], state["bbox_head.retina_reg.weight"])


def test_randinit_resizes_sigmoid_cls_per_anchor_and_copies_kept_classes(retina_ckpt, tmp_path):
    src, state = retina_ckpt
    out = tmp_path / "randinit.pth"
    assert main(["surgery", "--method", "randinit", "--src", str(src), "--out", str(out),
                 "--num-classes", "5", "--keep-classes", "0:0", "2:4"]) == 0
    w_old = state["bbox_head.retina_cls.weight"]
    w_new = _load(out)["model"]["bbox_head.retina_cls.weight"]
    anchors = w_old.shape[0] // 3
    assert w_new.shape[0] == anchors * 5
    for a in range(anchors):
        assert torch.equal(w_new[a * 5 + 0], w_old[a * 3 + 0])
        assert torch.equal(w_new[a * 5 + 4], w_old[a * 3 + 2])
        assert not torch.equal(w_new[a * 5 + 1], w_old[a * 3 + 1])


def test_randinit_result_loads_into_a_model_with_the_new_class_count(retina_ckpt, tmp_path):
    from kiln.config import Config
    from kiln.models import build_detector

    src, _ = retina_ckpt
    out = tmp_path / "randinit.pth"
    assert main(["surgery", "--method", "randinit", "--src", str(src), "--out", str(out),
                 "--num-classes", "2", "--keep-classes", "all"]) == 0
    cfg = Config.fromfile(model_zoo.get_config_file("shapes_retinanet_r18_fpn"))
    cfg.model.bbox_head.num_classes = 2
    model = build_detector(cfg.model)
    model_zoo.load_weights(model, str(out))  # strict: shapes and keys all match


def test_randinit_without_num_classes_exits_2(retina_ckpt, tmp_path, capsys):
    src, _ = retina_ckpt
    assert main(["surgery", "--method", "randinit", "--src", str(src), "--out", str(tmp_path / "o.pth")]) == 2
    assert "--num-classes" in capsys.readouterr().err


def test_softmax_head_randinit_keeps_background_row_and_class_specific_regression(tmp_path):
    # Detectron2/MMDetection two-stage predictor names: a Linear cls (C+1, background last) and a
    # class-specific Linear reg (4C).
    torch.manual_seed(0)
    state = {"roi_heads.box_predictor.cls_score.weight": torch.randn(4, 8),
             "roi_heads.box_predictor.cls_score.bias": torch.randn(4),
             "roi_heads.box_predictor.bbox_pred.weight": torch.randn(12, 8),
             "roi_heads.box_predictor.bbox_pred.bias": torch.randn(12),
             "backbone.conv.weight": torch.randn(2, 2)}
    src = tmp_path / "d2.pth"
    torch.save({"model": state}, src)
    out = tmp_path / "o.pth"
    assert main(["surgery", "--method", "randinit", "--src", str(src), "--out", str(out),
                 "--num-classes", "5", "--keep-classes", "1:3"]) == 0
    new = _load(out)["model"]
    cls_w = new["roi_heads.box_predictor.cls_score.weight"]
    reg_w = new["roi_heads.box_predictor.bbox_pred.weight"]
    assert cls_w.shape == (6, 8) and reg_w.shape == (20, 8)
    assert torch.equal(cls_w[-1], state["roi_heads.box_predictor.cls_score.weight"][-1])
    assert torch.equal(cls_w[3], state["roi_heads.box_predictor.cls_score.weight"][1])
    assert torch.equal(reg_w[12:16], state["roi_heads.box_predictor.bbox_pred.weight"][4:8])
    assert torch.equal(new["backbone.conv.weight"], state["backbone.conv.weight"])
    assert main(["surgery", "--method", "remove", "--src", str(src), "--out", str(out)]) == 0
    assert set(_load(out)["model"]) == {"backbone.conv.weight"}


def test_checkpoint_without_predictor_layers_exits_2_listing_candidates(tmp_path, capsys):
    src = tmp_path / "x.pth"
    torch.save({"model": {"head.my_cls_conv.weight": torch.zeros(3, 3)}}, src)
    assert main(["surgery", "--method", "remove", "--src", str(src), "--out", str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "head.my_cls_conv" in err and "--cls-pattern" in err


def test_missing_source_checkpoint_exits_2(tmp_path, capsys):
    assert main(["surgery", "--method", "remove", "--src", str(tmp_path / "none.pth"),
                 "--out", str(tmp_path / "o.pth")]) == 2
    assert "none.pth" in capsys.readouterr().err


def test_faster_rcnn_randinit_loads_strictly_and_freeze_groups_exist(tmp_path):
    from kiln.cli.fewshot import freeze_modules
    from kiln.config import Config
    from kiln.models import build_detector

    base = model_zoo.get("shapes_faster_rcnn_r18_fpn")
    src = tmp_path / "frcnn.pth"
    torch.save({"model": base.state_dict()}, src)
    out = tmp_path / "frcnn_5cls.pth"
    assert main(["surgery", "--method", "randinit", "--src", str(src), "--out", str(out),
                 "--num-classes", "5", "--keep-classes", "all"]) == 0
    cfg = Config.fromfile(model_zoo.get_config_file("shapes_faster_rcnn_r18_fpn"))
    cfg.model.roi_head.bbox_head.num_classes = 5
    model = build_detector(cfg.model)
    model_zoo.load_weights(model, str(out))  # strict: fc_cls (6 rows) and fc_reg (20 rows) fit
    old = base.state_dict()["roi_head.bbox_head.fc_reg.weight"]
    assert torch.equal(model.roi_head.bbox_head.fc_reg.weight[:12], old)  # 3 kept classes x 4
    # the RPN is class-agnostic and untouched
    assert torch.equal(model.rpn_head.rpn_cls.weight, base.rpn_head.rpn_cls.weight)
    frozen = freeze_modules(model, ["backbone", "rpn", "roi_feat"])
    assert any(n.startswith("roi_head.bbox_head.shared_fcs") for n in frozen)
    assert model.roi_head.bbox_head.fc_cls.weight.requires_grad
