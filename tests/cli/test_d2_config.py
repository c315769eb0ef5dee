"""Detectron2-style yaml (`_BASE_`, MODEL/SOLVER/DATASETS/INPUT, `--opts`) in the canonical schema."""

from __future__ import annotations

import re

import pytest

from kiln.cli import main
from kiln.cli.d2_config import load_d2_config


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory):
    """Two small COCO-format shapes splits registered in the catalog as d2t_train / d2t_val."""
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    root = tmp_path_factory.mktemp("d2data")
    for split, n in (("train", 8), ("val", 4)):
        name = f"d2t_{split}"
        if name not in DatasetCatalog.list():
            p = generate_shapes_dataset(str(root), num_images=n, image_size=64, split=split)
            register_coco_instances(name, {}, p["ann_file"], p["img_prefix"])
    return root


BASE = """\
MODEL:
  META_ARCHITECTURE: "RetinaNet"
  BACKBONE:
    NAME: "build_retinanet_resnet_fpn_backbone"
  RESNETS:
    DEPTH: 50
    OUT_FEATURES: ["res3", "res4", "res5"]
  ANCHOR_GENERATOR:
    SIZES: !!python/object/apply:eval ["[[x, x * 2**(1/3), x * 2**(2/3)] for x in [32, 64, 128, 256, 512]]"]
  FPN:
    IN_FEATURES: ["res3", "res4", "res5"]
  RETINANET:
    NUM_CLASSES: 3
DATASETS:
  TRAIN: ("d2t_train",)
  TEST: ("d2t_val",)
SOLVER:
  IMS_PER_BATCH: 16
  BASE_LR: 0.01
  STEPS: (60000, 80000)
  MAX_ITER: 90000
INPUT:
  MIN_SIZE_TRAIN: (640, 672, 704)
"""


def _write(tmp_path, child: str):
    (tmp_path / "Base-RetinaNet.yaml").write_text(BASE)
    path = tmp_path / "retina.yaml"
    path.write_text('_BASE_: "Base-RetinaNet.yaml"\n' + child)
    return str(path)


def test_retinanet_yaml_maps_model_solver_data_and_output(tiny_catalog, tmp_path):
    path = _write(tmp_path, "MODEL:\n  RESNETS:\n    DEPTH: 18\n    RES2_OUT_CHANNELS: 64\n"
                            "SOLVER:\n  CHECKPOINT_PERIOD: 500\n"
                            "OUTPUT_DIR: ./out/retina\nINPUT:\n  MAX_SIZE_TRAIN: 1000\n")
    cfg = load_d2_config(path, ["SOLVER.BASE_LR", "0.02", "SEED", "7"])
    assert cfg.model.type == "RetinaNet"
    # FPN.IN_FEATURES res3..res5 of an R18: 128, 256 and 512 channels (P6/P7 from res5)
    assert cfg.model.backbone.depth == 18 and cfg.model.neck.in_channels == [128, 256, 512]
    assert cfg.model.bbox_head.num_classes == 3
    assert cfg.optim_wrapper.optimizer.lr == 0.02  # --opts wins over the file
    assert cfg.train_dataloader.batch_size == 16
    assert cfg.train_cfg.type == "IterBasedTrainLoop" and cfg.train_cfg.max_iters == 90000
    steps = [s for s in cfg.param_scheduler if s.type == "MultiStepLR"]
    assert len(steps) == 1 and steps[0].milestones == [60000, 80000] and steps[0].by_epoch is False
    assert cfg.default_hooks.checkpoint.interval == 500
    assert cfg.work_dir == "./out/retina" and cfg.randomness.seed == 7
    assert cfg.device == "cpu" and "sync_bn" not in cfg  # kiln's MODEL.DEVICE default; FrozenBN
    train = cfg.train_dataloader.dataset
    resize = train.pipeline[2]
    assert resize.img_scale == [(1000, 640), (1000, 672), (1000, 704)]
    assert train.type == "CocoDataset" and train.ann_file.endswith("annotations.json")
    assert cfg.test_dataloader.dataset.test_mode is True


