"""Few-shot tools: K-shot subsets + per-shot/per-seed configs, and freezing modules."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from kiln.cli import main
from kiln.cli.fewshot import freeze_modules, sample_kshot
from kiln.config import Config


@pytest.fixture
def small_shapes_cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_DATA", str(tmp_path / "data"))
    cfg = tmp_path / "base.py"
    cfg.write_text("_base_ = 'kiln::shapes/retinanet_r18_fpn_shapes.py'\n"
                   "data = dict(train=dict(num_images=24, image_size=64))\n")
    return cfg


def _coco(n_images=30):
    images, anns = [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10})
        for k in range(i % 3 + 1):  # 1..3 boxes per image, class cycles
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": (i + k) % 3 + 1,
                         "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3)]}


@pytest.mark.parametrize("shot", [1, 2, 5])
def test_kshot_subset_has_exactly_k_instances_per_class(shot):
    sub = sample_kshot(_coco(), shot, seed=0)
    assert Counter(a["category_id"] for a in sub["annotations"]) == {1: shot, 2: shot, 3: shot}
    assert {a["image_id"] for a in sub["annotations"]} == {im["id"] for im in sub["images"]}


def test_kshot_sampling_depends_on_seed_and_is_reproducible():
    a, b, c = (sample_kshot(_coco(), 2, seed=s) for s in (0, 0, 1))
    assert a == b
    assert [x["id"] for x in a["annotations"]] != [x["id"] for x in c["annotations"]]


def test_generator_writes_one_loadable_config_per_shot_and_seed(small_shapes_cfg, tmp_path, capsys):
    out = tmp_path / "fs"
    ckpt = tmp_path / "base_surgery.pth"
    ckpt.write_bytes(b"x")
    assert main(["gen-fewshot-configs", str(small_shapes_cfg), "--shots", "1", "3", "--seeds", "0", "1",
                 "--out-dir", str(out), "--load-from", str(ckpt), "--freeze", "backbone",
                 "--cfg-options", "total_epochs={shot}"]) == 0
    files = sorted(p.name for p in out.glob("*.py"))
    assert files == [f"base_{k}shot_seed{s}.py" for k in (1, 3) for s in (0, 1)]
    cfg = Config.fromfile(str(out / "base_3shot_seed1.py"))
    assert cfg.total_epochs == 3 and cfg.seed == 1
    assert cfg.load_from == str(ckpt) and cfg.frozen_modules == ["backbone"]
    assert cfg.work_dir.endswith("3shot_seed1")
    assert cfg.data.train.type == "CocoDataset" and "num_images" not in cfg.data.train
    assert cfg.model.bbox_head.num_classes == 3  # everything else inherited
    subset = json.loads(open(cfg.data.train.ann_file).read())
    counts = Counter(a["category_id"] for a in subset["annotations"])
    assert all(v <= 3 for v in counts.values()) and sum(counts.values()) >= 3


def test_freeze_modules_stops_grads_and_keeps_batchnorm_in_eval():
    import torch.nn as nn

    model = nn.Sequential()
    model.add_module("backbone", nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    model.add_module("head", nn.Conv2d(4, 2, 1))
    frozen = freeze_modules(model, ["backbone"])
    assert set(frozen) == {"backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"}
    model.train()
    assert not model.backbone.training and not model.backbone[1].training
    assert model.head.training and model.head.weight.requires_grad


def test_freeze_unknown_module_names_it():
    import torch.nn as nn

    from kiln.cli.errors import CLIError

    with pytest.raises(CLIError, match="no submodule 'neck'"):
        freeze_modules(nn.Sequential(), ["neck"])
