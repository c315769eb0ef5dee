"""Detectron2's ``model_zoo`` API names and kiln's zoo table."""

from __future__ import annotations

import json
import os

import pytest
import torch
from loopback import Loopback
from zoo_publishers import kiln_to_detectron2, model_anchor_slots, write_pickle

from kiln import model_zoo


def test_get_config_file_takes_detectron2_names_and_returns_a_shipped_yaml():
    path = model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    assert os.path.isfile(path) and path.endswith("detectron2/COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    assert model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x") == path  # suffix optional


def test_get_config_is_a_cfgnode_whose_trained_weights_are_the_published_url():
    cfg = model_zoo.get_config("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml", trained=True)
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and cfg.MODEL.RESNETS.DEPTH == 50
    assert cfg.SOLVER.MAX_ITER == 270000  # the 3x schedule over the FPN base
    assert cfg.MODEL.WEIGHTS == ("https://dl.fbaipublicfiles.com/detectron2/COCO-Detection/"
                                 "faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl")
    assert model_zoo.get_checkpoint_url("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml") == cfg.MODEL.WEIGHTS
    untrained = model_zoo.get_config("COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml")
    assert untrained.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"


def test_retinanet_base_spells_detectron2s_anchor_sizes_as_numbers():
    cfg = model_zoo.get_config("COCO-Detection/retinanet_R_50_FPN_1x")
    sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
    assert len(sizes) == 5 and all(len(s) == 3 for s in sizes)
    for level, base in enumerate([32, 64, 128, 256, 512]):
        assert sizes[level] == pytest.approx([base, base * 2 ** (1 / 3), base * 2 ** (2 / 3)], rel=1e-6)


def test_every_entry_with_a_checkpoint_has_a_published_figure_or_is_a_backbone():
    for e in model_zoo.list_entries():
        if e.url and e.config:
            assert e.box_ap is not None and e.publisher, e.name
        if e.url and e.url.startswith("https://download.openmmlab.com/mmdetection/"):
            assert e.sha256 and e.url.split("-")[-1].startswith(e.sha256), e.name  # name carries the hash


def test_get_trained_downloads_converts_and_loads_a_detectron2_checkpoint(tmp_path, monkeypatch):
    """A private entry (zoo.json) whose checkpoint is a Detectron2 pickle of a kiln config's model."""
    from kiln.config import Config
    from kiln.models import build_detector

    monkeypatch.delenv("KILN_OFFLINE", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KILN_HOME", str(home))
    config = "kiln::shapes/retinanet_r18_fpn_shapes.py"
    cfg = Config.fromfile(model_zoo.resolve_config_path(config))
    torch.manual_seed(1)
    src = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg")).eval()
    d2 = kiln_to_detectron2(src.state_dict(), first_fpn_level=3, anchors=model_anchor_slots(src))
    pkl = tmp_path / "model_final_000000.pkl"
    write_pickle({"model": d2, "__author__": "team"}, str(pkl))
    (home / "zoo.json").write_text(json.dumps({"team/shapes": {
        "config": config, "url": "https://example.com/team/model_final_000000.pkl"}}))
    with Loopback({"/team/model_final_000000.pkl": pkl.read_bytes()}) as server:
        monkeypatch.setenv("KILN_ZOO_MIRROR", server.url)
        model = model_zoo.get("team/shapes", trained=True)
    got = model.state_dict()
    for k, v in src.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(got[k], v), k
