"""DeFRCN's tool flags on kiln's commands: ``surgery --dataset/--src-path/--save-dir``,
``gen-fewshot-configs --dataset --config_root --shot --seed --setting --split``,
``summarize --res-dir --shot-list``, and ``kiln fewshot`` spec errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kiln.cli import main


def _ckpt(path, classes):
    torch.manual_seed(0)
    state = {"backbone.conv.weight": torch.randn(4, 3, 3, 3),
             "roi_head.bbox_head.fc_cls.weight": torch.randn(classes + 1, 8),
             "roi_head.bbox_head.fc_cls.bias": torch.randn(classes + 1),
             "roi_head.bbox_head.fc_reg.weight": torch.randn(4 * classes, 8),
             "roi_head.bbox_head.fc_reg.bias": torch.randn(4 * classes)}
    torch.save({"model": state, "optimizer": {"x": 1}, "iteration": 99}, path)
    return state


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_surgery_voc_randinit_maps_15_base_rows_into_20(tmp_path):
    old = _ckpt(tmp_path / "model_final.pth", 15)
    assert main(["surgery", "--dataset", "voc", "--method", "randinit", "--src-path",
                 str(tmp_path / "model_final.pth"), "--save-dir", str(tmp_path / "out")]) == 0
    new = _load(tmp_path / "out" / "model_reset_surgery.pth")
    w, r = new["roi_head.bbox_head.fc_cls.weight"], new["roi_head.bbox_head.fc_reg.weight"]
    assert w.shape == (21, 8) and r.shape == (80, 8)
    assert torch.equal(w[:15], old["roi_head.bbox_head.fc_cls.weight"][:15])
    assert torch.equal(w[20], old["roi_head.bbox_head.fc_cls.weight"][15])  # background stays last
    assert torch.equal(r[:60], old["roi_head.bbox_head.fc_reg.weight"])
    assert not torch.equal(w[15:20], torch.zeros(5, 8))  # novel rows: freshly drawn


def test_surgery_coco_randinit_puts_base_rows_at_their_coco_positions(tmp_path):
    old = _ckpt(tmp_path / "b.pth", 60)
    assert main(["surgery", "--dataset", "coco", "--method", "randinit", "--src-path",
                 str(tmp_path / "b.pth"), "--save-dir", str(tmp_path), "--tar-name", "reset"]) == 0
    new = _load(tmp_path / "reset_surgery.pth")["roi_head.bbox_head.fc_cls.weight"]
    assert new.shape == (81, 8)
    # base class 0 is COCO id 8 (truck), the 8th of the 80 classes; base 1 is id 10 (traffic light), 10th
    assert torch.equal(new[7], old["roi_head.bbox_head.fc_cls.weight"][0])
    assert torch.equal(new[9], old["roi_head.bbox_head.fc_cls.weight"][1])


def test_surgery_remove_writes_defrcns_file_name(tmp_path, capsys):
    _ckpt(tmp_path / "b.pth", 15)
    assert main(["surgery", "--dataset", "voc", "--method", "remove", "--src-path", str(tmp_path / "b.pth"),
                 "--save-dir", str(tmp_path / "s")]) == 0
    new = _load(tmp_path / "s" / "model_reset_remove.pth")
    assert "roi_head.bbox_head.fc_cls.weight" not in new and "backbone.conv.weight" in new
    assert main(["surgery", "--method", "remove", "--src-path", str(tmp_path / "b.pth"), "--save-dir", "d",
                 "--out", "o.pth"]) == 2
    assert "give --out FILE or --save-dir DIR" in capsys.readouterr().err


def test_surgery_param_name_picks_the_layers(tmp_path, capsys):
    _ckpt(tmp_path / "b.pth", 3)
    assert main(["surgery", "--method", "remove", "--src-path", str(tmp_path / "b.pth"), "--out",
                 str(tmp_path / "o.pth"), "--param-name", "roi_head.bbox_head.fc_cls"]) == 0
    new = _load(tmp_path / "o.pth")
    assert "roi_head.bbox_head.fc_cls.weight" not in new and "roi_head.bbox_head.fc_reg.weight" in new


TEMPLATE = """\
_BASE_: "../Base-RCNN.yaml"
MODEL:
  ROI_HEADS:
    NUM_CLASSES: 5
