"""build_dataloader_from_cfg: MMEngine dataloader dicts (samplers, batch samplers, collate, worker keys)
into kiln's resumable loader, with its position/resume contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import make_coco

from kiln.data import build_dataloader_from_cfg
from kiln.data.datasets import CocoDataset

PIPELINE = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True),
            dict(type="RandomFlip", prob=0.5), dict(type="PackDetInputs")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 images: ids 1-5 landscape (w > h), 6-10 portrait."""
    tmp = tmp_path_factory.mktemp("loader")
    images = [dict(id=i, file_name=f"{i}.jpg", height=20 if i <= 5 else 36, width=36 if i <= 5 else 20)
              for i in range(1, 11)]
    anns = [dict(id=i, image_id=i, category_id=1, bbox=[1, 1, 8, 8], area=64, iscrowd=0)
            for i in range(1, 11)]
    json_file, img_root = make_coco(tmp, images=images, annotations=anns, categories=[dict(id=1, name="a")])
    return CocoDataset(ann_file=json_file, data_prefix=dict(img=img_root), pipeline=PIPELINE)


def _ids(batch):
    return [s["data_samples"].img_id for s in batch]


def _epoch(loader):
    return [_ids(b) for b in loader]


def test_default_sampler_shuffles_every_image_once_per_epoch(dataset):
    cfg = dict(batch_size=3, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=True), dataset={})
    loader = build_dataloader_from_cfg(cfg, dataset, training=True, seed=0)
    first = _epoch(loader)
    assert sorted(i for b in first for i in b) == list(range(1, 11))
    assert [len(b) for b in first] == [3, 3, 3, 1]
    assert first != [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    second = _epoch(loader)  # the next epoch reshuffles
    assert second != first and sorted(i for b in second for i in b) == list(range(1, 11))
    again = build_dataloader_from_cfg(cfg, dataset, training=True, seed=0)
    assert _epoch(again) == first  # a function of the seed
    own_seed = dict(cfg, sampler=dict(type="DefaultSampler", shuffle=True, seed=5))
    assert _epoch(build_dataloader_from_cfg(own_seed, dataset, training=True, seed=0)) != first


def test_drop_last_and_unshuffled_training(dataset):
    cfg = dict(batch_size=3, drop_last=True, sampler=dict(type="DefaultSampler", shuffle=False))
    assert _epoch(build_dataloader_from_cfg(cfg, dataset, training=True, seed=0)) == [
        [1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_infinite_sampler_streams_past_the_dataset(dataset):
    cfg = dict(batch_size=4, sampler=dict(type="InfiniteSampler", shuffle=True))
    loader = build_dataloader_from_cfg(cfg, dataset, training=True, infinite=True, seed=0)
    it = iter(loader)
    seen = [i for _ in range(5) for i in _ids(next(it))]
    assert len(seen) == 20 and sorted(seen[:10]) == list(range(1, 11))
    with pytest.raises(ValueError, match="InfiniteSampler never ends an epoch"):
        build_dataloader_from_cfg(cfg, dataset, training=True, infinite=False, seed=0)


def test_aspect_ratio_batch_sampler_batches_one_orientation(dataset):
    cfg = dict(batch_size=2, sampler=dict(type="DefaultSampler", shuffle=True),
               batch_sampler=dict(type="AspectRatioBatchSampler"))
    batches = _epoch(build_dataloader_from_cfg(cfg, dataset, training=True, seed=1))
    assert sorted(i for b in batches for i in b) == list(range(1, 11))
    assert all(len({i <= 5 for i in b}) == 1 for b in batches)
    plain = _epoch(build_dataloader_from_cfg(dict(cfg, batch_sampler=None), dataset, training=True, seed=1))
    assert any(len({i <= 5 for i in b}) == 2 for b in plain)  # without it, orientations mix


def test_evaluation_loader_visits_in_order(dataset):
    cfg = dict(batch_size=4, num_workers=0, persistent_workers=True, drop_last=False,
               sampler=dict(type="DefaultSampler", shuffle=False))
    assert _epoch(build_dataloader_from_cfg(cfg, dataset, training=False, where="val_dataloader")) == [
        [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    with pytest.raises(ValueError, match="val_dataloader.sampler shuffle=True"):
        build_dataloader_from_cfg(dict(cfg, sampler=dict(type="DefaultSampler", shuffle=True)), dataset,
                                  training=False, where="val_dataloader")


def test_resume_continues_the_stream_exactly(dataset):
    cfg = dict(batch_size=3, sampler=dict(type="DefaultSampler", shuffle=True),
               batch_sampler=dict(type="AspectRatioBatchSampler"), collate_fn=dict(type="pseudo_collate"))
    full = build_dataloader_from_cfg(cfg, dataset, training=True, seed=3)
    reference = [b for _ in range(2) for b in full]  # two epochs
    partial = build_dataloader_from_cfg(cfg, dataset, training=True, seed=3)
    head = list(partial)  # epoch 0
    head.append(next(iter(partial)))  # and the first batch of epoch 1
    state = partial.state_dict()
    resumed = build_dataloader_from_cfg(cfg, dataset, training=True, seed=999)
    resumed.load_state_dict(state)
    tail = list(resumed)
    got = head + tail
    assert [_ids(b) for b in got] == [_ids(b) for b in reference]
    for a, b in zip(got, reference):  # the same augmentation (flips) too
        for sa, sb in zip(a, b):
            assert torch.equal(sa["inputs"], sb["inputs"])
            assert sa["data_samples"].flip == sb["data_samples"].flip


def test_set_start_skips_batches(dataset):
    cfg = dict(batch_size=2, sampler=dict(type="DefaultSampler", shuffle=True))
    reference = _epoch(build_dataloader_from_cfg(cfg, dataset, training=True, seed=0))
    loader = build_dataloader_from_cfg(cfg, dataset, training=True, seed=0)
    loader.set_epoch(0)
    loader.set_start(3)
    assert _epoch(loader) == reference[3:]


def test_workers_and_persistent_workers_give_the_same_batches(dataset):
    cfg = dict(batch_size=3, sampler=dict(type="DefaultSampler", shuffle=True))
    reference = _epoch(build_dataloader_from_cfg(cfg, dataset, training=True, seed=0))
    loader = build_dataloader_from_cfg(dict(cfg, num_workers=1, persistent_workers=True, pin_memory=False),
                                       dataset, training=True, seed=0)
    assert _epoch(loader) == reference
    assert loader._torch_loader.persistent_workers is True
    second = _epoch(loader)
    assert sorted(i for b in second for i in b) == list(range(1, 11))


def test_loader_key_errors(dataset):
    with pytest.raises(KeyError, match=r"has keys kiln's loader does not take: \['prefetch'\]"):
        build_dataloader_from_cfg(dict(batch_size=2, prefetch=2), dataset, training=True, seed=0)
    with pytest.raises(ValueError, match="default_collate stacks"):
        build_dataloader_from_cfg(dict(collate_fn=dict(type="default_collate")), dataset, training=True,
                                  seed=0)
    with pytest.raises(ValueError, match="sampler type='WeightedSampler'"):
        build_dataloader_from_cfg(dict(sampler=dict(type="WeightedSampler")), dataset, training=True, seed=0)
    with pytest.raises(ValueError, match=r"InfiniteSampler does not take \['round_up'\]"):
        build_dataloader_from_cfg(dict(sampler=dict(type="InfiniteSampler", round_up=True)), dataset,
                                  training=True, infinite=True, seed=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        build_dataloader_from_cfg(dict(batch_size=0), dataset, training=True, seed=0)


def test_pseudo_collate_keeps_the_batch_a_list(dataset):
    batch = next(iter(build_dataloader_from_cfg(dict(batch_size=2, collate_fn=dict(type="pseudo_collate")),
                                                dataset, training=True, seed=0)))
    assert isinstance(batch, list) and len(batch) == 2
    assert batch[0]["inputs"].dtype == torch.uint8 and np.ndim(batch[0]["inputs"]) == 3
