"""Detectron2-style loader entry points driven by a config and catalog names."""

import pytest
from data_helpers import make_coco

from kiln.config import CfgNode
from kiln.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    register_coco_instances,
)


@pytest.fixture
def coco_name(tmp_path):
    images = [
        dict(id=1, file_name="a.jpg", height=40, width=60),
        dict(id=2, file_name="b.jpg", height=50, width=30),
        dict(id=3, file_name="c.jpg", height=30, width=30),
    ]
    anns = [
        dict(id=1, image_id=1, category_id=1, bbox=[1, 2, 10, 20]),
        dict(id=2, image_id=2, category_id=1, bbox=[0, 0, 10, 10], iscrowd=1),
    ]
    json_file, root = make_coco(tmp_path, images, anns, [dict(id=1, name="thing")])
    register_coco_instances("test_d2_loader", {}, json_file, root)
    yield "test_d2_loader"
    DatasetCatalog.remove("test_d2_loader")
    MetadataCatalog.remove("test_d2_loader")


def cfg_for(name):
    return CfgNode(
        dict(
            DATASETS=dict(TRAIN=(name,), TEST=(name,)),
            SOLVER=dict(IMS_PER_BATCH=2),
            SEED=3,
            DATALOADER=dict(
                NUM_WORKERS=0,
                ASPECT_RATIO_GROUPING=True,
                FILTER_EMPTY_ANNOTATIONS=True,
                SAMPLER_TRAIN="TrainingSampler",
                REPEAT_THRESHOLD=0.0,
            ),
        )
    )


def test_filter_empty_drops_images_with_only_crowd_or_nothing(coco_name):
    assert [d["image_id"] for d in get_detection_dataset_dicts(coco_name)] == [1]
    assert len(get_detection_dataset_dicts([coco_name], filter_empty=False)) == 3


def test_train_loader_from_config_with_custom_mapper_is_infinite_and_resumable(coco_name):
    loader = build_detection_train_loader(cfg_for(coco_name), lambda d: {"image_id": d["image_id"]})
    it = iter(loader)
    batches = [next(it) for _ in range(3)]
    assert loader.infinite and batches == [[{"image_id": 1}, {"image_id": 1}]] * 3
    assert loader.state_dict() == {"seed": 3, "epoch": 0, "start": 3}


def test_test_loader_keeps_every_image_in_order(coco_name):
    loader = build_detection_test_loader(cfg_for(coco_name), coco_name, mapper=lambda d: d["image_id"])
    assert list(loader) == [[1], [2], [3]]


def test_unknown_sampler_name_is_explained(coco_name):
    cfg = cfg_for(coco_name)
    cfg.DATALOADER.SAMPLER_TRAIN = "Nope"
    with pytest.raises(ValueError, match="SAMPLER_TRAIN = 'Nope' is unknown"):
        build_detection_train_loader(cfg, lambda d: d)


def test_datasets_with_different_classes_cannot_be_mixed(coco_name):
    DatasetCatalog.register("test_d2_other", lambda: [{"file_name": "x", "annotations": [{"iscrowd": 0}]}])
    MetadataCatalog.get("test_d2_other").set(thing_classes=["other"])
    try:
        DatasetCatalog.get(coco_name)  # loads metadata thing_classes
        with pytest.raises(ValueError, match="different thing_classes"):
            get_detection_dataset_dicts([coco_name, "test_d2_other"])
    finally:
        DatasetCatalog.remove("test_d2_other")
        MetadataCatalog.remove("test_d2_other")
