"""Detectron2's training samplers by name: repeat factors, random subsets, the canonical loader dict."""

import math
from collections import Counter

import pytest

from kiln.config import CfgNode
from kiln.data import DatasetCatalog, MetadataCatalog, build_dataloader_from_cfg, build_detection_train_loader
from kiln.data.samplers import RandomSubsetTrainingSampler, RepeatFactorTrainingSampler

factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency


def dicts(cat_sets):
    return [dict(image_id=i, file_name=f"{i}.jpg", annotations=[dict(category_id=c, iscrowd=0) for c in cats])
            for i, cats in enumerate(cat_sets)]


class CatIdsDataset:
    """A dataset exposing get_cat_ids, as kiln's CocoDataset/VOCDataset do."""

    def __init__(self, cat_sets):
        self.cat_sets = cat_sets

    def __len__(self):
        return len(self.cat_sets)

    def __getitem__(self, i):
        return i

    def get_cat_ids(self, i):
        return list(self.cat_sets[i])


CATS = [{0}, {0}, {0, 1}, set()]  # f(0) = 3/4, f(1) = 1/4


def test_repeat_factors_follow_the_rarest_category_of_each_image():
    got = factors(dicts(CATS), 0.5)
    assert got.tolist() == pytest.approx([1.0, 1.0, math.sqrt(0.5 / 0.25), 1.0])
    no_sqrt = factors(dicts(CATS), 0.5, sqrt=False)
    assert no_sqrt.tolist() == pytest.approx([1.0, 1.0, 2.0, 1.0])
    from_dataset = factors(CatIdsDataset(CATS), 0.5)
    assert from_dataset.tolist() == got.tolist()


def test_canonical_loader_dict_builds_repeat_factor_sampler():
    # thresh 0.75 without sqrt: category 1 (in 1 of 4 images) -> factor 3, category 0 -> 1.
    ds = CatIdsDataset([{0}, {0}, {0}, {1}])
    cfg = dict(batch_size=1, sampler=dict(type="RepeatFactorTrainingSampler", repeat_thresh=0.75, sqrt=False))
    loader = build_dataloader_from_cfg(cfg, ds, training=True, infinite=False, seed=0)
    seen = Counter(b[0] for b in loader)
    assert seen == {0: 1, 1: 1, 2: 1, 3: 3}


def test_random_subset_keeps_a_fixed_subset_and_reshuffles_it():
    s = RandomSubsetTrainingSampler(10, 0.35, seed=4, infinite=False)
    subset = s.subset()
    assert len(subset) == 3 and len(set(subset)) == 3
    orders = []
    for epoch in range(6):
        s.set_epoch(epoch)
        order = list(s)
        assert sorted(order) == sorted(subset)
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1
    assert RandomSubsetTrainingSampler(10, 0.35, seed=4).subset() == subset
    assert RandomSubsetTrainingSampler(10, 0.35, seed_shuffle=1, seed_subset=9).subset() == \
        RandomSubsetTrainingSampler(10, 0.35, seed_shuffle=2, seed_subset=9).subset()


def test_random_subset_resumes_exactly_through_the_loader_state():
    cfg = dict(batch_size=2, sampler=dict(type="RandomSubsetTrainingSampler", subset_ratio=0.5))
    ds = list(range(20))
    loader = build_dataloader_from_cfg(cfg, ds, training=True, infinite=True, seed=11)
    it = iter(loader)
    first = [next(it) for _ in range(3)]
    state = dict(loader.state_dict(), start=3)
    rest = [next(it) for _ in range(8)]
    assert set(x for b in first + rest for x in b) <= set(loader.sampler.subset())
    resumed = build_dataloader_from_cfg(cfg, ds, training=True, infinite=True, seed=99)  # another seed
    resumed.load_state_dict(state)
    it2 = iter(resumed)
    assert [next(it2) for _ in range(8)] == rest


def test_sampler_dicts_are_checked():
    ds = list(range(8))
    with pytest.raises(ValueError, match="needs repeat_thresh"):
        build_dataloader_from_cfg(dict(sampler=dict(type="RepeatFactorTrainingSampler")),
                                  CatIdsDataset([{0}]), training=True)
    with pytest.raises(ValueError, match=r"does not take \['ratio'\]"):
        build_dataloader_from_cfg(dict(sampler=dict(type="RandomSubsetTrainingSampler", ratio=0.5)), ds,
                                  training=True)
    with pytest.raises(ValueError, match=r"subset_ratio must be in \(0, 1\]"):
        build_dataloader_from_cfg(dict(sampler=dict(type="RandomSubsetTrainingSampler", subset_ratio=1.5)),
                                  ds, training=True, seed=0)
    with pytest.raises(ValueError, match="is a training sampler"):
        build_dataloader_from_cfg(dict(sampler=dict(type="TrainingSampler")), ds, training=False)
    with pytest.raises(ValueError, match="it is for evaluation loaders"):
        build_dataloader_from_cfg(dict(sampler=dict(type="InferenceSampler")), ds, training=True)
    with pytest.raises(TypeError, match="get_cat_ids"):
        build_dataloader_from_cfg(dict(sampler=dict(type="RepeatFactorTrainingSampler", repeat_thresh=0.1)),
                                  ds, training=True, seed=0)
    ev = build_dataloader_from_cfg(dict(sampler=dict(type="InferenceSampler")), ds, training=False)
    assert [b[0] for b in ev] == ds
    tr = build_dataloader_from_cfg(dict(sampler=dict(type="TrainingSampler", shuffle=False)), ds,
                                   training=True, seed=0)
    assert [b[0] for b in tr] == ds


