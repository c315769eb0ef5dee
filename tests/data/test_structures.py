"""kiln.structures: BoxMode, Boxes, Instances, ImageList, ShapeSpec, sample_image_id."""

import numpy as np
import pytest
import torch

from kiln.structures import Boxes, BoxMode, ImageList, Instances, ShapeSpec, sample_image_id


def test_boxmode_converts_list_numpy_and_tensor_keeping_type():
    assert BoxMode.convert([10, 20, 5, 5], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) == [10, 20, 15, 25]
    arr = BoxMode.convert(
        np.array([[10.0, 20, 15, 25]], dtype=np.float32), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS
    )
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32
    np.testing.assert_allclose(arr, [[10, 20, 5, 5]])
    t = BoxMode.convert(torch.tensor([[10.0, 20, 5, 5]]), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
    assert torch.equal(t, torch.tensor([[10.0, 20, 15, 25]]))


def test_boxmode_rotated_to_xyxy_covers_rotated_box():
    out = BoxMode.convert(torch.tensor([[5.0, 5, 4, 2, 90]]), BoxMode.XYWHA_ABS, BoxMode.XYXY_ABS)
    torch.testing.assert_close(out, torch.tensor([[4.0, 3, 6, 7]]))


def test_boxmode_relative_modes_explain_why_they_cannot_convert():
    with pytest.raises(NotImplementedError, match="image size"):
        BoxMode.convert([0.1, 0.1, 0.5, 0.5], BoxMode.XYXY_REL, BoxMode.XYXY_ABS)


def test_boxes_area_clip_nonempty_scale_and_iou():
    b = Boxes(torch.tensor([[0.0, 0, 10, 20], [5, 5, 5, 9], [-5, -5, 30, 30]]))
    assert b.area().tolist() == [200, 0, 1225]
    assert b.nonempty().tolist() == [True, False, True]
    b.clip((25, 20))
    assert b.tensor[2].tolist() == [0, 0, 20, 25]
    b.scale(2.0, 0.5)
    assert b.tensor[0].tolist() == [0, 0, 20, 10]
    iou = Boxes(torch.tensor([[0.0, 0, 2, 2]])).iou(Boxes(torch.tensor([[1.0, 0, 3, 2], [0, 0, 2, 2]])))
    torch.testing.assert_close(iou, torch.tensor([[1 / 3, 1.0]]))


def test_boxes_indexing_keeps_boxes_and_rejects_wrong_shape():
    b = Boxes(torch.arange(12, dtype=torch.float32).view(3, 4))
    assert isinstance(b[0], Boxes) and len(b[0]) == 1
    assert len(b[torch.tensor([True, False, True])]) == 2
    assert len(Boxes.cat([b, b])) == 6
    assert Boxes([]).tensor.shape == (0, 4)
    with pytest.raises(ValueError, match="N×4"):
        Boxes(torch.zeros(3, 5))


def test_instances_fields_must_have_equal_length_and_index_together():
    inst = Instances((10, 20))
    inst.gt_boxes = Boxes(torch.zeros(3, 4))
    inst.gt_classes = torch.tensor([0, 1, 2])
    inst.names = ["a", "b", "c"]
    sub = inst[inst.gt_classes > 0]
    assert len(sub) == 2 and sub.names == ["b", "c"] and sub.image_size == (10, 20)
    assert inst[-1].gt_classes.tolist() == [2]
    with pytest.raises(ValueError, match="length 2 does not match"):
        inst.scores = torch.zeros(2)
    with pytest.raises(AttributeError, match="Fields present"):
        _ = inst.missing


def test_instances_cat_concatenates_each_field():
    a = Instances((5, 5), gt_classes=torch.tensor([1]), gt_boxes=Boxes(torch.zeros(1, 4)))
    c = Instances.cat([a, a])
    assert c.gt_classes.tolist() == [1, 1] and len(c.gt_boxes) == 2


def test_imagelist_pads_to_divisible_size_and_keeps_sizes():
    il = ImageList.from_tensors(
        [torch.ones(3, 5, 7), torch.ones(3, 8, 4)], size_divisibility=4, pad_value=-1.0
    )
    assert il.tensor.shape == (2, 3, 8, 8)
    assert il.image_sizes == [(5, 7), (8, 4)]
    assert il.tensor[0, 0, 5:, :].eq(-1).all() and il[0].shape == (3, 5, 7)


def test_shapespec_fields_default_to_none():
    s = ShapeSpec(channels=256, stride=8)
    assert (s.channels, s.height, s.width, s.stride) == (256, None, None, 8)


def test_sample_image_id_reads_both_batch_forms():
    assert sample_image_id({"image_id": 4, "image": None}) == 4
    assert sample_image_id({"img": None, "img_metas": {"image_id": 9}}) == 9
    assert sample_image_id({"img": [None], "img_metas": [{"image_id": 3}, {"image_id": 3}]}) == 3
    with pytest.raises(KeyError, match="meta_keys"):
        sample_image_id({"img": None, "img_metas": {}})


def test_boxmode_xywh_round_trip_and_clip_property():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    coord = st.floats(min_value=-500, max_value=500, allow_nan=False, width=32)
    size = st.floats(min_value=0, max_value=500, allow_nan=False, width=32)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(coord, coord, size, size), min_size=1, max_size=8))
    def check(rows):
        xywh = torch.tensor(rows, dtype=torch.float64)
        xyxy = BoxMode.convert(xywh, BoxMode.XYWH_ABS, BoxMode.XYXY_ABS)
        torch.testing.assert_close(BoxMode.convert(xyxy, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS), xywh)
        boxes = Boxes(xyxy.float())
        boxes.clip((100, 200))
        t = boxes.tensor
        assert (t[:, 0::2] >= 0).all() and (t[:, 0::2] <= 200).all()
        assert (t[:, 1::2] >= 0).all() and (t[:, 1::2] <= 100).all()
        assert (boxes.area() >= 0).all()

    check()
