"""The dataset/pipeline/dataloader sections of the released MMDetection 3.3.0 configs, read from the
upstream tree as written (only data_root and num_workers overridden), run on small generated data."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from kiln.config import Config
from kiln.data import build_dataloader_from_cfg, build_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def upstream_configs(version: str) -> str:
    """The upstream ``configs/`` tree of MMDetection ``version`` (the shared helper of issue 11)."""
    root = os.environ.get("KILN_UPSTREAM_CONFIGS", os.path.join(REPO, ".venv", "upstream"))
    path = os.path.join(root, f"mmdet-{version}", "configs")
    if not os.path.isdir(path):
        pytest.fail(f"{path} missing: run `make test` or python scripts/fetch_upstream_configs.py")
    return path


def _cfg(rel: str) -> dict:
    return Config.fromfile(os.path.join(upstream_configs("3.3.0"), rel)).to_dict()


CATEGORIES = [dict(id=1, name="person"), dict(id=2, name="bicycle"), dict(id=3, name="car"),
              dict(id=18, name="dog")]


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> str:
    """data/coco layout: annotations/instances_{train,val}2017.json + {train,val}2017/*.jpg (6 images)."""
    root = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(0)
    sizes = [(48, 64), (64, 48), (40, 80), (72, 56), (50, 50), (36, 90)]
    images = [dict(id=i + 1, file_name=f"{i + 1:012d}.jpg", height=h, width=w)
              for i, (h, w) in enumerate(sizes)]
    anns = []
    for im in images:
        for k in range(2):
            cat = CATEGORIES[(im["id"] + k) % len(CATEGORIES)]["id"]
            anns.append(dict(id=len(anns) + 1, image_id=im["id"], category_id=cat, iscrowd=0, area=300.0,
                             bbox=[4.0 + 10 * k, 5.0, 20.0, 15.0]))
    for split in ("train2017", "val2017"):
        os.makedirs(root / split)
        for im in images:
            cv2.imwrite(str(root / split / im["file_name"]),
                        rng.integers(0, 255, (im["height"], im["width"], 3), dtype=np.uint8))
    os.makedirs(root / "annotations")
    for split in ("train2017", "val2017"):
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(dict(images=images, annotations=anns, categories=CATEGORIES)))
    return str(root) + "/"


def _loader(cfg: dict, key: str, data_root: str, training: bool, **kwargs):
    loader_cfg = dict(cfg[key], num_workers=0)
    ds_cfg = loader_cfg["dataset"]
    inner = ds_cfg
    while "dataset" in inner:
        inner = inner["dataset"]
    for d in inner.get("datasets", [inner]):
        d["data_root"] = data_root
    ds = build_dataset(ds_cfg, cfg_path=f"{key}.dataset")
    return ds, build_dataloader_from_cfg(loader_cfg, ds, training=training, seed=0, where=key, **kwargs)


def _check_sample(sample: dict, max_long: int, max_short: int, cropped: bool = False) -> None:
    inputs, ds = sample["inputs"], sample["data_samples"]
    assert isinstance(inputs, torch.Tensor) and inputs.dtype == torch.uint8 and inputs.shape[0] == 3
    h, w = ds.img_shape
    assert tuple(inputs.shape[1:]) == (h, w)
    assert max(h, w) <= max_long and min(h, w) <= max_short
    oh, ow = ds.ori_shape
    sw, sh = ds.scale_factor
    assert cropped or (abs(ow * sw - w) <= 1 and abs(oh * sh - h) <= 1)
    boxes = ds.gt_instances.bboxes
    assert boxes.dtype == torch.float32 and ds.gt_instances.labels.dtype == torch.int64
    assert len(boxes) == len(ds.gt_instances.labels) > 0
    assert bool((boxes[:, 2] > boxes[:, 0]).all()) and bool((boxes[:, 3] > boxes[:, 1]).all())
    assert float(boxes[:, [0, 2]].max()) <= w and float(boxes[:, [1, 3]].max()) <= h


def test_coco_detection_train_and_test_pipelines(coco_root):
    cfg = _cfg("_base_/datasets/coco_detection.py")
    ds, loader = _loader(cfg, "train_dataloader", coco_root, training=True)
    assert loader.aspect_ratio_grouping  # batch_sampler=AspectRatioBatchSampler
    assert ds.metainfo["classes"] == ("person", "bicycle", "car", "dog")
    batches = list(loader)
    assert sum(len(b) for b in batches) == 6
    for batch in batches:
        assert len(batch) <= 2
        for sample in batch:
            _check_sample(sample, 1333, 800)
            assert isinstance(sample["data_samples"].flip, bool)
    _, val = _loader(cfg, "val_dataloader", coco_root, training=False)
    samples = [s for b in val for s in b]
    assert [s["data_samples"].img_id for s in samples] == [1, 2, 3, 4, 5, 6]
    first = samples[0]["data_samples"]
    assert set(first.metainfo) == {"img_id", "img_path", "ori_shape", "img_shape", "scale_factor"}
    # LoadAnnotations runs after Resize in the test pipeline: ground truth stays in original pixels.
    assert first.gt_instances.bboxes[0].tolist() == [4.0, 5.0, 24.0, 20.0]


def test_coco_person_bicycle_car_subset(coco_root):
    cfg = _cfg("faster_rcnn/faster-rcnn_r50-caffe_fpn_ms-1x_coco-person-bicycle-car.py")
    ds, loader = _loader(cfg, "train_dataloader", coco_root, training=True)
    assert ds.metainfo == dict(classes=("person", "bicycle", "car"),
                               palette=[(220, 20, 60), (119, 11, 32), (0, 0, 142)])
    labels = [int(v) for b in loader for s in b for v in s["data_samples"].gt_instances.labels]
    assert labels and set(labels) <= {0, 1, 2}


def test_ms_3x_and_lsj_train_pipelines(coco_root):
    cfg = _cfg("common/ms_3x_coco.py")
    ds, loader = _loader(cfg, "train_dataloader", coco_root, training=True)
    assert len(ds) == 6 * cfg["train_dataloader"]["dataset"]["times"]
    for sample in next(iter(loader)):
        _check_sample(sample, 1333, 800)
        assert min(sample["data_samples"].img_shape) >= 640
    cfg = _cfg("common/lsj-100e_coco-detection.py")
    ds, loader = _loader(cfg, "train_dataloader", coco_root, training=True)
    it = iter(loader)
    for _ in range(3):
        for sample in next(it):
            _check_sample(sample, 1024, 1024, cropped=True)  # RandomResize(ratio_range), crop <= 1024


def test_retinanet_tta_pipeline(coco_root):
    cfg = _cfg("retinanet/retinanet_tta.py")
    ds = build_dataset(dict(type="CocoDataset", data_root=coco_root,
                            ann_file="annotations/instances_val2017.json", data_prefix=dict(img="val2017/"),
                            test_mode=True, pipeline=cfg["tta_pipeline"]))
    out = ds[0]
    assert len(out["inputs"]) == len(out["data_samples"]) == 6  # 3 scales x (flip, no flip)
    assert [s.flip for s in out["data_samples"]] == [True, False] * 3
    for view, sample in zip(out["inputs"], out["data_samples"]):
        assert tuple(view.shape[1:]) == sample.img_shape


def _voc_year(root: str, year: str, ids: list[str], rng: np.random.Generator) -> None:
    base = os.path.join(root, year)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    for i, fid in enumerate(ids):
        h, w = 48 + 8 * i, 64
        cv2.imwrite(os.path.join(base, "JPEGImages", fid + ".jpg"), rng.integers(0, 255, (h, w, 3), np.uint8))
        objs = [("dog", (2, 3, 40, 42), 0), ("car", (10, 10, 20, 20), 0), ("person", (5, 5, 50, 45), 1)]
        xml = "".join(f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
                      f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                      for c, b, d in objs)
        with open(os.path.join(base, "Annotations", fid + ".xml"), "w") as f:
            f.write(f"<annotation><filename>{fid}.jpg</filename><size><width>{w}</width><height>{h}</height>"
                    f"<depth>3</depth></size>{xml}</annotation>")
    for split in ("trainval", "test"):
        with open(os.path.join(base, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")


def test_voc0712_train_and_test(tmp_path):
    root = str(tmp_path / "VOCdevkit")
    rng = np.random.default_rng(0)
    _voc_year(root, "VOC2007", ["000001", "000002"], rng)
    _voc_year(root, "VOC2012", ["2008_000001", "2008_000002", "2008_000003"], rng)
    cfg = _cfg("_base_/datasets/voc0712.py")
    ds, loader = _loader(cfg, "train_dataloader", root + "/", training=True)
    assert len(ds) == 3 * 5  # RepeatDataset(times=3) of VOC2007 (2) + VOC2012 (3)
    for batch in loader:
        for sample in batch:
            _check_sample(sample, 1000, 600)
            # bbox_min_size=32: the 10-pixel car is ignored, as is the difficult person.
            assert sample["data_samples"].gt_instances.labels.tolist() == [11]  # dog
            assert sorted(sample["data_samples"].ignored_instances.labels.tolist()) == [6, 14]
    _, val = _loader(cfg, "val_dataloader", root + "/", training=False)
    samples = [s for b in val for s in b]
    assert [s["data_samples"].img_id for s in samples] == ["000001", "000002"]
    # test mode: no bbox_min_size there, so the car is a ground-truth box; boxes in original pixels
    assert samples[0]["data_samples"].gt_instances.labels.tolist() == [11, 6]
