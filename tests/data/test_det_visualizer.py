"""DetLocalVisualizer and its backends (MMDetection 3.x ``visualizer``, ``vis_backends``), real files."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from kiln.registry import VIS_BACKENDS, VISUALIZERS
from kiln.structures import DetDataSample, InstanceData
from kiln.visualization import (
    DetLocalVisualizer,
    LocalVisBackend,
    TensorboardVisBackend,
    build_visualizer,
    get_palette,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _noise(h=64, w=80, seed=0):
    return np.random.RandomState(seed).randint(30, 220, (h, w, 3)).astype(np.uint8)


def _sample(gt=None, pred=None):
    s = DetDataSample()
    if gt is not None:
        s.gt_instances = InstanceData(bboxes=torch.tensor(gt[0], dtype=torch.float32),
                                      labels=torch.tensor(gt[1]))
    if pred is not None:
        s.pred_instances = InstanceData(bboxes=torch.tensor(pred[0], dtype=torch.float32),
                                        labels=torch.tensor(pred[1]), scores=torch.tensor(pred[2]))
    return s


def _read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img[:, :, ::-1]


def _outline(h, w, box, width=1):
    """Pixels within `width` of the box outline (a ring), as a bool mask."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[:h, :w]
    outer = (xx >= x0 - width) & (xx <= x1 + width) & (yy >= y0 - width) & (yy <= y1 + width)
    inner = (xx > x0 + width) & (xx < x1 - width) & (yy > y0 + width) & (yy < y1 - width)
    return outer & ~inner, inner


def test_out_file_has_the_box_edge_in_the_palette_colour_and_the_source_elsewhere(tmp_path):
    img = _noise()
    vis = DetLocalVisualizer(line_width=1, alpha=1.0)
    vis.dataset_meta = dict(classes=("cat", "dog"), palette=[RED, GREEN])
    box = (10, 12, 50, 40)
    out = tmp_path / "drawn.png"
    vis.add_datasample("x", img, _sample(gt=([box], [1])), draw_pred=False, out_file=str(out))

    drawn = _read_rgb(out)
    assert drawn.shape == img.shape
    # Bottom and right edges (away from the label at the top-left) have the class colour exactly.
    assert (drawn[40, 14:50] == GREEN).all()
    assert (drawn[16:40, 50] == GREEN).all()
    assert (drawn[12, 10:50] == GREEN).all() and (drawn[12:40, 10] == GREEN).all()
    ring, inner = _outline(*img.shape[:2], box)
    untouched = ~ring & ~inner
    assert (drawn[untouched] == img[untouched]).all()


def test_alpha_blends_the_edge_with_the_image():
    img = _noise()
    vis = DetLocalVisualizer(line_width=1, alpha=0.8)
    vis.dataset_meta = dict(classes=("cat",), palette=[BLUE])
    vis.add_datasample("x", img, _sample(gt=([(10, 12, 50, 40)], [0])), draw_pred=False)
    got = vis.get_image()[40, 30].astype(float)
    expected = np.round(0.8 * np.array(BLUE) + 0.2 * img[40, 30])
    assert np.array_equal(got, expected)


def test_ground_truth_left_predictions_right_and_low_scores_are_not_drawn():
    img = _noise()
    vis = DetLocalVisualizer(line_width=1, alpha=1.0)
    vis.dataset_meta = dict(classes=("a", "b"), palette=[RED, GREEN])
    sample = _sample(gt=([(5, 5, 30, 30)], [0]),
                     pred=([(40, 20, 75, 60), (8, 35, 35, 60)], [1, 0], [0.9, 0.2]))
    vis.add_datasample("x", img, sample, pred_score_thr=0.3)
    drawn = vis.get_image()
    h, w = img.shape[:2]
    assert drawn.shape == (h, 2 * w, 3)
    left, right = drawn[:, :w], drawn[:, w:]
    assert (left[30, 8:30] == RED).all()  # gt bottom edge
    assert (left[60, 42:75] == img[60, 42:75]).all()  # no prediction on the gt side
    assert (right[60, 44:75] == GREEN).all()  # the confident prediction
    assert (right[60, 8:35] == img[60, 8:35]).all()  # the 0.2 one is below the threshold
    assert (right[30, 8:30] == img[30, 8:30]).all()  # no ground truth on the prediction side