DATASETS:
  TRAIN: ("voc_2007_trainval_novelx_1shot_seedx", )
  TEST: ('voc_2007_test_novelx',)
TEST:
  PCB_ENABLE: True
"""


def test_gen_fewshot_configs_writes_defrcns_per_seed_yaml(tmp_path, capsys):
    (tmp_path / "defrcn_gfsod_r101_novelx_3shot_seedx.yaml").write_text(TEMPLATE)
    assert main(["gen-fewshot-configs", "--dataset", "voc", "--config_root", str(tmp_path), "--shot", "3",
                 "--seed", "7", "--setting", "gfsod", "--split", "2"]) == 0
    out = tmp_path / "defrcn_gfsod_r101_novel2_3shot_seed7.yaml"
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text()
    assert '  TRAIN: ("voc_2007_trainval_all2_3shot_seed7", )\n' in text
    assert '  TEST: ("voc_2007_test_all2",)\n' in text
    assert "PCB_ENABLE: True" in text and "NUM_CLASSES: 5" in text
    assert main(["gen-fewshot-configs", "--dataset", "voc", "--config_root", str(tmp_path),
                 "--shot", "5"]) == 2
    assert "defrcn_fsod_r101_novelx_5shot_seedx.yaml' does not exist" in capsys.readouterr().err


def _run(root, name, **metrics):
    d = root / name / "inference"
    d.mkdir(parents=True)
    (d / "res_final.json").write_text(json.dumps({f"bbox/{k}": v for k, v in metrics.items()}))


def test_summarize_res_dir_gives_mean_std_and_95_ci_per_shot(tmp_path, capsys):
    _run(tmp_path, "1shot_seed0", nAP=10.0, nAP50=20.0, nAP75=5.0, bAP=50.0)
    _run(tmp_path, "1shot_seed1", nAP=20.0, nAP50=30.0, nAP75=7.0, bAP=54.0)
    _run(tmp_path, "2shot_seed0_repeat0", nAP=30.0, nAP50=40.0, nAP75=9.0, bAP=60.0)
    (tmp_path / "10shot_seed0").mkdir()  # a run that never finished is not a 1-shot run either
    assert main(["summarize", "--res-dir", str(tmp_path), "--shot-list", "1", "2"]) == 0
    text = (tmp_path / "results.txt").read_text()
    assert text.strip() in capsys.readouterr().out
    assert "--> 1-shot\n| run | nAP | nAP50 | nAP75 | bAP |" in text
    assert "| 1shot_seed1 | 20.00 | 30.00 | 7.00 | 54.00 |" in text
    assert "| μ | 15.00 | 25.00 | 6.00 | 52.00 |" in text
    assert "| σ | 5.00 | 5.00 | 1.00 | 2.00 |" in text  # numpy's (population) std, as DeFRCN
    assert f"| c | {1.96 * 5 / math.sqrt(2):.2f} |" in text
    assert "--> 2-shot" in text and "| c | 0.00 |" in text
    assert main(["summarize", "--res-dir", str(tmp_path), "--shot-list", "5"]) == 2
    assert "no finished 5-shot run" in capsys.readouterr().err


_REST = "shots: [1]\nbase_config: a\nfinetune_config: b\nwork_dir: w\n"


@pytest.mark.parametrize("spec, message", [
    ("shots: [1]\n", "has no 'dataset'"),
    ("dataset: voc\nsplit: 4\n" + _REST, "split must be 1"),
    ("dataset: lvis\n" + _REST, "must be voc, coco"),
    ("dataset: voc\nsetting: x\n" + _REST, "fsod or gfsod"),
    ("dataset: voc\nshot: 1\n" + _REST, "unknown keys"),
    ("dataset: {name: x}\n" + _REST, "lacks"),
])
def test_fewshot_spec_errors_name_the_key(tmp_path, capsys, spec, message):
    (tmp_path / "spec.yaml").write_text(spec)
    assert main(["fewshot", str(tmp_path / "spec.yaml")]) == 2
    assert message in capsys.readouterr().err
