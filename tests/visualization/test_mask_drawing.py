"""Instance masks drawn in the colours of their boxes: DetLocalVisualizer, draw_boxes/Visualizer,
the visualization hook's sample conversion (masks mapped back to the original image), browse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kiln.structures import BitmapMasks, DetDataSample, InstanceData, PolygonMasks
from kiln.visualization import DetLocalVisualizer, Visualizer, draw_boxes
from kiln.visualization.datasample import drawable_sample

RED, GREEN = (255, 0, 0), (0, 255, 0)
H, W = 48, 64


def _gray():
    return np.full((H, W, 3), 100, np.uint8)


def _masks():
    m = np.zeros((2, H, W), bool)
    m[0, 10:20, 5:25] = True
    m[1, 25:40, 30:60] = True
    return m


def _instances(masks, with_boxes=True):
    fields = dict(labels=torch.tensor([0, 1]), masks=masks)
    if with_boxes:
        fields["bboxes"] = torch.tensor([[5.0, 10.0, 25.0, 20.0], [30.0, 25.0, 60.0, 40.0]])
    return InstanceData(**fields)


@pytest.mark.parametrize("kind", ["tensor", "bitmap", "polygon"])
def test_masks_are_blended_in_the_box_colours(kind):
    m = _masks()
    masks = {"tensor": torch.from_numpy(m), "bitmap": BitmapMasks(m, H, W),
             "polygon": PolygonMasks([[np.array([5, 10, 25, 10, 25, 20, 5, 20.0])],
                                      [np.array([30, 25, 60, 25, 60, 40, 30, 40.0])]], H, W)}[kind]
    vis = DetLocalVisualizer(line_width=1, alpha=0.5)
    vis.dataset_meta = dict(classes=("a", "b"), palette=[RED, GREEN])
    out = vis.draw_instances(_gray(), _instances(masks))
    # inside each mask, away from outlines and labels: half the class colour, half the gray
    assert out[17, 20].tolist() == [178, 50, 50]  # 0.5 * (255, 0, 0) + 0.5 * 100, rounded
    assert out[36, 50].tolist() == [50, 178, 50]
    assert out[45, 5].tolist() == [100, 100, 100]  # outside every mask and box


def test_mask_color_overrides_the_box_colour_for_masks_only():
    vis = DetLocalVisualizer(line_width=1, alpha=1.0, mask_color=(0, 0, 255))
    vis.dataset_meta = dict(classes=("a", "b"), palette=[RED, GREEN])
    out = vis.draw_instances(_gray(), _instances(torch.from_numpy(_masks())))
    assert out[17, 20].tolist() == [0, 0, 255]
    assert out[40, 45].tolist() == list(GREEN)  # the box's bottom edge keeps the palette colour
    with pytest.raises(ValueError, match="mask_color"):
        DetLocalVisualizer(mask_color="mauve")


def test_masks_without_boxes_are_drawn_and_labelled():
    vis = DetLocalVisualizer(line_width=1, alpha=1.0)
    vis.dataset_meta = dict(classes=("a", "b"), palette=[RED, GREEN])
    out = vis.draw_instances(_gray(), _instances(torch.from_numpy(_masks()), with_boxes=False))
    assert out[38, 58].tolist() == list(GREEN)
    label_area = out[26:32, 31:40]  # the label sits at the mask's top-left, on a darkened patch
    assert (label_area != np.array(GREEN)).any()


def test_masks_of_another_size_are_refused_with_the_shapes():
    vis = DetLocalVisualizer()
    with pytest.raises(ValueError, match=r"2 masks of the image's size 48x64.*\(2, 10, 10\)"):
        vis.draw_instances(_gray(), _instances(torch.zeros(2, 10, 10, dtype=torch.bool)))


def _big_masks():
    # large enough that labels (drawn at the top-left) leave most of each mask visible
    m = np.zeros((2, H, W), bool)
    m[0, 4:44, 2:30] = True
    m[1, 4:44, 34:62] = True
    return torch.from_numpy(m), torch.tensor([[2.0, 4.0, 30.0, 44.0], [34.0, 4.0, 62.0, 44.0]])


def test_predictions_above_the_threshold_bring_their_masks():
    masks, boxes = _big_masks()
    vis = DetLocalVisualizer(line_width=1, alpha=1.0)
    vis.dataset_meta = dict(classes=("a", "b"), palette=[RED, GREEN])
    pred = InstanceData(bboxes=boxes, labels=torch.tensor([0, 1]), scores=torch.tensor([0.9, 0.1]),
                        masks=masks)
    vis.add_datasample("x", _gray(), DetDataSample(pred_instances=pred), draw_gt=False)
    drawn = vis.get_image()
    assert drawn[40, 20].tolist() == list(RED)
    assert drawn[40, 50].tolist() == [100, 100, 100]  # the 0.1 prediction is not drawn, mask neither


def test_draw_boxes_and_visualizer_blend_masks_in_bgr_box_colours():
    from kiln.visualization.draw import color_for_label

    masks, boxes = _big_masks()
    out = draw_boxes(_gray(), boxes[:1], labels=[3], masks=masks[:1], mask_alpha=1.0)
    assert tuple(out[40, 20]) == color_for_label(3)
    pred = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 2]),
            "masks": masks}
    drawn = Visualizer(_gray()).draw_instance_predictions(pred).get_image()
    for x, label in ((20, 1), (50, 2)):
        expected = np.round(0.5 * np.array(color_for_label(label)) + 0.5 * 100)
        assert drawn[40, x].tolist() == expected.tolist()
    with pytest.raises(ValueError, match="1 masks of the image's size"):
        draw_boxes(_gray(), [[5, 10, 25, 20]], masks=np.zeros((2, H, W), bool))


def test_visualizer_draws_dataset_dict_segmentations():
    record = {"annotations": [dict(bbox=[5, 10, 20, 10], bbox_mode=1, category_id=0,
                                   segmentation=[[5, 10, 25, 10, 25, 20, 5, 20]])]}
    vis = Visualizer(_gray()).draw_dataset_dict(record)
    assert vis.get_image()[17, 20].tolist() != [100, 100, 100]
    assert vis.get_image()[30, 40].tolist() == [100, 100, 100]


def test_hook_sample_maps_mmdet2_gt_masks_back_to_the_original_image():
    # An image of 24x32 resized 2x to 48x64, flipped, padded to 64x64: the gt mask goes back.
    orig = np.zeros((1, 24, 32), np.uint8)
    orig[0, 5:10, 2:12] = 1
    moved = BitmapMasks(orig, 24, 32).resize((48, 64)).flip("horizontal").pad((64, 64))
    sample = {"img": torch.zeros(3, 64, 64), "gt_bboxes": torch.tensor([[40.0, 10.0, 60.0, 20.0]]),
              "gt_labels": torch.tensor([0]), "gt_masks": moved,
              "img_metas": dict(filename="x.png", img_shape=(48, 64, 3), ori_shape=(24, 32, 3),
                                scale_factor=np.array([2, 2, 2, 2], np.float32), flip=True,
                                flip_direction="horizontal")}
    out = {"boxes": torch.tensor([[2.0, 5.0, 12.0, 10.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([0]), "masks": torch.from_numpy(orig.astype(bool))}
    ds = drawable_sample(sample, out).data_sample
    np.testing.assert_array_equal(ds.gt_instances.masks.to_ndarray(), orig)
    np.testing.assert_allclose(ds.gt_instances.bboxes.numpy(), [[2, 5, 12, 10]])
    assert torch.equal(ds.pred_instances.masks, torch.from_numpy(orig.astype(bool)))


def test_infer_and_show_dir_sink_draws_masks_and_records_their_rle(tmp_path):
    import cv2
    from pycocotools import mask as mask_utils

    from kiln.cli.show import ShowPredictions
    from kiln.visualization.draw import color_for_label

    path = tmp_path / "img.png"
    cv2.imwrite(str(path), _gray())
    masks, boxes = _big_masks()
    pred = {"boxes": boxes, "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([1, 0]),
            "masks": masks}
    sink = ShowPredictions(str(tmp_path / "out"), score_thr=0.3, class_names=["a", "b"])
    sink.process([{"file_name": str(path)}], [pred])
    drawn = cv2.imread(str(tmp_path / "out" / "img.png"))
    expected = np.round(0.5 * np.array(color_for_label(1)) + 0.5 * 100)
    assert drawn[40, 20].tolist() == expected.tolist()
    assert drawn[40, 50].tolist() == [100, 100, 100]  # below the score threshold: not drawn
    (record,) = sink.records
    assert len(record["segmentations"]) == len(record["boxes"]) == 1
    rle = dict(record["segmentations"][0], counts=record["segmentations"][0]["counts"].encode())
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), masks[0].numpy())


@pytest.mark.parametrize("poly2mask", [True, False])
def test_browse_dataset_draws_the_loaded_masks(tmp_path, poly2mask):
    import cv2

    from kiln.data.browse import browse_dataset

    def pipeline(with_mask):
        return [dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotations", with_bbox=True, with_mask=with_mask, poly2mask=poly2mask),
                dict(type="Resize", img_scale=(96, 96), keep_ratio=True), dict(type="Pad", size_divisor=32)]

    def browse(with_mask, out):
        cfg = dict(data=dict(train=dict(type="ShapesDataset", split="train", num_images=2, image_size=64,
                                        root=str(tmp_path / "shapes"), pipeline=pipeline(with_mask))))
        return [cv2.imread(p) for p in browse_dataset(cfg, str(tmp_path / out), num_images=2)]

    for plain, masked in zip(browse(False, "boxes"), browse(True, "masks")):
        changed = (plain != masked).any(-1)
        assert changed.sum() > 50  # the shapes' interiors are tinted
