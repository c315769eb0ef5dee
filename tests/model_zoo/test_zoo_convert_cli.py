"""``kiln zoo convert``: a foreign checkpoint written out in kiln/MMDetection names."""

from __future__ import annotations

import torch
from zoo_publishers import kiln_to_detectron2, model_anchor_slots, write_pickle

from kiln import model_zoo
from kiln.cli import main
from kiln.config import Config
from kiln.models import build_detector

CONFIG = "kiln::shapes/retinanet_r18_fpn_shapes.py"


def _shapes_model():
    cfg = Config.fromfile(model_zoo.resolve_config_path(CONFIG))
    torch.manual_seed(2)
    return build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))


def test_convert_detectron2_pickle_for_a_config_writes_an_mmdetection_checkpoint(tmp_path, capsys):
    src = _shapes_model()
    pkl = tmp_path / "model_final.pkl"
    write_pickle({"model": kiln_to_detectron2(src.state_dict(), 3, model_anchor_slots(src))}, str(pkl))
    out = tmp_path / "converted.pth"
    assert main(["zoo", "convert", str(pkl), str(out), "--config", CONFIG]) == 0
    printed = capsys.readouterr().out
    assert "layout: detectron2" in printed and f"wrote {out} (matches config {CONFIG})" in printed
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["meta"]["layout"] == "detectron2" and ckpt["meta"]["config"] == CONFIG
    for k, v in src.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(ckpt["state_dict"][k], v), k


def test_convert_without_a_config_renames_only(tmp_path, capsys):
    src = _shapes_model()
    pkl = tmp_path / "model_final.pkl"
    write_pickle({"model": kiln_to_detectron2(src.state_dict(), 3)}, str(pkl))
    out = tmp_path / "renamed.pth"
    assert main(["zoo", "convert", str(pkl), str(out)]) == 0
    assert "layout: detectron2" in capsys.readouterr().out
    state = torch.load(out, weights_only=True)["state_dict"]
    shortcut_bn = src.backbone.layer2[0].downsample[1]
    assert torch.equal(state["backbone.layer2.0.downsample.1.weight"], shortcut_bn.weight)
    assert torch.equal(state["neck.lateral_convs.0.conv.weight"], src.neck.lateral_convs[0].conv.weight)


def test_convert_of_a_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["zoo", "convert", str(tmp_path / "nope.pkl"), str(tmp_path / "out.pth")]) == 2
    assert "nope.pkl" in capsys.readouterr().err
