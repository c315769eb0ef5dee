"""build_train_loader / build_test_loader and the ResumableLoader contract."""

import os
import random

import numpy as np
import pytest
import torch
from data_helpers import shapes_small  # noqa: F401  (fixture)

from kiln.data import DatasetFromList, ShapesDataset, build_test_loader, build_train_loader
from kiln.data.build import build_dataloader


def rand_mapper(d):
    """A mapper whose output depends on all three RNGs (python, numpy, torch)."""
    return dict(i=d["i"], py=random.random(), np=float(np.random.rand()), t=float(torch.rand(1)))


DICTS = [dict(i=i, width=20 + 10 * (i % 2), height=25) for i in range(13)]


def ids(batches):
    return [[s["i"] for s in b] for b in batches]


def test_batches_are_lists_of_dicts_and_len_counts_batches():
    loader = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=4, seed=0, drop_last=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert all(isinstance(b, list) and len(b) == 4 and isinstance(b[0], dict) for b in batches)
    loader = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=4, seed=0, drop_last=False)
    assert len(loader) == 4 and [len(b) for b in loader] == [4, 4, 4, 1]


def test_each_epoch_is_a_new_permutation_and_the_epoch_advances():
    loader = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=13, seed=0)
    e0, e1 = ids(loader), ids(loader)
    assert sorted(e0[0]) == sorted(e1[0]) == list(range(13)) and e0 != e1
    assert loader.state_dict() == {"seed": 0, "epoch": 2, "start": 0}
    loader.set_epoch(1)
    assert ids(loader) == e1


def test_resume_at_batch_k_with_two_workers_matches_uninterrupted_run(shapes_small):  # noqa: F811
    # A real pipeline with random flip and random rescaling: the resumed stream must match
    # batch for batch, pixels included, although the workers are new.
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", img_scale=(64, 64), ratio_range=(0.5, 1.5), keep_ratio=True),
        dict(type="RandomFlip", flip_ratio=0.5),
        dict(type="Normalize", mean=[0, 0, 0], std=[1, 1, 1], to_rgb=True),
        dict(type="DefaultFormatBundle"),
        dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
    ]
    ds = ShapesDataset(
        split="train",
        num_images=24,
        image_size=64,
        seed=0,
        root=os.path.dirname(shapes_small["root"]),
        pipeline=pipeline,
    )

    def build():
        return build_train_loader(ds, total_batch_size=3, num_workers=2, seed=7)

    full = list_epochs(build(), 2)
    k = 5
    resumed = build()
    resumed.set_epoch(0)
    resumed.set_start(k)
    rest = list_epochs(resumed, 2)
    assert len(rest) == len(full) - k
    flips = set()
    for a, b in zip(full[k:], rest):
        for sa, sb in zip(a, b):
            assert sa["img_metas"]["image_id"] == sb["img_metas"]["image_id"]
            assert sa["img_metas"]["flip"] == sb["img_metas"]["flip"]
            assert sa["img"].shape == sb["img"].shape and torch.equal(sa["img"], sb["img"])
            assert torch.equal(sa["gt_bboxes"], sb["gt_bboxes"])
            flips.add(sa["img_metas"]["flip"])
    assert flips == {True, False}  # augmentation really was random


def list_epochs(loader, n):
    return [b for _ in range(n) for b in loader]


def test_samples_do_not_depend_on_worker_count():
    out = []
    for workers in (0, 2):
        loader = build_train_loader(
            DICTS, mapper=rand_mapper, total_batch_size=4, num_workers=workers, seed=1
        )
        out.append(list(loader))
    assert out[0] == out[1]


def test_infinite_loader_set_start_positions_the_stream():
    def first(loader, n):
        it = iter(loader)
        return [next(it) for _ in range(n)]

    full = first(build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=4, seed=2, infinite=True), 12)
    loader = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=4, seed=2, infinite=True)
    loader.set_start(7)
    assert first(loader, 5) == full[7:]
    assert loader.state_dict() == {"seed": 2, "epoch": 0, "start": 12}


