"""``kiln zoo convert``: a foreign checkpoint written out in kiln/MMDetection names."""

from __future__ import annotations

import pytest
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
    assert "layout: detectron2" in printed
    assert f"wrote {out} (mmdet layout); matches config {CONFIG}" in printed
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


FASTER = "kiln::shapes/faster_rcnn_r18_fpn_shapes.py"


def _model(config, seed=2):
    cfg = Config.fromfile(model_zoo.resolve_config_path(config))
    torch.manual_seed(seed)
    return build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))


def _weights(model):
    skip = ("num_batches_tracked", "normalizer")
    return {k: v for k, v in model.state_dict().items() if not k.endswith(skip)}


@pytest.mark.parametrize("config, first_level", [(CONFIG, 3), (FASTER, 2)])
@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_kiln_convert_to_detectron2_writes_detectron2s_names_and_anchor_order(
        tmp_path, config, first_level, suffix, capsys):
    from kiln.checkpoint_convert import read_checkpoint

    src = _model(config)
    kiln_ckpt = tmp_path / "kiln.pth"
    torch.save({"model": src.state_dict()}, kiln_ckpt)
    out = tmp_path / f"model_final{suffix}"
    assert main(["convert", str(kiln_ckpt), str(out), "--config", config, "--to", "detectron2"]) == 0
    assert "detectron2 layout" in capsys.readouterr().out
    written = read_checkpoint(str(out))["model"]
    # the test helper writes Detectron2's layout independently (as Detectron2 names its modules)
    expected = kiln_to_detectron2(_weights(src), first_level, model_anchor_slots(src))
    assert set(written) == set(expected)
    for k, v in expected.items():
        assert torch.equal(torch.as_tensor(written[k]), torch.as_tensor(v)), k
    # and it loads back into the model exactly
    back = _model(config, seed=7)
    from kiln.engine.checkpoint import Checkpointer

    Checkpointer(back, str(tmp_path)).load(str(out), checkpointables=[])
    for k, v in _weights(src).items():
        assert torch.equal(back.state_dict()[k], v), k


def test_kiln_and_mmdet_layouts(tmp_path):
    src = _model(CONFIG)
    torch.save({"model": src.state_dict()}, tmp_path / "a.pth")
    assert main(["convert", str(tmp_path / "a.pth"), str(tmp_path / "k.pth"), "--to", "kiln"]) == 0
    assert main(["convert", str(tmp_path / "a.pth"), str(tmp_path / "m.pth")]) == 0
    k = torch.load(tmp_path / "k.pth", weights_only=True)
    m = torch.load(tmp_path / "m.pth", weights_only=True)
    assert set(k) == {"model", "meta"} and set(m) == {"state_dict", "meta"}
    assert torch.equal(k["model"]["neck.lateral_convs.0.conv.weight"], src.neck.lateral_convs[0].conv.weight)
    assert torch.equal(m["state_dict"]["bbox_head.retina_cls.bias"], src.bbox_head.retina_cls.bias)


def test_a_module_detectron2_has_no_name_for_is_refused(tmp_path, capsys):
    state = _model(CONFIG).state_dict()
    state["bbox_head.extra_branch.weight"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "a.pth")
    assert main(["convert", str(tmp_path / "a.pth"), str(tmp_path / "d2.pkl"), "--to", "detectron2"]) == 2
    err = capsys.readouterr().err
    assert "no Detectron2 name" in err and "bbox_head.extra_branch.weight" in err
    assert not (tmp_path / "d2.pkl").exists()
