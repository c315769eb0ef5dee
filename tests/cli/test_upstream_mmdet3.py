"""MMDetection 3.3.0's own config files run unchanged: ``kiln train`` then ``kiln test`` on small data.

Each case is a released config file (read from the wheel's ``configs/`` tree) run in a folder whose
``data/`` holds a small generated dataset in MMDetection's layout; the only overrides are the ones a user
on a 2-core machine would pass: fewer/smaller images, one epoch, no worker processes, and no ImageNet
download (``init_cfg=None``). Every run must train, save a checkpoint, evaluate with the config's own
metric and write the metric under MMDetection's name.
"""

from __future__ import annotations

import json
import os

import pytest
from upstream_helpers import make_mini_coco, make_mini_voc, run_upstream, upstream_configs

V = "3.3.0"
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
SMALL = [f"{d}.num_workers=0" for d in LOADERS] + [f"{d}.persistent_workers=False" for d in LOADERS] + [
    "train_dataloader.batch_size=2", "train_cfg.max_epochs=1", "model.backbone.init_cfg=None",
    "default_hooks.logger.interval=1",
]
TEST_SCALE = ["val_dataloader.dataset.pipeline.1.scale=(96,96)",
              "test_dataloader.dataset.pipeline.1.scale=(96,96)"]
TRAIN_SCALE = ["train_dataloader.dataset.pipeline.2.scale=(96,96)"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder with MMDetection's data layout: data/coco (80 COCO classes) and data/VOCdevkit."""
    root = tmp_path_factory.mktemp("mmdet3")
    make_mini_coco(str(root / "data" / "coco"), num_train=4, num_val=2, size=96)
    make_mini_voc(str(root / "data" / "VOCdevkit"), num_train=2, num_test=2, size=96)
    return root


def _metrics(work_dir):
    lines = [json.loads(x) for x in (work_dir / "metrics.jsonl").read_text().splitlines()]
    return {k: v for rec in lines for k, v in rec.items()}


def test_retinanet_r50_fpn_1x_coco_trains_and_tests(root, kiln):
    work = root / "retinanet"
    cfg = os.path.join(upstream_configs(V), "retinanet", "retinanet_r50_fpn_1x_coco.py")
    _, tested = run_upstream(cfg, str(work), SMALL + TEST_SCALE + TRAIN_SCALE, cwd=str(root), test=True)
    assert (work / "epoch_1.pth").is_file()
    assert "coco/bbox_mAP" in _metrics(work)
    assert "coco/bbox_mAP:" in tested.stdout
    assert "coco/bbox_mAP" in json.loads((work / "test_metrics.json").read_text())
    # --tta: the config's tta_pipeline (3 scales x 2 flips, here shrunk) merged as tta_model says
    scales = [f"tta_pipeline.1.transforms.0.{i}.scale=({s},{s})" for i, s in enumerate((64, 96, 128))]
    proc = kiln("test", cfg, str(work), "--tta", "--work-dir", str(work / "tta"),
                "--out", str(work / "dets.json"), "--show-dir", str(work / "show"), "--show-score-thr", "0",
                "--cfg-options", *SMALL, *scales, cwd=str(root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "coco/bbox_mAP" in json.loads((work / "tta" / "test_metrics.json").read_text())
    assert isinstance(json.loads((work / "dets.json").read_text()), list)  # COCO result format
    # --show-dir on a config with DetVisualizationHook: as MMDetection's, ground truth left, predictions right
    import cv2

    drawn = sorted((work / "show").glob("*.jpg"))
    assert len(drawn) == 2 and cv2.imread(str(drawn[0])).shape[:2] == (96, 192)
    # kiln infer: the class names come from the test set's COCO json (CocoDataset has no fixed list)
    image = root / "data" / "coco" / "val2017" / "000001.jpg"
    proc = kiln("infer", cfg, str(work), str(image), "--out-dir", str(work / "infer"), "--score-thr", "0",
                "--cfg-options", *TEST_SCALE, cwd=str(root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "infer" / "000001.png").is_file() and (work / "infer" / "predictions.json").is_file()


@pytest.mark.parametrize("name", ["faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
                                  "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py"])
def test_two_stage_configs_train_and_evaluate(root, name):
    work = root / os.path.basename(name)[:-3]
    cfg = os.path.join(upstream_configs(V), name)
    run_upstream(cfg, str(work), SMALL + TEST_SCALE + TRAIN_SCALE, cwd=str(root))
    assert (work / "epoch_1.pth").is_file()
    assert "coco/bbox_mAP_50" in _metrics(work)


def test_caffe_multiscale_person_subset_config_trains_on_one_class(root):
    """``faster-rcnn_r50-caffe_fpn_ms-1x_coco-person.py``: caffe-style backbone and data_preprocessor,
    RandomChoiceResize, a class subset through ``metainfo`` and a 1-class head."""
    work = root / "person"
    cfg = os.path.join(upstream_configs(V), "faster_rcnn", "faster-rcnn_r50-caffe_fpn_ms-1x_coco-person.py")
    run_upstream(cfg, str(work), SMALL + TEST_SCALE + [
        "train_dataloader.dataset.pipeline.2.scales=[(96,96),(112,112)]", "load_from=None"], cwd=str(root))
    metrics = _metrics(work)
    assert "coco/bbox_mAP" in metrics
    # MMEngine's resume=True: a second epoch continues from the work dir's last checkpoint
    train, _ = run_upstream(cfg, str(work), SMALL + TEST_SCALE + [
        "train_dataloader.dataset.pipeline.2.scales=[(96,96),(112,112)]", "load_from=None", "resume=True",
        "train_cfg.max_epochs=2"], cwd=str(root))
    assert "Resumed from" in train.stdout + train.stderr and (work / "epoch_2.pth").is_file()


def test_voc0712_faster_rcnn_trains_on_repeated_concat_and_reports_voc_map(root):
    work = root / "voc"
    cfg = os.path.join(upstream_configs(V), "pascal_voc", "faster-rcnn_r50_fpn_1x_voc0712.py")
    inner = "train_dataloader.dataset.dataset.datasets"
    run_upstream(cfg, str(work), SMALL + TEST_SCALE + [
        "train_dataloader.dataset.times=1", "train_cfg.max_epochs=1",
        f"{inner}.0.pipeline.2.scale=(96,96)", f"{inner}.1.pipeline.2.scale=(96,96)",
    ], cwd=str(root), test=True)
    assert "pascal_voc/mAP" in _metrics(work)


def test_amp_config_builds_an_amp_optimizer_wrapper(root, monkeypatch):
    """``faster-rcnn_r50_fpn_amp-1x_coco.py`` sets AMP by editing its base in place
    (``_base_.optim_wrapper.type = 'AmpOptimWrapper'``); the runner built from it trains with AMP. (Built,
    not trained: mixed precision on a CPU is much slower than float32.)"""
    from kiln.config import Config
    from kiln.engine import Runner

    monkeypatch.chdir(root)
    path = os.path.join(upstream_configs(V), "faster_rcnn", "faster-rcnn_r50_fpn_amp-1x_coco.py")
    cfg = Config.fromfile(path, cfg_options=SMALL + [f"work_dir={root / 'amp'}"])
    runner = Runner.from_cfg(cfg)
    assert type(runner.optim_wrapper).__name__ == "AmpOptimWrapper"
    assert runner.optim_wrapper.scaler is not None  # float16 with a dynamic loss scale, as the config says