def test_the_label_shows_the_score():
    img = _noise()
    vis = DetLocalVisualizer(line_width=1, alpha=1.0)
    vis.dataset_meta = dict(classes=("a",), palette=[RED])
    box = [(5, 5, 75, 60)]
    vis.add_datasample("x", img, _sample(pred=(box, [0], [0.91])), draw_gt=False)
    high = vis.get_image().copy()
    vis.add_datasample("x", img, _sample(pred=(box, [0], [0.55])), draw_gt=False)
    low = vis.get_image()
    differ = np.argwhere((high != low).any(axis=2))
    assert len(differ) > 0
    # Only the label (top-left, inside the box) changes with the score.
    assert differ[:, 0].min() >= 5 and differ[:, 0].max() < 30 and differ[:, 1].min() >= 5


def test_without_a_palette_colours_are_fixed_per_label_and_bbox_color_overrides_them():
    img = np.zeros((40, 40, 3), np.uint8)
    sample = _sample(gt=([(5, 5, 30, 30)], [2]))
    colors = []
    for _ in range(2):
        vis = DetLocalVisualizer(line_width=1, alpha=1.0)
        vis.add_datasample("x", img, sample, draw_pred=False)
        colors.append(tuple(vis.get_image()[30, 15]))
    assert colors[0] == colors[1] == get_palette(None, 3)[2]
    vis = DetLocalVisualizer(line_width=1, alpha=1.0, bbox_color="blue")
    vis.dataset_meta = dict(classes=("a", "b", "c"), palette=[RED, RED, RED])
    vis.add_datasample("x", img, sample, draw_pred=False)
    assert tuple(vis.get_image()[30, 15]) == BLUE


def test_a_palette_shorter_than_the_labels_is_an_error():
    vis = DetLocalVisualizer()
    vis.dataset_meta = dict(classes=("a",), palette=[RED])
    with pytest.raises(ValueError, match=r"palette.*1 colours but labels go up to 3"):
        vis.add_datasample("x", _noise(), _sample(gt=([(1, 1, 9, 9)], [3])))


def test_show_without_a_display_says_to_write_files(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="needs a display.*show-dir"):
        DetLocalVisualizer().add_datasample("x", _noise(), None, show=True)


def test_local_backend_writes_png_per_name_and_step_with_the_drawn_pixels(tmp_path):
    vis = DetLocalVisualizer(vis_backends=[dict(type="LocalVisBackend")], save_dir=str(tmp_path),
                             line_width=1)
    vis.dataset_meta = dict(classes=("a",), palette=[RED])
    vis.add_datasample("val_img", _noise(), _sample(gt=([(5, 5, 30, 30)], [0])), step=7)
    path = tmp_path / "vis_data" / "vis_image" / "val_img_7.png"
    assert np.array_equal(_read_rgb(path), vis.get_image())


def test_local_backend_scalars_are_json_lines_and_the_config_is_loadable(tmp_path):
    from kiln.config import Config

    backend = LocalVisBackend(save_dir=str(tmp_path / "v"))
    assert not (tmp_path / "v").exists()  # folders appear on first use
    backend.add_scalar("lr", torch.tensor(0.5), step=3)
    backend.add_scalars({"loss": 1.25, "acc": np.float32(0.5)}, step=4, file_path="extra.json")
    lines = [json.loads(x) for x in (tmp_path / "v" / "scalars.json").read_text().splitlines()]
    assert lines == [{"lr": 0.5, "step": 3}, {"loss": 1.25, "acc": 0.5, "step": 4}]
    assert json.loads((tmp_path / "v" / "extra.json").read_text()) == {"loss": 1.25, "acc": 0.5, "step": 4}
    backend.add_config(Config(dict(model=dict(type="RetinaNet", depth=50), lr=0.01)))
    back = Config.fromfile(str(tmp_path / "v" / "config.py"))
    assert back.model.depth == 50 and back.lr == 0.01
    with pytest.raises(TypeError, match="expected a number"):
        backend.add_scalar("bad", "high")


def test_local_backend_file_names_must_have_their_format_suffix():
    with pytest.raises(ValueError, match=r"\.json"):
        LocalVisBackend("d", scalar_save_file="scalars.txt")
    with pytest.raises(ValueError, match=r"\.py"):
        LocalVisBackend("d", config_save_file="config.yaml")


