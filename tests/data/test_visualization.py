"""Visualization: boxes with class names/scores drawn on images; curves from metrics.jsonl."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from kiln.visualization import Visualizer, color_for_label, draw_boxes, image_from_tensor, plot_metrics
from kiln.visualization.plot import load_metrics, metric_series


def test_draw_boxes_draws_box_outline_in_label_colour_and_leaves_input_untouched():
    img = np.zeros((100, 100, 3), np.uint8)
    out = draw_boxes(img, [[20, 40, 80, 90]], labels=[3], thickness=1)
    assert not img.any()
    assert tuple(out[90, 50]) == color_for_label(3)  # bottom edge
    assert tuple(out[60, 50]) == (0, 0, 0)  # inside stays untouched


def test_draw_boxes_writes_class_name_and_score_label():
    img = np.zeros((100, 200, 3), np.uint8)
    plain = draw_boxes(img, [[20, 40, 180, 90]], labels=[0])
    named = draw_boxes(img, [[20, 40, 180, 90]], labels=[0], scores=[0.87], class_names=["circle"])
    # the longer "circle 0.87" label covers more pixels above the box than the bare "0"
    assert (named[:40] != 0).any(axis=2).sum() > (plain[:40] != 0).any(axis=2).sum()


def test_draw_boxes_skips_boxes_below_score_threshold():
    img = np.zeros((50, 50, 3), np.uint8)
    out = draw_boxes(img, [[5, 5, 40, 40]], labels=[0], scores=[0.1], score_thr=0.5)
    assert not out.any()


def test_draw_boxes_length_mismatch_is_explained():
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        draw_boxes(np.zeros((10, 10, 3), np.uint8), [[0, 0, 5, 5], [1, 1, 4, 4]], labels=[0])


def test_image_from_tensor_undoes_normalize_and_rgb():
    bgr = np.random.default_rng(0).integers(0, 255, (6, 7, 3)).astype(np.uint8)
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    chw = torch.from_numpy(((bgr[:, :, ::-1] - mean) / std).transpose(2, 0, 1).astype(np.float32))
    back = image_from_tensor(chw, dict(mean=mean, std=std, to_rgb=True))
    assert np.abs(back.astype(int) - bgr).max() <= 1


def test_visualizer_draws_model_predictions_and_saves_png(tmp_path):
    vis = Visualizer(np.zeros((64, 64, 3), np.uint8), class_names=["a", "b"])
    pred = dict(boxes=torch.tensor([[4.0, 4.0, 50.0, 50.0]]), scores=torch.tensor([0.9]),
                labels=torch.tensor([1]))
    path = vis.draw_instance_predictions(pred).save(str(tmp_path / "sub" / "p.png"))
    img = cv2.imread(path)
    assert img.shape == (64, 64, 3) and img.any()


def test_visualizer_draws_dataset_dict_ground_truth():
    from kiln.structures import BoxMode

    rec = dict(annotations=[dict(bbox=[10, 10, 20, 20], bbox_mode=BoxMode.XYWH_ABS, category_id=0)])
    out = Visualizer(np.zeros((64, 64, 3), np.uint8)).draw_dataset_dict(rec).get_image()
    assert tuple(out[30, 20]) == color_for_label(0)  # bottom edge at y = 10 + 20


def test_visualizer_rejects_unknown_prediction_type():
    with pytest.raises(TypeError, match="dict with 'boxes'"):
        Visualizer(np.zeros((8, 8, 3), np.uint8)).draw_instance_predictions([1, 2])


def _write_jsonl(path, records, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return str(path)


def test_plot_metrics_writes_png_with_one_panel_per_key(tmp_path):
    path = _write_jsonl(tmp_path / "metrics.jsonl",
                        [dict(iteration=i, loss=1.0 / (i + 1), lr=0.01) for i in range(20)])
    out = plot_metrics(path, keys=["loss", "lr"], out_file=str(tmp_path / "c.png"), smooth=5)
    img = cv2.imread(out)
    assert img is not None and img.shape[0] > img.shape[1] * 0.6  # two stacked panels


def test_plot_metrics_accepts_work_dir_and_skips_truncated_last_line(tmp_path):
    _write_jsonl(tmp_path / "metrics.jsonl", [dict(iteration=1, loss=2.0), dict(iteration=2, loss=1.0)],
                 tail='{"iteration": 3, "lo')
    assert len(load_metrics(str(tmp_path / "metrics.jsonl"))) == 2
    out = plot_metrics(str(tmp_path), keys=["loss"], out_file=str(tmp_path / "x.png"))
    assert cv2.imread(out) is not None


def test_mmcv_log_iter_continues_across_epochs_and_val_lines_are_ignored():
    recs = [dict(mode="train", epoch=1, iter=50, loss=3.0), dict(mode="train", epoch=1, iter=100, loss=2.0),
            dict(mode="val", epoch=1, iter=100, bbox_mAP=0.1), dict(mode="train", epoch=2, iter=50, loss=1.0)]
    xs, ys = metric_series(recs, ["loss"])["loss"]
    assert xs == [50.0, 100.0, 150.0] and ys == [3.0, 2.0, 1.0]


def test_plot_metrics_unknown_keys_lists_available_ones(tmp_path):
    path = _write_jsonl(tmp_path / "m.jsonl", [dict(iteration=1, loss_cls=1.0)])
    with pytest.raises(KeyError, match="loss_cls"):
        plot_metrics(path, keys=["accuracy"], out_file=str(tmp_path / "y.png"))


def test_load_metrics_malformed_middle_line_names_file_and_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"iteration": 1}\nnot json\n{"iteration": 2}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2"):
        load_metrics(str(p))
