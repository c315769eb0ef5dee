"""TrainingSampler, InferenceSampler, RepeatFactorTrainingSampler."""

import itertools

import pytest
import torch

from kiln.data import InferenceSampler, RepeatFactorTrainingSampler, TrainingSampler
from kiln.data.samplers import repeat_factors_from_category_frequency
from kiln.registry import SAMPLERS


def take(it, n):
    return list(itertools.islice(iter(it), n))


def test_training_sampler_is_infinite_seeded_and_reshuffles_each_pass():
    s = TrainingSampler(5, seed=3)
    a = take(s, 20)
    assert a == take(TrainingSampler(5, seed=3), 20)
    assert a != take(TrainingSampler(5, seed=4), 20)
    passes = [a[i : i + 5] for i in range(0, 20, 5)]
    assert all(sorted(p) == list(range(5)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1


def test_training_sampler_finite_mode_follows_set_epoch():
    s = TrainingSampler(8, seed=0, infinite=False)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e0) == sorted(e1) == list(range(8)) and e0 != e1 and len(s) == 8


def test_training_sampler_shards_cover_each_epoch_once_across_ranks():
    shards = [list(TrainingSampler(10, seed=1, rank=r, world_size=3, infinite=False)) for r in range(3)]
    assert all(len(sh) == 4 for sh in shards)  # padded to equal length
    flat = [i for sh in shards for i in sh]
    assert set(flat) == set(range(10)) and len(flat) == 12


def test_set_start_skips_indices():
    s = TrainingSampler(7, seed=2)
    full = take(s, 30)
    s.set_start(11)
    assert take(s, 19) == full[11:]


def test_sampler_iteration_leaves_global_rng_alone():
    state = torch.get_rng_state()
    take(TrainingSampler(100, seed=0), 500)
    assert torch.equal(state, torch.get_rng_state())


def test_inference_sampler_gives_each_index_once_in_order():
    shards = [list(InferenceSampler(10, rank=r, world_size=4)) for r in range(4)]
    assert shards == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]


def test_repeat_factor_sampler_oversamples_rare_categories():
    dicts = [{"annotations": [{"category_id": 0}]}] * 9 + [{"annotations": [{"category_id": 1}]}]
    factors = repeat_factors_from_category_frequency(dicts, repeat_thresh=0.4)
    assert factors[:9].tolist() == [1.0] * 9 and factors[9].item() == pytest.approx(2.0)
    s = RepeatFactorTrainingSampler(factors, seed=0, infinite=False)
    idx = list(s)
    assert idx.count(9) == 2 and len(idx) == 11


def test_repeat_factor_rounding_is_stochastic_per_epoch():
    s = RepeatFactorTrainingSampler([1.5] * 40, seed=0, infinite=False)
    counts = []
    for e in range(3):
        s.set_epoch(e)
        counts.append(len(list(s)))
    assert all(40 < c < 80 for c in counts) and len(set(counts)) > 1


def test_samplers_are_registered_and_validate_arguments():
    assert SAMPLERS.get("TrainingSampler") is TrainingSampler
    with pytest.raises(ValueError, match="positive int"):
        TrainingSampler(0, seed=0)
    with pytest.raises(ValueError, match="rank"):
        TrainingSampler(4, seed=0, rank=2, world_size=2)