@pytest.fixture
def catalog_name():
    DatasetCatalog.register("test_builtin_samplers", lambda: dicts([{0}, {0}, {0}, {1}] * 3))
    yield "test_builtin_samplers"
    DatasetCatalog.remove("test_builtin_samplers")
    MetadataCatalog.pop("test_builtin_samplers", None)


def d2_cfg(name, **dataloader):
    return CfgNode(dict(DATASETS=dict(TRAIN=(name,)), SOLVER=dict(IMS_PER_BATCH=1), SEED=0,
                        DATALOADER=dict(NUM_WORKERS=0, ASPECT_RATIO_GROUPING=False,
                                        FILTER_EMPTY_ANNOTATIONS=True, REPEAT_THRESHOLD=0.0, REPEAT_SQRT=True,
                                        **dataloader)))


def test_detectron2_config_keys_choose_the_sampler(catalog_name):
    cfg = d2_cfg(catalog_name, SAMPLER_TRAIN="RandomSubsetTrainingSampler", RANDOM_SUBSET_RATIO=0.25)
    loader = build_detection_train_loader(cfg, lambda d: d["image_id"])
    it = iter(loader)
    assert len({next(it)[0] for _ in range(30)}) == 3  # int(12 * 0.25) images, over and over
    cfg = d2_cfg(catalog_name, SAMPLER_TRAIN="RepeatFactorTrainingSampler")
    cfg.DATALOADER.REPEAT_THRESHOLD, cfg.DATALOADER.REPEAT_SQRT = 0.75, False
    loader = build_detection_train_loader(cfg, lambda d: d["image_id"])
    it = iter(loader)
    counts = Counter(next(it)[0] for _ in range(18))  # one pass: 9 images once, 3 rare ones 3 times
    assert all(counts[i] == (3 if i % 4 == 3 else 1) for i in range(12))
    cfg = d2_cfg(catalog_name, SAMPLER_TRAIN="RandomSubsetTrainingSampler")
    with pytest.raises(ValueError, match="needs DATALOADER.RANDOM_SUBSET_RATIO"):
        build_detection_train_loader(cfg, lambda d: d)


def test_get_detection_dataset_dicts_takes_detectron2_arguments(catalog_name):
    from kiln.data import get_detection_dataset_dicts

    DatasetCatalog.register("test_builtin_other", lambda: dicts([{0}]))
    MetadataCatalog.get("test_builtin_other").set(thing_classes=["x"])
    MetadataCatalog.get(catalog_name).set(thing_classes=["y", "z"])
    try:
        names = [catalog_name, "test_builtin_other"]
        with pytest.raises(ValueError, match="different thing_classes"):
            get_detection_dataset_dicts(names)
        assert len(get_detection_dataset_dicts(names, check_consistency=False)) == 13
        with pytest.raises(ValueError, match="min_keypoints=1: kiln has no keypoint"):
            get_detection_dataset_dicts(names, min_keypoints=1)
        with pytest.raises(ValueError, match="1 proposal files for 2 datasets"):
            get_detection_dataset_dicts(names, proposal_files=["p.pkl"])
        with pytest.raises(FileNotFoundError, match="p.pkl"):
            get_detection_dataset_dicts(names, check_consistency=False, proposal_files=["p.pkl", "q.pkl"])
    finally:
        DatasetCatalog.remove("test_builtin_other")
        MetadataCatalog.remove("test_builtin_other")


def test_detectron2_explicit_loader_calls_without_a_config():
    from kiln.data import build_detection_test_loader
    from kiln.data.samplers import TrainingSampler

    data = dicts([{0}] * 5)
    train = build_detection_train_loader(data, mapper=lambda d: d["image_id"], total_batch_size=2,
                                         sampler=TrainingSampler(5, shuffle=False, seed=0),
                                         aspect_ratio_grouping=False)
    it = iter(train)
    assert [next(it) for _ in range(3)] == [[0, 1], [2, 3], [4, 0]]  # infinite, passes follow each other
    test = build_detection_test_loader(data, mapper=lambda d: d["image_id"], batch_size=2)
    assert list(test) == [[0, 1], [2, 3], [4]]
    with pytest.raises(TypeError, match="total_batch_size="):
        build_detection_train_loader(data, mapper=lambda d: d)
    with pytest.raises(TypeError, match="SOLVER.IMS_PER_BATCH"):
        build_detection_train_loader(d2_cfg("x"), lambda d: d, total_batch_size=2)
    with pytest.raises(TypeError, match="name the catalog dataset"):
        build_detection_test_loader(d2_cfg("x"))
