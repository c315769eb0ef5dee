"""DetVisualizationHook on tiny runs: which images are drawn when, where the files go, what they show."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from kiln.engine import Runner
from kiln.structures import DetDataSample, InstanceData
from kiln.visualization import build_visualizer
from kiln.visualization.datasample import drawable_sample

RED, GREEN = (255, 0, 0), (0, 255, 0)
PRED_BOX = (40.0, 8.0, 70.0, 50.0)  # what the fake detector finds in every image (original pixels)


class FixedDetector(nn.Module):
    """Eval: one class-1 box at PRED_BOX (score 0.9) and one below any threshold; train: a real loss."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        if self.training:
            return {"loss": ((self.w - 1) ** 2).sum()}
        boxes = torch.tensor([PRED_BOX, (2.0, 2.0, 20.0, 20.0)])
        return [{"boxes": boxes, "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([1, 0])}
                for _ in batch]


class Loader(list):
    """A list of batches with a dataset carrying MMDetection 3.x metainfo."""

    dataset = SimpleNamespace(metainfo=dict(classes=("cat", "dog"), palette=[RED, GREEN]))


def _write_images(tmp_path, n):
    paths = []
    for i in range(n):
        h, w = 60 + 4 * i, 80 + 4 * i  # distinct sizes tell the drawn pictures apart
        img = np.random.RandomState(i).randint(30, 220, (h, w, 3)).astype(np.uint8)
        path = tmp_path / "images" / f"img{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
        paths.append(str(path))
    return paths


GT_ORIGINAL = (10.0, 12.0, 30.0, 40.0)  # ground truth in original pixels, class 0


def _mmdet3_sample(path, scale=0.5):
    """What MMDetection 3.x's test pipeline (LoadImageFromFile, Resize, LoadAnnotations, PackDetInputs)
    gives: the image resized by 0.5, the ground truth loaded after the resize, so in original pixels."""
    oh, ow = cv2.imread(path).shape[:2]
    h, w = round(oh * scale), round(ow * scale)
    ds = DetDataSample(metainfo=dict(img_id=os.path.basename(path), img_path=path, ori_shape=(oh, ow),
                                     img_shape=(h, w), scale_factor=(w / ow, h / oh), flip=False,
                                     flip_direction=None))
    ds.gt_instances = InstanceData(bboxes=torch.tensor([GT_ORIGINAL]), labels=torch.tensor([0]))
    return {"inputs": torch.zeros(3, h, w, dtype=torch.uint8), "data_samples": ds}


def _batches(paths, per_batch=2):
    samples = [_mmdet3_sample(p) for p in paths]
    return Loader(samples[i:i + per_batch] for i in range(0, len(samples), per_batch))


def _runner(tmp_path, hook, visualizer=True, **kw):
    r = Runner(FixedDetector(), work_dir=str(tmp_path / "work"), custom_hooks=[hook],
               default_hooks=dict(checkpoint=None), **kw)
    if visualizer:  # what the runner builder does with the config's top-level `visualizer`
        cfg = dict(type="DetLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")], line_width=1,
                   alpha=1.0)
        r.visualizer = build_visualizer(cfg, r.work_dir)
    return r


def _read_rgb(path):
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]


def _near(a, b, tol=12):
    """JPEG source: compare colours with a tolerance on the source side only."""
    return np.abs(a.astype(int) - np.asarray(b, int)).max(axis=-1) <= tol


def test_val_draws_the_first_image_of_every_interval_th_batch_gt_left_predictions_right(tmp_path):
    paths = _write_images(tmp_path, 6)
    r = _runner(tmp_path, dict(type="DetVisualizationHook", draw=True, interval=2),
                val_dataloader=_batches(paths))
    r.val()
    out_dir = tmp_path / "work" / "vis_data" / "vis_image"
    assert sorted(os.listdir(out_dir)) == ["val_img_0.png", "val_img_2.png"]
    drawn = _read_rgb(out_dir / "val_img_2.png")
    source = _read_rgb(paths[4])  # batch 2 starts with image 4
    h, w = source.shape[:2]
    assert drawn.shape == (h, 2 * w, 3)
    left, right = drawn[:, :w], drawn[:, w:]
    # Ground truth (original pixels, as the 3.x test pipeline loads it) at its place on the original image.
    x0, y0, x1, y1 = (int(v) for v in GT_ORIGINAL)
    assert (left[y1, x0 + 2:x1] == RED).all() and (left[y0 + 10:y1, x1] == RED).all()
    assert _near(left[y1 + 3, x0:x1], source[y1 + 3, x0:x1]).all()
    # Predictions are in original pixels already; the 0.1-score one is under the 0.3 threshold.
    px0, _, px1, py1 = (int(v) for v in PRED_BOX)
    assert (right[py1, px0 + 2:px1] == GREEN).all()
    assert _near(right[20, 4:18], source[20, 4:18]).all()