def test_tensorboard_backend_event_file_has_the_image_and_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vis = DetLocalVisualizer(vis_backends=[dict(type="TensorboardVisBackend")], save_dir=str(tmp_path))
    vis.dataset_meta = dict(classes=("a",), palette=[RED])
    img = _noise(32, 48)
    vis.add_datasample("val_img", img, _sample(gt=([(5, 5, 30, 30)], [0]), pred=([(1, 1, 9, 9)], [0], [0.9])),
                       step=5)
    vis.add_scalars({"coco/bbox_mAP": 0.25}, step=5)
    vis.close()
    acc = EventAccumulator(str(tmp_path / "vis_data"), size_guidance={"images": 0})
    acc.Reload()
    assert "val_img" in acc.Tags()["images"]
    event = acc.Images("val_img")[0]
    assert (event.step, event.height, event.width) == (5, 32, 96)
    decoded = cv2.imdecode(np.frombuffer(event.encoded_image_string, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.array_equal(decoded, vis.get_image())
    assert [(s.step, s.value) for s in acc.Scalars("coco/bbox_mAP")] == [(5, 0.25)]


def test_tensorboard_backend_used_after_close_opens_a_new_event_file(tmp_path):
    import glob

    backend = TensorboardVisBackend(str(tmp_path))
    backend.add_scalar("a", 1.0, step=1)
    backend.close()
    backend.add_scalar("a", 2.0, step=2)  # e.g. a test run after training closed the backends
    backend.close()
    assert len(glob.glob(str(tmp_path / "events.out.tfevents.*"))) == 2


def test_build_visualizer_puts_backends_under_save_dir_vis_data(tmp_path):
    assert build_visualizer(None, str(tmp_path)) is None
    vis = build_visualizer(dict(type="DetLocalVisualizer", name="visualizer",
                                vis_backends=[dict(type="LocalVisBackend"),
                                              dict(type="TensorboardVisBackend", name="tb")]), str(tmp_path))
    assert isinstance(vis, DetLocalVisualizer)
    assert vis.get_backend("LocalVisBackend").save_dir == os.path.join(str(tmp_path), "vis_data")
    assert isinstance(vis.get_backend("tb"), TensorboardVisBackend)
    assert DetLocalVisualizer.get_current_instance() is vis
    with pytest.raises(TypeError, match="config key 'visualizer'"):
        build_visualizer("DetLocalVisualizer", str(tmp_path))


def test_unknown_backend_type_names_the_registry_and_the_config_key(tmp_path):
    with pytest.raises(KeyError, match=r"'NopeVisBackend' is not registered in the 'vis_backend' registry "
                                       r"\(at config key 'visualizer.vis_backends.0'\)"):
        build_visualizer(dict(type="DetLocalVisualizer", vis_backends=[dict(type="NopeVisBackend")]),
                         str(tmp_path))


def test_backend_without_save_dir_is_left_out_with_a_warning():
    with pytest.warns(UserWarning, match="LocalVisBackend.*no save_dir"):
        vis = DetLocalVisualizer(vis_backends=[dict(type="LocalVisBackend")])
    assert vis.vis_backends == {}


def test_registries_find_the_mmdetection_names():
    assert VISUALIZERS.get("DetLocalVisualizer") is DetLocalVisualizer
    for name in ("LocalVisBackend", "TensorboardVisBackend", "WandbVisBackend", "MLflowVisBackend"):
        assert VIS_BACKENDS.get(name) is not None, name


def test_mlflow_backend_logs_scalars_and_images_to_a_local_store(tmp_path):
    import mlflow

    backend = VIS_BACKENDS.build(dict(type="MLflowVisBackend", save_dir=str(tmp_path), exp_name="vis"))
    backend.add_scalars({"coco/bbox_mAP": 0.5}, step=2)
    backend.add_image("val_img", _noise(8, 8), step=2)
    backend.close()
    client = mlflow.MlflowClient(tracking_uri="file:" + str(tmp_path / "mlruns"))
    history = client.get_metric_history(backend.run_id, "coco/bbox_mAP")
    assert [(m.step, m.value) for m in history] == [(2, 0.5)]
    assert client.get_run(backend.run_id).info.status == "FINISHED"


def test_wandb_backend_logs_the_image_and_scalars_offline(tmp_path):
    import glob

    import wandb

    backend = VIS_BACKENDS.build(dict(type="WandbVisBackend", save_dir=str(tmp_path),
                                      init_kwargs=dict(mode="offline", project="kiln-vis")))
    img = _noise(8, 10)
    backend.add_image("val_img", img, step=3)
    backend.add_scalars({"coco/bbox_mAP": 0.625}, step=3)
    backend.close()
    wandb.teardown()  # waits for the W&B service to finish writing the run
    run_dir = tmp_path / "wandb" / "offline-run-*"
    (png,) = glob.glob(str(run_dir / "files" / "media" / "images" / "val_img_*.png"))
    assert np.array_equal(_read_rgb(png), img)
    (run_file,) = glob.glob(str(run_dir / "run-*.wandb"))
    records = open(run_file, "rb").read()
    assert b"coco/bbox_mAP" in records and b"0.625" in records


def test_wandb_backend_refuses_options_kiln_does_not_implement():
    with pytest.raises(ValueError, match="watch_kwargs"):
        VIS_BACKENDS.build(dict(type="WandbVisBackend", save_dir="d", watch_kwargs=dict(log="all")))