def test_generalized_rcnn_maps_to_faster_rcnn_with_roi_classes(tiny_catalog, tmp_path):
    path = _write(tmp_path, 'MODEL:\n  META_ARCHITECTURE: "GeneralizedRCNN"\n  BACKBONE:\n'
                            '    NAME: "build_resnet_fpn_backbone"\n  RESNETS:\n'
                            '    OUT_FEATURES: ["res2", "res3", "res4", "res5"]\n  FPN:\n'
                            '    IN_FEATURES: ["res2", "res3", "res4", "res5"]\n  ANCHOR_GENERATOR:\n'
                            '    SIZES: [[32], [64], [128], [256], [512]]\n  RPN:\n'
                            '    IN_FEATURES: ["p2", "p3", "p4", "p5", "p6"]\n  ROI_HEADS:\n'
                            '    NAME: StandardROIHeads\n    IN_FEATURES: ["p2", "p3", "p4", "p5"]\n'
                            '    NUM_CLASSES: 5\n  ROI_BOX_HEAD:\n    NAME: FastRCNNConvFCHead\n'
                            '    NUM_FC: 2\n    POOLER_RESOLUTION: 7\n')
    cfg = load_d2_config(path)
    assert cfg.model.type == "FasterRCNN"
    assert cfg.model.roi_head.bbox_head.num_classes == 5


def test_fewshot_freeze_flags_become_frozen_modules(tiny_catalog, tmp_path):
    path = _write(tmp_path, "MODEL:\n  BACKBONE:\n    FREEZE: True\n")
    cfg = load_d2_config(path, ["MODEL.ROI_HEADS.FREEZE_FEAT", "True"])
    assert cfg.frozen_modules == ["backbone", "roi_head.bbox_head.shared_fcs"]


def test_device_cudnn_benchmark_and_syncbn_become_canonical_keys(tiny_catalog, tmp_path):
    path = _write(tmp_path, "MODEL:\n  DEVICE: cuda:1\n  RESNETS:\n    NORM: SyncBN\nCUDNN_BENCHMARK: True\n")
    cfg = load_d2_config(path)
    assert cfg.device == "cuda:1"
    assert cfg.env_cfg == dict(cudnn_benchmark=True)
    assert cfg.sync_bn == "torch" and cfg.model.backbone.norm_cfg.type == "SyncBN"


def test_unsupported_architecture_is_a_clear_error(tiny_catalog, tmp_path, capsys):
    path = _write(tmp_path, 'MODEL:\n  META_ARCHITECTURE: "PanopticFPN"\n')
    assert main(["config", "print", path]) == 2
    err = capsys.readouterr().err
    assert "PanopticFPN" in err and "RetinaNet" in err and "GeneralizedRCNN" in err


def test_unknown_dataset_name_lists_registered_ones(tiny_catalog, tmp_path, capsys):
    # (coco_2017_train is a built-in name now, registered without its files: use one nobody registers.)
    path = _write(tmp_path, 'DATASETS:\n  TRAIN: ("nobody_registered_train",)\n')
    assert main(["config", "print", path]) == 2
    err = capsys.readouterr().err
    assert "nobody_registered_train" in err and "d2t_train" in err


def test_unknown_yaml_key_is_rejected_with_its_name(tiny_catalog, tmp_path, capsys):
    path = _write(tmp_path, "SOLVER:\n  BASE_LRR: 0.1\n")
    assert main(["config", "print", path]) == 2
    assert "BASE_LRR" in capsys.readouterr().err


def test_opts_with_wrong_type_is_rejected(tiny_catalog, tmp_path, capsys):
    path = _write(tmp_path, "")
    assert main(["config", "print", path, "--opts", "SOLVER.MAX_ITER", "many"]) == 2
    assert "SOLVER.MAX_ITER" in capsys.readouterr().err


def test_kiln_train_on_a_detectron2_yaml_with_opts(tiny_catalog, tmp_path):
    import json

    path = _write(tmp_path, "")
    out = tmp_path / "out"
    opts = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
            "MODEL.FPN.OUT_CHANNELS", "64", "SOLVER.IMS_PER_BATCH", "4",
            "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)", "SOLVER.WARMUP_ITERS", "0",
            "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "2", "INPUT.MIN_SIZE_TRAIN", "(64,)",
            "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
            "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out), "SEED", "1"]
    assert main(["train", "--config-file", path, "--opts", *opts]) == 0
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert max(r["iteration"] for r in records if "loss" in r) == 1  # MAX_ITER=2
    lr = [r["lr"] for r in records if "lr" in r][-1]
    assert abs(lr - 0.001) < 1e-9  # BASE_LR 0.01 x GAMMA after STEPS=(1,)
    # TEST.EVAL_PERIOD: validated after 2 iterations; Detectron2's output names.
    assert re.search(r"Iter\(val\) \[2\]\[\d+/\d+\]  bbox/AP", (out / "log.txt").read_text())
    assert (out / "config.yaml").is_file()
    assert (out / "model_0000001.pth").is_file() and (out / "model_final.pth").is_file()
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
