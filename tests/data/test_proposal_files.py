"""Precomputed proposals: the three file layouts, their alignment with a dataset, and the pipeline steps
that carry them (``LoadProposals``, ``ProposalBroadcaster``, ``PackDetInputs``, 2.x ``Collect``)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from kiln.data.datasets import generate_shapes_dataset
from kiln.data.datasets.proposals import align_proposals
from kiln.registry import DATASETS, TRANSFORMS

INFOS = [dict(filename="a.jpg", id=7), dict(filename="b.jpg", id=3)]


def test_mmdet2_list_layout_is_taken_in_annotation_order():
    data = [np.array([[0, 0, 10, 10, 0.9]]), np.zeros((0, 5))]
    out = align_proposals(data, INFOS)
    np.testing.assert_allclose(out[0], [[0, 0, 10, 10, 0.9]], rtol=1e-6)
    assert out[1].shape == (0, 4)


def test_mmdet2_list_of_another_length_is_refused():
    with pytest.raises(ValueError, match="3 images but the annotation file has 2"):
        align_proposals([np.zeros((1, 4))] * 3, INFOS, where="p.pkl")


def test_mmdet3_layout_is_keyed_by_folder_and_file_name():
    data = {
        "val2017/b.jpg": dict(bboxes=np.array([[1, 2, 3, 4]]), scores=np.array([0.5])),
        "val2017/a.jpg": dict(bboxes=np.array([[5, 6, 7, 8]])),
    }
    out = align_proposals(data, INFOS, img_prefix="data/coco/val2017/")
    np.testing.assert_array_equal(out[0], [[5, 6, 7, 8]])
    np.testing.assert_allclose(out[1], [[1, 2, 3, 4, 0.5]])
    with pytest.raises(KeyError, match="'val2017/b.jpg'"):
        align_proposals({"val2017/a.jpg": data["val2017/a.jpg"]}, INFOS, img_prefix="data/coco/val2017/")


def test_detectron2_layout_maps_ids_converts_xywh_and_sorts_by_objectness():
    data = dict(
        ids=[3, 7, 99],
        boxes=[np.array([[0, 0, 5, 5], [10, 10, 4, 2]]), np.array([[1, 1, 2, 2]]), np.zeros((0, 4))],
        objectness_logits=[np.array([-1.0, 2.0]), np.array([0.0]), np.zeros(0)],
        bbox_mode=1,
    )
    out = align_proposals(data, INFOS)
    np.testing.assert_allclose(out[0], [[1, 1, 3, 3, 0.5]])
    np.testing.assert_allclose(out[1][:, :4], [[10, 10, 14, 12], [0, 0, 5, 5]])  # logit 2 before logit -1
    np.testing.assert_allclose(out[1][:, 4], 1 / (1 + np.exp(-np.array([2.0, -1.0]))), rtol=1e-6)


def test_detectron2_layout_without_an_image_names_the_missing_id():
    data = dict(ids=[7], boxes=[np.zeros((1, 4))])
    with pytest.raises(KeyError, match="image id 3 .b.jpg."):
        align_proposals(data, INFOS)


def test_detectron2_layout_refuses_relative_box_modes():
    with pytest.raises(ValueError, match="bbox_mode=2"):
        align_proposals(dict(ids=[7, 3], boxes=[np.zeros((1, 4))] * 2, bbox_mode=2), INFOS)


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="unknown layout"):
        align_proposals(np.zeros((2, 4)), INFOS)


@pytest.fixture
def coco(tmp_path):
    return generate_shapes_dataset(str(tmp_path), num_images=4, image_size=64, seed=0)


def _coco_images(paths):
    with open(paths["ann_file"]) as f:
        return json.load(f)["images"]


def test_coco_dataset_keeps_proposals_aligned_after_filtering(coco, tmp_path):
    images = _coco_images(coco)
    # Detectron2 layout, images in another order than the json: matched by id, not position.
    data = dict(
        ids=[im["id"] for im in reversed(images)],
        boxes=[np.array([[0, 0, im["id"], im["id"]]], np.float32) for im in reversed(images)],
    )
    path = tmp_path / "props.pkl"
    path.write_bytes(pickle.dumps(data))
    ds = DATASETS.build(
        dict(
            type="CocoDataset",
            ann_file=coco["ann_file"],
            data_prefix=dict(img=coco["img_prefix"]),
            proposal_file=str(path),
            pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadProposals")],
            indices=[2, 0],
        )
    )
    for i in range(len(ds)):
        item = ds[i]
        assert item["proposals"][0, 2] == item["image_id"]


def test_missing_proposal_file_is_named(coco, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        DATASETS.build(
            dict(
                type="CocoDataset",
                ann_file=coco["ann_file"],
                img_prefix=coco["img_prefix"],
                proposal_file=str(tmp_path / "nope.pkl"),
            )
        )


def _results(proposals, h=40, w=60):
    return dict(
        img=np.zeros((h, w, 3), np.uint8),
        proposals=proposals,
        bbox_fields=[],
        img_shape=(h, w, 3),
        ori_shape=(h, w, 3),
        filename="x.jpg",
        ori_filename="x.jpg",
        image_id=1,
    )


def test_load_proposals_keeps_the_first_n_and_splits_the_scores():
    step = TRANSFORMS.build(dict(type="LoadProposals", num_max_proposals=2))
    out = step(_results(np.array([[0, 0, 4, 4, 0.9], [1, 1, 5, 5, 0.8], [2, 2, 6, 6, 0.7]], np.float32)))
    np.testing.assert_array_equal(out["proposals"], [[0, 0, 4, 4], [1, 1, 5, 5]])
    np.testing.assert_allclose(out["proposals_scores"], [0.9, 0.8])
    with pytest.raises(KeyError, match="proposal_file"):
        step(dict(img=np.zeros((4, 4, 3))))
    with pytest.raises(ValueError, match="N×4"):
        step(_results(np.zeros((3, 3), np.float32)))


def test_mmdet3_pipeline_moves_proposals_with_the_image_and_packs_them():
    from kiln.data.transforms import Compose

    pipeline = Compose(
        [
            dict(type="LoadProposals", num_max_proposals=None),
            dict(
                type="ProposalBroadcaster",
                transforms=[
                    dict(type="Resize", scale=(120, 80), keep_ratio=True),
                    dict(type="RandomFlip", prob=1.0),
                ],
            ),
            dict(type="PackDetInputs"),
        ]
    )
    out = pipeline(_results(np.array([[0, 0, 10, 20]], np.float32)))
    props = out["data_samples"].proposals
    # resized ×2 to 120×80, then flipped horizontally
    np.testing.assert_allclose(props.bboxes.numpy(), [[100, 0, 120, 40]])
    assert props.scores.tolist() == [0.0]


def test_proposal_broadcaster_needs_load_proposals_before_it():
    step = TRANSFORMS.build(dict(type="ProposalBroadcaster", transforms=[dict(type="RandomFlip", prob=1.0)]))
    with pytest.raises(KeyError, match="LoadProposals"):
        step(_results(np.zeros((1, 4), np.float32)))


def test_mmdet2_pipeline_collects_resized_proposals():
    from kiln.data.transforms import Compose

    pipeline = Compose(
        [
            dict(type="LoadProposals", num_max_proposals=2000),
            dict(type="Resize", img_scale=(120, 80), keep_ratio=True),
            dict(type="ImageToTensor", keys=["img"]),
            dict(type="ToTensor", keys=["proposals"]),
            dict(type="ToDataContainer", fields=[dict(key="proposals", stack=False)]),
            dict(type="Collect", keys=["img", "proposals"]),
        ]
    )
    out = pipeline(_results(np.array([[0, 0, 10, 20, 0.3]], np.float32)))
    np.testing.assert_allclose(out["proposals"].numpy(), [[0, 0, 20, 40]])


def test_to_data_container_checks_its_fields():
    step = TRANSFORMS.build(dict(type="ToDataContainer", fields=[dict(key="proposals", stack=False)]))
    with pytest.raises(KeyError, match="'proposals'"):
        step(dict(img=np.zeros((2, 2, 3))))
    with pytest.raises(NotImplementedError, match="padding_value=255"):
        TRANSFORMS.build(dict(type="ToDataContainer", fields=[dict(key="img", padding_value=255)]))
    with pytest.raises(NotImplementedError, match="cpu_only"):
        TRANSFORMS.build(dict(type="ToDataContainer", fields=[dict(key="img_metas", cpu_only=True)]))
