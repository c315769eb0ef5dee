"""DetDataSample / InstanceData: the MMDetection 3.x per-image containers behave as 3.x code expects."""

import copy
import pickle

import numpy as np
import pytest
import torch

from kiln.structures import DetDataSample, InstanceData, sample_image_id


def _gt(n=3):
    return InstanceData(bboxes=torch.arange(4 * n, dtype=torch.float32).view(n, 4),
                        labels=torch.arange(n))


def test_instance_fields_index_together():
    inst = _gt(4)
    kept = inst[inst.labels % 2 == 0]
    assert kept.labels.tolist() == [0, 2]
    assert kept.bboxes[1].tolist() == [8.0, 9.0, 10.0, 11.0]
    assert inst[[3, 1]].labels.tolist() == [3, 1]
    assert inst[np.array([True, False, False, True])].labels.tolist() == [0, 3]
    assert len(inst[-1]) == 1 and inst[-1].labels.tolist() == [3]
    with pytest.raises(IndexError, match="out of range for 4"):
        inst[4]


def test_instance_length_mismatch_and_bad_names_are_errors():
    inst = _gt(3)
    with pytest.raises(ValueError, match="length 2.*length 3"):
        inst.scores = torch.zeros(2)
    with pytest.raises(TypeError, match="metainfo"):
        inst.score_thr = 0.5
    with pytest.raises(AttributeError, match="no field 'masks'"):
        _ = inst.masks


def test_instance_cat_and_list_fields():
    a = InstanceData(labels=torch.tensor([1]), names=["a"])
    b = InstanceData(labels=torch.tensor([2, 3]), names=["b", "c"])
    both = InstanceData.cat([a, b])
    assert both.labels.tolist() == [1, 2, 3] and both.names == ["a", "b", "c"]
    assert both[torch.tensor([False, True, True])].names == ["b", "c"]


def test_data_sample_meta_and_fields():
    s = DetDataSample(metainfo=dict(img_id=5, img_shape=(8, 9)), gt_instances=_gt(2))
    assert s.img_shape == (8, 9) and s.metainfo["img_id"] == 5
    assert len(s.gt_instances) == 2 and "gt_instances" in s
    with pytest.raises(TypeError, match="must be an InstanceData"):
        s.pred_instances = {"bboxes": torch.zeros(0, 4)}
    with pytest.raises(AttributeError, match="set_metainfo"):
        s.img_id = 6
    s.set_metainfo({"img_id": 6})
    assert s.img_id == 6


def test_data_sample_survives_pickle_and_deepcopy():
    s = DetDataSample(metainfo=dict(img_id=5), gt_instances=_gt(2))
    for other in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert other.img_id == 5
        assert torch.equal(other.gt_instances.bboxes, s.gt_instances.bboxes)


def test_sample_image_id_reads_packed_samples():
    s = DetDataSample(metainfo=dict(img_id=11))
    assert sample_image_id({"inputs": torch.zeros(3, 4, 4), "data_samples": s}) == 11
    assert sample_image_id({"inputs": [torch.zeros(3, 4, 4)], "data_samples": [s, s]}) == 11