def test_state_dict_round_trip_resumes_mid_epoch():
    a = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=2, seed=3)
    it = iter(a)
    seen = [next(it) for _ in range(3)]
    state = a.state_dict()
    rest = list(it)
    b = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=2, seed=3)
    b.load_state_dict(state)
    assert state["start"] == 3 and list(b) == rest and len(seen) == 3


def test_load_state_dict_adopts_the_checkpoint_seed():
    a = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=2, seed=3)
    full = list(a)
    b = build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=2, seed=99)
    b.load_state_dict({"seed": 3, "epoch": 0, "start": 2})
    assert list(b) == full[2:] and b.state_dict()["seed"] == 3


def test_skipped_batches_are_not_decoded():
    calls = []

    def mapper(d):
        calls.append(d["i"])
        return d

    loader = build_train_loader(DICTS, mapper=mapper, total_batch_size=4, seed=0, drop_last=True)
    loader.set_start(2)
    batches = list(loader)
    assert len(batches) == 1 and len(calls) == 4


def test_iterating_never_touches_the_global_rngs():
    torch.manual_seed(0)
    state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    for workers in (0, 2):
        list(build_train_loader(DICTS, mapper=rand_mapper, total_batch_size=4, num_workers=workers, seed=0))
    assert torch.equal(state, torch.get_rng_state())
    assert random.getstate() == py_state and np.array_equal(np_state[1], np.random.get_state()[1])


def test_augmentation_differs_per_rank():
    from kiln.data import TrainingSampler

    same = [dict(i=0)] * 4
    out = []
    for rank in (0, 1):
        sampler = TrainingSampler(4, shuffle=False, seed=0, rank=rank, world_size=2, infinite=False)
        loader = build_train_loader(same, mapper=rand_mapper, total_batch_size=2, sampler=sampler)
        out.append([s["py"] for b in loader for s in b])
    assert set(out[0]).isdisjoint(out[1])


def test_aspect_ratio_grouping_batches_one_orientation():
    loader = build_train_loader(
        DICTS, mapper=lambda d: d, total_batch_size=3, seed=0, aspect_ratio_grouping=True
    )
    for batch in loader:
        assert len({s["width"] > s["height"] for s in batch}) == 1


def test_aspect_ratio_grouping_needs_sizes():
    with pytest.raises(ValueError, match="'width' and 'height'"):
        build_train_loader([dict(i=1)], total_batch_size=1, seed=0, aspect_ratio_grouping=True)


def test_test_loader_keeps_order_and_every_sample():
    loader = build_test_loader(DatasetFromList(DICTS), batch_size=4)
    assert ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12]]


def test_mm_build_dataloader_uses_group_flag_and_finite_epochs(shapes_small):  # noqa: F811
    ds = ShapesDataset(
        split="train", num_images=24, image_size=64, seed=0, root=os.path.dirname(shapes_small["root"])
    )
    loader = build_dataloader(ds, samples_per_gpu=5, workers_per_gpu=0, seed=0)
    assert loader.aspect_ratio_grouping and not loader.infinite and len(loader) == 5
    it_loader = build_dataloader(ds, samples_per_gpu=5, seed=0, runner_type="IterBasedRunner")
    assert it_loader.infinite
    with pytest.raises(TypeError, match="unsupported arguments"):
        build_dataloader(ds, samples_per_gpu=2, shufle=True)


def test_total_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="total_batch_size"):
        build_train_loader(DICTS, total_batch_size=0, seed=0)


@pytest.mark.parametrize("drop_last", [True, False])
def test_grouped_finite_epochs_have_the_same_batch_count_on_every_rank(drop_last):
    # Orientation mix that makes per-rank grouping uneven; unequal counts would hang DDP.
    from kiln.data import TrainingSampler

    dicts = [dict(i=i, width=30 if i % 3 else 10, height=20) for i in range(23)]
    for epoch in range(4):
        counts = []
        for rank in range(3):
            sampler = TrainingSampler(23, seed=epoch, rank=rank, world_size=3, infinite=False)
            loader = build_train_loader(
                dicts, total_batch_size=2, sampler=sampler, aspect_ratio_grouping=True, drop_last=drop_last
            )
            batches = list(loader)
            assert all(len({s["width"] > s["height"] for s in b}) == 1 for b in batches)
            counts.append(len(batches))
        assert len(set(counts)) == 1, counts
