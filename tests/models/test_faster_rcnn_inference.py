"""init_detector / inference_detector / Predictor: config + checkpoint → predictions → PNG."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from twostage_configs import faster_rcnn_cfg, one_thread, split_train_test_cfg  # noqa: F401  (fixture)

from kiln.engine.checkpoint import Checkpointer
from kiln.models import build_detector
from kiln.models.inference import Predictor, inference_detector, init_detector, show_result

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)

pytestmark = pytest.mark.usefixtures("one_thread")


def write_config(tmp_path, low_score: bool = True) -> str:
    model, train_cfg, test_cfg = split_train_test_cfg(faster_rcnn_cfg())
    if low_score:
        test_cfg["rcnn"]["score_thr"] = 0.0  # an untrained model's scores are low; keep its boxes
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="MultiScaleFlipAug", img_scale=(96, 96), flip=False,
             transforms=[dict(type="Resize", keep_ratio=True), dict(type="RandomFlip"),
                         dict(type="Normalize", **NORM), dict(type="Pad", size_divisor=32),
                         dict(type="ImageToTensor", keys=["img"]), dict(type="Collect", keys=["img"])]),
    ]
    text = (f"model = {model!r}\ntrain_cfg = {train_cfg!r}\ntest_cfg = {test_cfg!r}\n"
            f"test_pipeline = {test_pipeline!r}\n"
            "data = dict(test=dict(type='CocoDataset', ann_file='x.json',"
            " classes=('circle', 'square', 'triangle'), pipeline=test_pipeline))\n")
    path = tmp_path / "faster_rcnn_tiny.py"
    path.write_text(text)
    return str(path)


@pytest.fixture
def image_file(tmp_path) -> str:
    img = np.full((128, 160, 3), 90, np.uint8)
    cv2.rectangle(img, (20, 30), (70, 90), (10, 200, 30), -1)
    cv2.circle(img, (120, 60), 25, (200, 40, 40), -1)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), img)
    return str(path)


@pytest.fixture
def checkpoint(tmp_path) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(3)
    model = build_detector(faster_rcnn_cfg())
    Checkpointer(model, str(tmp_path)).save("model_final")
    return str(tmp_path / "model_final.pth"), model


def test_checkpoint_weights_are_loaded(tmp_path, checkpoint):
    path, trained = checkpoint
    model = init_detector(write_config(tmp_path), path)
    for (k, a), (_, b) in zip(model.state_dict().items(), trained.state_dict().items()):
        assert torch.equal(a, b), k
    assert not model.training and model.CLASSES == ["circle", "square", "triangle"]


def test_predictions_are_in_original_pixels_of_the_file(tmp_path, checkpoint, image_file):
    model = init_detector(write_config(tmp_path), checkpoint[0])
    out = inference_detector(model, image_file)
    assert set(out) >= {"boxes", "scores", "labels"} and len(out["boxes"]) > 0
    # The pipeline resized 160×128 to 96×77; boxes must be mapped back to the 160×128 original.
    assert out["boxes"][:, 2].max() <= 160 and out["boxes"][:, 3].max() <= 128
    assert out["boxes"][:, 2].max() > 96 or out["boxes"][:, 3].max() > 77


def test_array_input_and_path_input_agree(tmp_path, checkpoint, image_file):
    model = init_detector(write_config(tmp_path), checkpoint[0])
    from_path = inference_detector(model, image_file)
    from_array, again = inference_detector(model, [cv2.imread(image_file), image_file])
    torch.testing.assert_close(from_array["boxes"], from_path["boxes"])
    torch.testing.assert_close(again["scores"], from_path["scores"])


def test_predictor_draws_predictions_to_a_png(tmp_path, checkpoint, image_file):
    predictor = Predictor(write_config(tmp_path), checkpoint[0], score_thr=0.0)
    out_png = tmp_path / "vis" / "pred.png"
    drawn = predictor.visualize(image_file, out_file=str(out_png))
    written = cv2.imread(str(out_png))
    assert written is not None and written.shape == (128, 160, 3)
    assert not np.array_equal(written, cv2.imread(image_file))  # boxes were drawn
    assert drawn.shape == written.shape


def test_show_result_with_nothing_above_threshold_leaves_the_image_unchanged(image_file, tmp_path):
    result = {"boxes": torch.tensor([[1.0, 1, 20, 20]]), "scores": torch.tensor([0.1]),
              "labels": torch.tensor([0])}
    drawn = show_result(image_file, result, ["a"], str(tmp_path / "o.png"), score_thr=0.5)
    assert np.array_equal(drawn, cv2.imread(image_file))


def test_bad_inputs_are_clear_errors(tmp_path, checkpoint):
    model = init_detector(write_config(tmp_path), checkpoint[0])
    with pytest.raises(FileNotFoundError, match="nope.png"):
        inference_detector(model, str(tmp_path / "nope.png"))
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        inference_detector(model, np.zeros((10, 10), np.float32))
    with pytest.raises(FileNotFoundError, match="missing.py"):
        init_detector(str(tmp_path / "missing.py"))
