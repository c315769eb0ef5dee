"""Class-count check: every head's num_classes against the dataset's classes, with a clear error."""

from __future__ import annotations

import copy
import logging
import os

import pytest
import torch
from retina_configs import TINY_RETINANET
from twostage_configs import faster_rcnn_cfg

from kiln.config import Config
from kiln.data.datasets.wrappers import RepeatDataset
from kiln.models import build_detector, check_model_dataset_classes, check_num_classes, num_classes_of
from kiln.registry import HOOKS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def upstream_configs(version: str) -> str:
    """The ``configs/`` tree of the released MMDetection ``version`` (scripts/fetch_upstream_configs.py)."""
    root = os.environ.get("KILN_UPSTREAM_CONFIGS", os.path.join(REPO, ".venv", "upstream"))
    path = os.path.join(root, f"mmdet-{version}", "configs")
    if not os.path.isdir(path):
        pytest.fail(f"{path} missing: run `make test` or python scripts/fetch_upstream_configs.py")
    return path


class Boxes2x(torch.utils.data.Dataset):
    """A 2.x-style dataset: class names in ``CLASSES``."""

    def __init__(self, classes):
        self.CLASSES = classes

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"i": i}


class Boxes3x(Boxes2x):
    """A 3.x-style dataset: class names in ``metainfo['classes']``."""

    def __init__(self, classes):
        self.metainfo = {"classes": classes}


def test_heads_are_listed_by_config_key_and_the_rpn_is_not():
    assert num_classes_of(build_detector(copy.deepcopy(TINY_RETINANET))) == {"model.bbox_head.num_classes": 3}
    faster = build_detector(faster_rcnn_cfg(num_classes=5))
    assert num_classes_of(faster) == {"model.roi_head.bbox_head.num_classes": 5}


def test_cascade_stages_are_each_checked():
    rel = "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py"
    cfg = Config.fromfile(os.path.join(upstream_configs("3.3.0"), rel))
    model = build_detector(cfg.model)
    assert num_classes_of(model) == {f"model.roi_head.bbox_head[{i}].num_classes": 80 for i in range(3)}
    expected = (r"bbox_head\[0\]\.num_classes=80.*bbox_head\[2\]\.num_classes=80 but "
                r"train_dataloader\.dataset has 3 classes")
    with pytest.raises(ValueError, match=expected):
        check_model_dataset_classes(model, Boxes3x(("a", "b", "c")), where="train_dataloader.dataset")


def test_mismatch_names_both_numbers_and_both_keys():
    model = build_detector(faster_rcnn_cfg(num_classes=80))
    with pytest.raises(ValueError) as err:
        check_num_classes(model, ("cat", "dog", "bird"), dataset_key="train_dataloader.dataset")
    msg = str(err.value)
    assert msg.startswith(
        "model.roi_head.bbox_head.num_classes=80 but train_dataloader.dataset has 3 classes")
    assert "metainfo.classes / CLASSES" in msg and "num_classes=3" in msg


@pytest.mark.parametrize("dataset", [Boxes2x(("a", "b", "c")), Boxes3x(("a", "b", "c")),
                                     RepeatDataset(Boxes3x(("a", "b", "c")), times=2)],
                         ids=["CLASSES", "metainfo", "RepeatDataset"])
def test_matching_counts_pass_for_every_dataset_form(dataset):
    model = build_detector(faster_rcnn_cfg(num_classes=3))
    assert check_model_dataset_classes(model, dataset, where="data.train") is True
    with pytest.raises(ValueError, match="data.train has 2 classes"):
        check_model_dataset_classes(model, RepeatDataset(Boxes2x(("a", "b")), times=3), where="data.train")


def test_a_single_class_written_as_a_string_is_refused_with_the_fix():
    model = build_detector(copy.deepcopy(TINY_RETINANET))
    with pytest.raises(TypeError, match=r"\('person',\) — with the trailing comma"):
        check_model_dataset_classes(model, Boxes2x("person"), where="data.train")


def test_a_dataset_without_class_names_is_reported_not_checked(caplog):
    model = build_detector(copy.deepcopy(TINY_RETINANET))
    with caplog.at_level(logging.WARNING):
        assert check_model_dataset_classes(model, Boxes2x(None), where="data.val") is False
    assert "data.val" in caplog.text and "model.bbox_head.num_classes" in caplog.text


class _Runner:
    """The attributes NumClassCheckHook reads from kiln's Runner."""

    def __init__(self, model, train, val):
        self.unwrapped_model = self.model = model
        self.train_dataloader = torch.utils.data.DataLoader(train)
        self.val_dataloader = torch.utils.data.DataLoader(val)


def test_num_class_check_hook_checks_the_train_and_val_datasets():
    hook = HOOKS.build(dict(type="NumClassCheckHook"))
    model = build_detector(copy.deepcopy(TINY_RETINANET))
    good, bad = Boxes3x(("a", "b", "c")), Boxes3x(("a", "b", "c", "d"))
    hook.before_train_epoch(_Runner(model, good, bad))
    with pytest.raises(ValueError, match="model.bbox_head.num_classes=3 but val_dataloader.dataset has 4"):
        hook.before_val_epoch(_Runner(model, good, bad))
    with pytest.raises(ValueError, match="but train_dataloader.dataset has 4"):
        hook.before_train_epoch(_Runner(model, bad, good))
