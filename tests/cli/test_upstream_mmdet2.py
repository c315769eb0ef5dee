"""MMDetection 2.28.2's own config files run unchanged: ``kiln train`` then ``kiln test`` on small data.

As tests/cli/test_upstream_mmdet3.py, for the 2.x tree: ``data=dict(samples_per_gpu, train/val/test)``,
``runner``, ``evaluation``, ``NumClassCheckHook`` in ``custom_hooks``, ``Normalize``/``Collect`` pipelines.
"""

from __future__ import annotations

import json
import os

import pytest
from upstream_helpers import make_mini_coco, make_mini_voc, run_upstream, upstream_configs

V = "2.28.2"
SMALL = ["data.samples_per_gpu=2", "data.workers_per_gpu=0", "runner.max_epochs=1",
         "model.backbone.init_cfg=None", "log_config.interval=1", "data.train.pipeline.2.img_scale=(96,96)",
         "data.val.pipeline.1.img_scale=(96,96)", "data.test.pipeline.1.img_scale=(96,96)"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A folder with MMDetection's data layout: data/coco (80 COCO classes) and data/VOCdevkit."""
    root = tmp_path_factory.mktemp("mmdet2")
    make_mini_coco(str(root / "data" / "coco"), num_train=4, num_val=2, size=96)
    make_mini_voc(str(root / "data" / "VOCdevkit"), num_train=2, num_test=2, size=96)
    return root


def _metrics(work_dir):
    lines = [json.loads(x) for x in (work_dir / "metrics.jsonl").read_text().splitlines()]
    return {k: v for rec in lines for k, v in rec.items()}


def test_retinanet_r50_fpn_1x_coco_trains_and_tests(root):
    work = root / "retinanet"
    cfg = os.path.join(upstream_configs(V), "retinanet", "retinanet_r50_fpn_1x_coco.py")
    _, tested = run_upstream(cfg, str(work), SMALL, cwd=str(root), test=True)
    assert (work / "epoch_1.pth").is_file()
    # 2.x metric='bbox' reports kiln's COCO names (docs/from_mmdetection.md, "Evaluation")
    assert "bbox/AP" in _metrics(work)
    assert "bbox/AP" in json.loads((work / "test_metrics.json").read_text())


@pytest.mark.parametrize("name", ["faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
                                  "cascade_rcnn/cascade_rcnn_r50_fpn_1x_coco.py"])
def test_two_stage_configs_train_and_evaluate(root, name):
    work = root / os.path.basename(name)[:-3]
    run_upstream(os.path.join(upstream_configs(V), name), str(work), SMALL, cwd=str(root))
    assert "bbox/AP50" in _metrics(work)


def test_voc0712_faster_rcnn_reports_voc_map(root):
    work = root / "voc"
    cfg = os.path.join(upstream_configs(V), "pascal_voc", "faster_rcnn_r50_fpn_1x_voc0712.py")
    options = [o for o in SMALL if not o.startswith("data.train.pipeline")] + [
        "data.train.times=1", "data.train.dataset.pipeline.2.img_scale=(96,96)"]
    run_upstream(cfg, str(work), options, cwd=str(root), test=True)
    assert "mAP" in _metrics(work)


def test_head_dataset_class_count_mismatch_is_refused_by_num_class_check(root):
    cfg = os.path.join(upstream_configs(V), "retinanet", "retinanet_r50_fpn_1x_coco.py")
    with pytest.raises(AssertionError, match=r"num_classes.*3.*80|80.*3"):
        run_upstream(cfg, str(root / "mismatch"), SMALL + ["model.bbox_head.num_classes=3"], cwd=str(root))