def test_val_during_training_counts_steps_as_runner_iter_plus_batch_idx(tmp_path):
    paths = _write_images(tmp_path, 4)
    model_batches = _batches(paths)
    r = _runner(tmp_path, dict(type="DetVisualizationHook", draw=True, interval=2),
                train_dataloader=model_batches, val_dataloader=model_batches,
                train_cfg=dict(type="IterBasedTrainLoop", max_iters=4, val_interval=2),
                optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)))
    r.train()
    # Validation after iteration 2 sees steps 2, 3 and after iteration 4 steps 4, 5.
    names = sorted(os.listdir(tmp_path / "work" / "vis_data" / "vis_image"))
    assert names == ["val_img_2.png", "val_img_4.png"]


def test_test_writes_every_image_under_work_dir_test_out_dir_by_file_name(tmp_path):
    paths = _write_images(tmp_path, 3)
    r = _runner(tmp_path, dict(type="DetVisualizationHook", draw=True, test_out_dir="show"),
                test_dataloader=_batches(paths))
    r.test()
    show = tmp_path / "work" / "show"
    assert sorted(os.listdir(show)) == ["img0.jpg", "img1.jpg", "img2.jpg"]
    for p in paths:
        h, w = cv2.imread(p).shape[:2]
        assert cv2.imread(str(show / os.path.basename(p))).shape == (h, 2 * w, 3)
    assert not (tmp_path / "work" / "vis_data").exists()  # out files replace the backends


def test_test_without_test_out_dir_records_test_img_at_steps_1_to_n(tmp_path):
    paths = _write_images(tmp_path, 3)
    r = _runner(tmp_path, dict(type="DetVisualizationHook", draw=True), test_dataloader=_batches(paths))
    r.test()
    names = sorted(os.listdir(tmp_path / "work" / "vis_data" / "vis_image"))
    assert names == ["test_img_1.png", "test_img_2.png", "test_img_3.png"]


def test_without_a_configured_visualizer_the_hook_writes_to_work_dir_vis_data(tmp_path):
    paths = _write_images(tmp_path, 2)
    r = _runner(tmp_path, dict(type="DetVisualizationHook", draw=True, interval=1), visualizer=False,
                val_dataloader=_batches(paths, per_batch=1))
    r.val()
    names = sorted(os.listdir(tmp_path / "work" / "vis_data" / "vis_image"))
    assert names == ["val_img_0.png", "val_img_1.png"]


def test_without_work_dir_val_has_nowhere_to_write_but_an_absolute_test_out_dir_works(tmp_path):
    paths = _write_images(tmp_path, 2)
    show = tmp_path / "abs_show"
    r = Runner(FixedDetector(), val_dataloader=_batches(paths), test_dataloader=_batches(paths),
               default_hooks=dict(checkpoint=None),
               custom_hooks=[dict(type="DetVisualizationHook", draw=True, test_out_dir=str(show))])
    with pytest.raises(Exception, match="nowhere to write.*work_dir"):
        r.val()
    r.test()
    assert sorted(os.listdir(show)) == ["img0.jpg", "img1.jpg"]


def test_mmdetection_default_hooks_spelling_with_draw_false_draws_nothing(tmp_path):
    paths = _write_images(tmp_path, 2)
    r = Runner(FixedDetector(), work_dir=str(tmp_path / "work"), val_dataloader=_batches(paths),
               test_dataloader=_batches(paths),
               default_hooks=dict(checkpoint=None, visualization=dict(type="DetVisualizationHook")))
    r.val()
    r.test()
    assert not (tmp_path / "work" / "vis_data").exists()


