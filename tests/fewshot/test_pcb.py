"""The Prototypical Calibration Block: detections in (lower, upper] of a non-excluded class get
alpha * score + (1 - alpha) * cosine(feature, class prototype); the classifier comes from a local file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kiln.image.io import imwrite
from kiln.models.fewshot import PrototypicalCalibrationBlock, build_imagenet_resnet


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("pcb_img") / "a.png"
    imwrite(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), str(path))
    return str(path)


BOX_A = [8.0, 8.0, 72.0, 70.0]
BOX_B = [60.0, 20.0, 124.0, 90.0]


def _pcb(pcb_weights, image, **kw):
    support = lambda: [(image, np.array([BOX_A, BOX_B], np.float32), np.array([0, 1]))]  # noqa: E731
    return PrototypicalCalibrationBlock(pcb_weights, support, **kw)


def _dets(scores, labels, boxes=None):
    boxes = boxes if boxes is not None else [BOX_A] * len(scores)
    return {"boxes": torch.tensor(boxes), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}


def test_a_detection_on_its_own_support_box_gets_cosine_one(pcb_weights, image):
    # one support box per class: the prototype is that box's feature, so the same box scores cosine 1
    pcb = _pcb(pcb_weights, image, alpha=0.5)
    out = pcb.calibrate(image, _dets([0.4, 0.2], [0, 1], [BOX_A, BOX_B]))
    assert torch.allclose(out["scores"], torch.tensor([0.5 * 0.4 + 0.5, 0.5 * 0.2 + 0.5]), atol=1e-5)
    # box A seen as class 1: its similarity to class 1's prototype (box B) is below one
    other = pcb.calibrate(image, _dets([0.4], [1], [BOX_A]))["scores"][0]
    assert other < 0.5 * 0.4 + 0.5 - 1e-4


def test_scores_outside_the_band_and_excluded_classes_are_left_alone(pcb_weights, image):
    pcb = _pcb(pcb_weights, image, alpha=0.3, upper=0.9, lower=0.1, exclude_classes=[1])
    dets = _dets([0.95, 0.5, 0.05, 0.5], [0, 0, 0, 1])
    out = pcb.calibrate(image, dets)
    assert out["scores"][0] == pytest.approx(0.95)  # above PCB_UPPER
    assert out["scores"][2] == pytest.approx(0.05)  # not above PCB_LOWER
    assert out["scores"][3] == pytest.approx(0.5)   # an excluded (base) class
    assert out["scores"][1] == pytest.approx(0.3 * 0.5 + 0.7)  # box A as class 0: cosine 1
    assert torch.equal(dets["scores"], torch.tensor([0.95, 0.5, 0.05, 0.5]))  # input not modified


def test_classifier_architecture_is_read_from_the_file(pcb_weights, tmp_path):
    import torchvision

    assert isinstance(build_imagenet_resnet(pcb_weights), torchvision.models.ResNet)
    assert len(build_imagenet_resnet(pcb_weights).layer1) == 2  # resnet18
    with pytest.raises(FileNotFoundError, match="TEST.PCB_MODELPATH '/no/such.pth' does not exist"):
        build_imagenet_resnet("/no/such.pth")
    with pytest.raises(ValueError, match="TEST.PCB_MODELPATH is empty"):
        build_imagenet_resnet("")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="holds no torchvision ResNet state dict"):
        build_imagenet_resnet(str(bad))


def test_bad_settings_are_refused(pcb_weights, image):
    with pytest.raises(ValueError, match="TEST.PCB_MODELTYPE 'vgg' is not supported"):
        _pcb(pcb_weights, image, model_type="vgg")
    with pytest.raises(ValueError, match=r"TEST.PCB_ALPHA must be in \[0, 1\]"):
        _pcb(pcb_weights, image, alpha=1.5)
    with pytest.raises(ValueError, match="TEST.PCB_LOWER"):
        _pcb(pcb_weights, image, lower=0.8, upper=0.5)


def test_support_set_from_a_coco_json_in_the_given_class_order(tmp_path):
    import json

    from kiln.models.fewshot.defrcn import support_loader

    coco = {"images": [{"id": 5, "file_name": "a.jpg", "height": 50, "width": 60}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 3, "bbox": [1, 2, 10, 20], "iscrowd": 0},
                            {"id": 2, "image_id": 5, "category_id": 9, "bbox": [5, 5, 5, 5], "iscrowd": 0},
                            {"id": 3, "image_id": 5, "category_id": 3, "bbox": [0, 0, 9, 9], "iscrowd": 1}],
            "categories": [{"id": 3, "name": "cat"}, {"id": 9, "name": "dog"}]}
    (tmp_path / "s.json").write_text(json.dumps(coco))
    load = support_loader(dict(ann_file=str(tmp_path / "s.json"), img_prefix="imgs", classes=["dog", "cat"]))
    items = load()
    [(path, boxes, labels)] = items
    assert path == "imgs/a.jpg"
    assert boxes.tolist() == [[1, 2, 11, 22], [5, 5, 10, 10]] and labels.tolist() == [1, 0]  # crowd dropped
    with pytest.raises(KeyError, match="give dataset_name"):
        support_loader(dict(json="x"))

