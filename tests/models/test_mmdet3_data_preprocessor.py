"""The MMDetection 3.x batch form (``inputs`` + ``data_samples``) and ``model.data_preprocessor``."""

from __future__ import annotations

import copy

import pytest
import torch
from retina_configs import TINY_RETINANET

from kiln.models import build_detector
from kiln.registry import MODELS
from kiln.structures import DetDataSample, InstanceData

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
PREPROC = dict(type="DetDataPreprocessor", mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32)


def _bgr(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)


def _sample(img, boxes=None, labels=None, ignored=None, **meta):
    h, w = img.shape[-2:]
    metainfo = dict(img_id=7, ori_shape=(h, w), img_shape=(h, w), scale_factor=(1.0, 1.0), flip=False,
                    flip_direction=None)
    metainfo.update(meta)
    ds = DetDataSample(metainfo=metainfo)
    if boxes is not None:
        ds.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                       labels=torch.tensor(labels, dtype=torch.int64))
    if ignored is not None:
        ds.ignored_instances = InstanceData(bboxes=torch.tensor(ignored, dtype=torch.float32),
                                            labels=torch.zeros(len(ignored), dtype=torch.int64))
    return {"inputs": img, "data_samples": ds}


def _normalised_rgb(img: torch.Tensor) -> torch.Tensor:
    # What a 2.x pipeline's Normalize(mean, std, to_rgb=True) yields for a BGR image.
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return (img.flip(0).float() - mean) / std


def _retinanet(**extra) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = copy.deepcopy(TINY_RETINANET)
    cfg.update(extra)
    cfg["test_cfg"]["score_thr"] = 0.0
    return build_detector(cfg)


def test_flip_normalise_and_pad_follow_mmengine_order():
    pre = MODELS.build(dict(PREPROC, pad_value=-5.0))
    img = _bgr(20, 45)
    metas = [{}]
    batch = pre([img], metas)
    assert batch.tensor.shape == (1, 3, 32, 64) and batch.image_sizes == [(20, 45)]
    assert torch.allclose(batch.tensor[0, :, :20, :45], _normalised_rgb(img), atol=1e-5)
    assert bool((batch.tensor[0, :, 20:, :] == -5.0).all())
    assert bool((batch.tensor[0, :, :, 45:] == -5.0).all())
    assert metas[0]["pad_shape"] == (32, 64) and metas[0]["batch_input_shape"] == (32, 64)


def test_the_3x_form_predicts_what_the_2x_form_of_the_same_image_does():
    model = _retinanet(data_preprocessor=PREPROC).eval()
    img = _bgr(64, 96)
    meta2 = dict(img_shape=(64, 96, 3), ori_shape=(64, 96, 3), scale_factor=1.0, flip=False)
    with torch.no_grad():
        out3 = model([_sample(img)])[0]
        out2 = model([dict(img=_normalised_rgb(img), img_metas=meta2)])[0]
    assert len(out3["boxes"]) > 0
    assert torch.allclose(out3["boxes"], out2["boxes"], atol=1e-4)
    assert torch.allclose(out3["scores"], out2["scores"], atol=1e-5)


def test_3x_ground_truth_trains_like_the_2x_form():
    model = _retinanet(data_preprocessor=PREPROC).train()
    img = _bgr(64, 64, seed=3)
    boxes, labels = [[8.0, 8.0, 40.0, 48.0], [30.0, 20.0, 60.0, 60.0]], [1, 2]
    losses3 = model([_sample(img, boxes, labels)])
    losses2 = model([dict(img=_normalised_rgb(img), img_metas=dict(img_shape=(64, 64, 3)),
                          gt_bboxes=torch.tensor(boxes), gt_labels=torch.tensor(labels))])
    assert set(losses3) == set(losses2)
    for k in losses3:
        assert torch.allclose(losses3[k], losses2[k]), k


def test_ignored_instances_become_ignore_boxes():
    model = _retinanet(data_preprocessor=PREPROC)
    inputs = model.preprocess([_sample(_bgr(32, 32), [[1.0, 1.0, 9.0, 9.0]], [0],
                                       ignored=[[10.0, 10.0, 20.0, 20.0]])])
    assert inputs.gt_bboxes_ignore[0].tolist() == [[10.0, 10.0, 20.0, 20.0]]
    assert inputs.gt_labels[0].tolist() == [0] and inputs.metas[0]["image_id"] == 7


def test_without_a_data_preprocessor_3x_inputs_are_only_cast_to_float():
    model = _retinanet()
    img = _bgr(40, 40)
    inputs = model.preprocess([_sample(img)])
    assert inputs.images.tensor.dtype == torch.float32
    assert torch.equal(inputs.images.tensor[0, :, :40, :40], img.float())


def test_test_time_aug_views_merge_into_one_result_per_image():
    model = _retinanet(data_preprocessor=PREPROC).eval()
    img = _bgr(64, 64, seed=5)
    views = [_sample(img), _sample(img.flip(-1), flip=True, flip_direction="horizontal")]
    batch = [{"inputs": [v["inputs"] for v in views], "data_samples": [v["data_samples"] for v in views]}]
    with torch.no_grad():
        merged = model(batch)
        single = model([views[0]])[0]
        flipped = model([views[1]])[0]
    assert len(merged) == 1
    # Every merged box is one of the two views' detections (the flipped view's mapped back to the
    # original image), and both views contribute.
    def rows_of(boxes):  # batched and single-image convolutions differ in the last bits
        return {tuple(round(v, 2) for v in b) for b in boxes.tolist()}

    rows = rows_of(merged[0]["boxes"])
    from_single = rows & rows_of(single["boxes"])
    from_flipped = rows & rows_of(flipped["boxes"])
    assert rows == from_single | from_flipped
    assert from_single and from_flipped - from_single


def test_batch_fixed_size_pad_pads_training_batches_only():
    model = _retinanet(data_preprocessor=dict(PREPROC, batch_augments=[dict(type="BatchFixedSizePad",
                                                                            size=(96, 128))]))
    batch = [_sample(_bgr(40, 50), [[1.0, 1.0, 20.0, 20.0]], [0])]
    model.train()
    assert model.preprocess(batch).images.tensor.shape[-2:] == (96, 128)
    model.eval()
    assert model.preprocess(batch).images.tensor.shape[-2:] == (64, 64)


@pytest.mark.parametrize("bad, message", [
    (dict(batch_augments=[dict(type="BatchSyncRandomResize", random_size_range=(480, 800))]),
     r"batch_augments\[0\]: type 'BatchSyncRandomResize' is not implemented"),
    (dict(pad_seg=True), r"pad_seg=True.*no semantic-segmentation heads"),
    (dict(std=None), r"give both"),
])
def test_unsupported_preprocessor_settings_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        _retinanet(data_preprocessor=dict(PREPROC, **bad))


def test_mixing_batch_forms_is_an_error():
    model = _retinanet(data_preprocessor=PREPROC)
    img = _bgr(32, 32)
    with pytest.raises(ValueError, match="mixes MMDetection 3.x samples"):
        model.preprocess([_sample(img), dict(img=img.float(), img_metas=dict(img_shape=(32, 32, 3)))])