def test_show_without_a_display_fails_before_any_image(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    paths = _write_images(tmp_path, 1)
    r = _runner(tmp_path, dict(type="DetVisualizationHook", draw=True, show=True),
                val_dataloader=_batches(paths))
    with pytest.raises(Exception, match="needs a display.*test_out_dir"):
        r.val()


def test_visualizer_writer_sends_logged_scalars_to_the_tensorboard_backend(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kiln.engine.hooks import LoggerHook
    from kiln.engine.writers import JSONWriter, VisualizerWriter

    paths = _write_images(tmp_path, 2)
    vis = build_visualizer(dict(type="DetLocalVisualizer", vis_backends=[dict(type="TensorboardVisBackend")]),
                           str(tmp_path / "work"))
    writers = [JSONWriter(str(tmp_path / "work" / "metrics.jsonl")), VisualizerWriter(vis)]
    r = Runner(FixedDetector(), work_dir=str(tmp_path / "work"), train_dataloader=_batches(paths),
               train_cfg=dict(type="IterBasedTrainLoop", max_iters=4),
               optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
               default_hooks=dict(checkpoint=None, logger=LoggerHook(interval=2, writers=writers)))
    r.train()
    acc = EventAccumulator(str(tmp_path / "work" / "vis_data"))
    acc.Reload()
    got = [(e.step, round(e.value, 5)) for e in acc.Scalars("loss")]
    lines = [json.loads(x) for x in open(tmp_path / "work" / "metrics.jsonl")]
    assert got == [(line["iteration"] + 1, round(line["loss"], 5)) for line in lines]
    assert [step for step, _ in got] == [2, 4]


def test_bad_arguments_are_refused():
    from kiln.engine.hooks import DetVisualizationHook

    with pytest.raises(ValueError, match="interval"):
        DetVisualizationHook(interval=0)
    with pytest.raises(ValueError, match="backend_args"):
        DetVisualizationHook(backend_args=dict(backend="petrel"))


# ---------------------------------------------------------------- the three batch forms


def _pred():
    return {"boxes": torch.tensor([PRED_BOX]), "scores": torch.tensor([0.8]), "labels": torch.tensor([1])}


def test_mmdet2_form_flipped_and_resized_gt_maps_back_to_original_pixels():
    # Original 100x200 (h, w), resized by 2 to 200x400, flipped horizontally.
    gt_orig = np.array([[10.0, 20.0, 50.0, 60.0]], np.float32)
    resized = gt_orig * 2
    flipped = resized.copy()
    flipped[:, [0, 2]] = 400 - resized[:, [2, 0]]
    sample = {"img": torch.zeros(3, 200, 400),
              "img_metas": {"filename": "/data/a.jpg", "ori_shape": (100, 200, 3), "img_shape": (200, 400, 3),
                            "scale_factor": np.array([2, 2, 2, 2], np.float32), "flip": True,
                            "flip_direction": "horizontal"},
              "gt_bboxes": flipped, "gt_labels": np.array([3])}
    item = drawable_sample(sample, _pred())
    assert item.img_path == "/data/a.jpg"
    assert torch.allclose(item.data_sample.gt_instances.bboxes, torch.from_numpy(gt_orig))
    assert item.data_sample.gt_instances.labels.tolist() == [3]
    assert torch.equal(item.data_sample.pred_instances.bboxes, torch.tensor([PRED_BOX]))


def test_detectron2_form_gt_maps_back_from_the_resized_image():
    from kiln.structures import Boxes, Instances

    inst = Instances((50, 100), gt_boxes=Boxes(torch.tensor([[10.0, 5.0, 30.0, 25.0]])),
                     gt_classes=torch.tensor([2]))
    sample = {"file_name": "/data/b.png", "image": torch.zeros(3, 50, 100), "height": 100, "width": 200,
              "instances": inst}
    item = drawable_sample(sample, _pred())
    assert item.img_path == "/data/b.png"
    assert torch.allclose(item.data_sample.gt_instances.bboxes, torch.tensor([[20.0, 10.0, 60.0, 50.0]]))


def test_mmdet3_form_gt_is_drawn_as_the_test_pipeline_loaded_it():
    ds = DetDataSample(metainfo=dict(img_path="/data/c.jpg", ori_shape=(100, 200), img_shape=(50, 100),
                                     scale_factor=(0.5, 0.5), flip=False))
    ds.gt_instances = InstanceData(bboxes=torch.tensor([[20.0, 10.0, 60.0, 50.0]]), labels=torch.tensor([4]))
    item = drawable_sample({"inputs": torch.zeros(3, 50, 100), "data_samples": ds}, _pred())
    assert torch.equal(item.data_sample.gt_instances.bboxes, torch.tensor([[20.0, 10.0, 60.0, 50.0]]))
    assert item.data_sample.gt_instances.labels.tolist() == [4]


def test_mmdet3_test_time_aug_form_uses_the_first_view():
    views = [DetDataSample(metainfo=dict(img_path=f"/data/v{i}.jpg")) for i in range(2)]
    item = drawable_sample({"inputs": [torch.zeros(3, 4, 4)] * 2, "data_samples": views}, _pred())
    assert item.img_path == "/data/v0.jpg" and "gt_instances" not in item.data_sample


def test_a_sample_without_a_file_path_says_which_key_to_keep():
    ds = DetDataSample(metainfo=dict(img_id=1))
    with pytest.raises(KeyError, match="img_path.*PackDetInputs"):
        drawable_sample({"inputs": torch.zeros(3, 4, 4), "data_samples": ds}, _pred())
    with pytest.raises(KeyError, match="filename.*Collect"):
        drawable_sample({"img": torch.zeros(3, 4, 4), "img_metas": {"ori_shape": (4, 4)}}, _pred())


def test_an_output_that_is_not_a_detection_dict_is_refused():
    ds = DetDataSample(metainfo=dict(img_path="/x.jpg"))
    with pytest.raises(TypeError, match="'boxes', 'scores', 'labels'.*keys \\['pred'\\]"):
        drawable_sample({"inputs": torch.zeros(3, 4, 4), "data_samples": ds}, {"pred": 1})
