"""Index samplers: seeded, sharded by rank, resumable without touching the global RNG.

Every sampler draws its permutations from its own ``torch.Generator`` seeded by
``(seed, epoch)``, so the order is a pure function of those numbers and identical on all ranks
before sharding. ``set_epoch`` picks the epoch; ``set_start(n)`` skips the first ``n`` indices of
this rank's stream (only index arithmetic, no data is read).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from kiln.registry import SAMPLERS
from kiln.utils.dist import get_dist_info, shared_random_seed

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingSampler",
    "InferenceSampler",
    "RepeatFactorTrainingSampler",
    "RandomSubsetTrainingSampler",
    "repeat_factors_from_category_frequency",
    "image_category_sets",
    "build_training_sampler",
    "TRAINING_SAMPLER_KEYS",
    "get_dist_info",
    "shared_random_seed",
]


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    r, w = get_dist_info()
    rank = r if rank is None else int(rank)
    world_size = w if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Sampler: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    return rank, world_size


class _ShardedSampler(Sampler[int]):
    """Shared machinery: per-epoch global order → padded → this rank's shard; start offset."""

    def __init__(self, size: int, seed: int | None, rank: int | None, world_size: int | None,
                 infinite: bool) -> None:
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"{type(self).__name__}: dataset size must be a positive int, got {size!r}.")
        self._size = size
        self._rank, self._world_size = _resolve_rank(rank, world_size)
        self._seed = int(shared_random_seed() if seed is None else seed)
        self._infinite = bool(infinite)
        self._epoch = 0
        self._start = 0

    @property
    def seed(self) -> int:
        """The seed all permutations derive from."""
        return self._seed

    @property
    def infinite(self) -> bool:
        """Whether ``__iter__`` never ends (iteration-based training)."""
        return self._infinite

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (in infinite mode: the first pass of the stream)."""
        self._epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's stream on the next ``__iter__``."""
        if start < 0:
            raise ValueError(f"set_start expects a non-negative position, got {start}.")
        self._start = int(start)

    def _global_order(self, epoch: int) -> list[int]:
        raise NotImplementedError

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of ranks sharing the data."""
        return self._world_size

    def _shard(self, order: list[int], rank: int) -> list[int]:
        # Pad by wrapping around so every rank gets the same count (keeps DDP collectives aligned).
        n = len(order)
        per_rank = math.ceil(n / self._world_size)
        total = per_rank * self._world_size
        if total > n:
            order = order + (order * (total // max(n, 1) + 1))[: total - n]
        return order[rank:total:self._world_size]

    def epoch_indices(self, epoch: int, rank: int | None = None) -> list[int]:
        """The indices of ``rank`` (default: this rank) for one pass ``epoch`` (no start offset).

        Any rank's shard can be computed locally, because the global order depends only on
        ``(seed, epoch)``; loaders use this to agree on batch counts without communication.
        """
        return self._shard(self._global_order(epoch), self._rank if rank is None else int(rank))

    def __iter__(self) -> Iterator[int]:
        start = self._start
        if self._infinite:
            stream: Iterator[int] = itertools.chain.from_iterable(
                self.epoch_indices(e) for e in itertools.count(self._epoch)
            )
        else:
            stream = iter(self.epoch_indices(self._epoch))
        return itertools.islice(stream, start, None)

    def __len__(self) -> int:
        """Indices per rank in one epoch (the infinite stream repeats epochs of this length)."""
        return math.ceil(self._size / self._world_size)

    def state_dict(self) -> dict[str, int]:
        """``{seed, epoch, start}``."""
        return {"seed": self._seed, "epoch": self._epoch, "start": self._start}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore ``state_dict()`` output."""
        self._seed = int(state["seed"])
        self._epoch = int(state.get("epoch", 0))
        self._start = int(state.get("start", 0))


@SAMPLERS.register_module()
class TrainingSampler(_ShardedSampler):
    """Shuffled (or sequential) training indices; infinite by default, finite per epoch on request.

    Args:
        size: dataset length.
        shuffle: a fresh permutation per epoch from ``(seed, epoch)``.
        seed: shared by all ranks; ``None`` draws one on rank 0 and broadcasts it.
        rank, world_size: default to torch.distributed's.
        infinite: ``True`` for iteration-based training (the stream concatenates epochs 0, 1, ...),
            ``False`` for one epoch per ``__iter__`` (epoch-based runner; call ``set_epoch``).

    Example::

        >>> s = TrainingSampler(10, seed=0, infinite=False)
        >>> sorted(s) == list(range(10))
        True
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int | None = None, rank: int | None = None,
                 world_size: int | None = None, infinite: bool = True) -> None:
        super().__init__(size, seed, rank, world_size, infinite)
        self._shuffle = shuffle

    def _global_order(self, epoch: int) -> list[int]:
        if not self._shuffle:
            return list(range(self._size))
        g = torch.Generator()
        g.manual_seed(self._seed + 1_000_003 * int(epoch))
        return torch.randperm(self._size, generator=g).tolist()


@SAMPLERS.register_module()
class InferenceSampler(Sampler[int]):
    """Each index exactly once across ranks, in order: rank r gets one contiguous shard.

    Shards differ in size by at most one, so no sample is duplicated (duplicates would be
    counted twice by an evaluator).
    """

    def __init__(self, size: int, rank: int | None = None, world_size: int | None = None) -> None:
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"InferenceSampler: size must be a non-negative int, got {size!r}.")
        self._size = size
        self._rank, self._world_size = _resolve_rank(rank, world_size)
        self._local = self._shard_range(self._rank)
        self._start = 0
        self._epoch = 0

    def _shard_range(self, rank: int) -> range:
        sizes = [self._size // self._world_size + (1 if r < self._size % self._world_size else 0)
                 for r in range(self._world_size)]
        begin = sum(sizes[:rank])
        return range(begin, begin + sizes[rank])

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of ranks sharing the data."""
        return self._world_size

    @property
    def infinite(self) -> bool:
        """Always ``False``."""
        return False

    @property
    def seed(self) -> int:
        """Inference order does not depend on a seed; reported as 0."""
        return 0

    def set_epoch(self, epoch: int) -> None:
        """Accepted for interface symmetry; the order never changes."""
        self._epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's shard."""
        self._start = int(start)

    def epoch_indices(self, epoch: int, rank: int | None = None) -> list[int]:
        """The shard of ``rank`` (default: this rank)."""
        return list(self._local if rank is None else self._shard_range(int(rank)))

    def __iter__(self) -> Iterator[int]:
        return iter(self._local[self._start:])

    def __len__(self) -> int:
        return len(self._local)


def image_category_sets(dataset: Any) -> list[set[int]]:
    """The categories present in each image: from dataset dicts (``annotations[*].category_id``) or a
    dataset with ``get_cat_ids(idx)`` (kiln's CocoDataset/VOCDataset and their wrappers)."""
    if isinstance(dataset, Sequence) and (len(dataset) == 0 or isinstance(dataset[0], Mapping)):
        return [{ann["category_id"] for ann in d.get("annotations", [])} for d in dataset]
    if hasattr(dataset, "get_cat_ids"):
        return [set(dataset.get_cat_ids(i)) for i in range(len(dataset))]
    raise TypeError(
        f"Repeat factors need each image's categories, but {type(dataset).__name__} is neither a list of "
        "dataset dicts nor a dataset with get_cat_ids(idx); use CocoDataset/VOCDataset or dataset dicts.")


def repeat_factors_from_category_frequency(
    dataset_dicts: Any, repeat_thresh: float, sqrt: bool = True
) -> torch.Tensor:
    """Per-image repeat factor ``max over its categories of max(1, sqrt(t / f(c)))`` (LVIS paper).

    ``f(c)`` is the fraction of images containing category ``c``; ``t = repeat_thresh``;
    ``sqrt=False`` drops the square root (Detectron2's ``DATALOADER.REPEAT_SQRT``). Images without
    annotations get factor 1. ``dataset_dicts`` may also be a dataset with ``get_cat_ids``.
    """
    cat_sets = image_category_sets(dataset_dicts)
    category_freq: dict[int, float] = defaultdict(int)
    for cats in cat_sets:
        for cat_id in cats:
            category_freq[cat_id] += 1
    num_images = len(cat_sets)
    for k in category_freq:
        category_freq[k] = category_freq[k] / num_images
    category_rep = {c: max(1.0, math.sqrt(repeat_thresh / f) if sqrt else repeat_thresh / f)
                    for c, f in category_freq.items()}
    for c in sorted(category_rep):
        logger.info("Category %s: frequency %.2f, repeat factor %.2f", c, category_freq[c], category_rep[c])
    rep_factors = [max((category_rep[c] for c in cats), default=1.0) for cats in cat_sets]
    return torch.tensor(rep_factors, dtype=torch.float32)


@SAMPLERS.register_module()
class RepeatFactorTrainingSampler(_ShardedSampler):
    """Training sampler that repeats images with rare categories (stochastic rounding per epoch).

    Args:
        repeat_factors: float per image; factor 2.3 means the image appears 2 times plus once more
            with probability 0.3, redrawn each epoch from ``(seed, epoch)``.
        shuffle, seed, rank, world_size, infinite: as in :class:`TrainingSampler`.
    """

    def __init__(self, repeat_factors: Sequence[float] | torch.Tensor, shuffle: bool = True,
                 seed: int | None = None, rank: int | None = None, world_size: int | None = None,
                 infinite: bool = True) -> None:
        rf = torch.as_tensor(repeat_factors, dtype=torch.float32)
        if rf.dim() != 1 or len(rf) == 0 or bool((rf < 0).any()):
            raise ValueError("RepeatFactorTrainingSampler: repeat_factors must be a non-empty 1-D list of "
                             "non-negative floats (one per image).")
        super().__init__(len(rf), seed, rank, world_size, infinite)
        self._int_part = torch.trunc(rf)
        self._frac_part = rf - self._int_part
        self._shuffle = shuffle

    def _global_order(self, epoch: int) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self._seed + 1_000_003 * int(epoch))
        rands = torch.rand(len(self._frac_part), generator=g)
        reps = self._int_part + (rands < self._frac_part).float()
        indices = torch.repeat_interleave(torch.arange(len(reps)), reps.long())
        if self._shuffle:
            indices = indices[torch.randperm(len(indices), generator=g)]
        return indices.tolist()

    def __len__(self) -> int:
        """Expected indices per rank in one epoch (the actual count varies with the rounding)."""
        expected = float((self._int_part + self._frac_part).sum())
        return max(1, math.ceil(expected / self._world_size))

    @staticmethod
    def repeat_factors_from_category_frequency(dataset_dicts: Any, repeat_thresh: float, sqrt: bool = True
                                               ) -> torch.Tensor:
        """See :func:`repeat_factors_from_category_frequency`."""
        return repeat_factors_from_category_frequency(dataset_dicts, repeat_thresh, sqrt=sqrt)


@SAMPLERS.register_module()
class RandomSubsetTrainingSampler(_ShardedSampler):
    """Training on a fixed random ``subset_ratio`` of the dataset (Detectron2's sampler of that name,
    for accuracy-versus-data-size curves).

    The subset (``int(size * subset_ratio)`` images) is drawn once from ``seed_subset`` and each epoch
    shuffles it from ``(seed, epoch)``. Without ``seed_subset`` it derives from ``seed``, so a resumed
    run (which restores the seed) trains on the same subset.

    Args:
        size: dataset length.
        subset_ratio: in ``(0, 1]``.
        shuffle, seed, rank, world_size, infinite: as in :class:`TrainingSampler`
            (``seed_shuffle`` is Detectron2's name for ``seed``).
        seed_subset: the seed of the subset draw.
    """

    def __init__(self, size: int, subset_ratio: float, shuffle: bool = True, seed: int | None = None,
                 rank: int | None = None, world_size: int | None = None, infinite: bool = True, *,
                 seed_shuffle: int | None = None, seed_subset: int | None = None) -> None:
        if seed is not None and seed_shuffle is not None:
            raise ValueError("RandomSubsetTrainingSampler: give seed or seed_shuffle (the same thing), "
                             "not both.")
        super().__init__(size, seed if seed_shuffle is None else seed_shuffle, rank, world_size, infinite)
        if not 0.0 < float(subset_ratio) <= 1.0:
            raise ValueError(f"RandomSubsetTrainingSampler: subset_ratio must be in (0, 1], got "
                             f"{subset_ratio!r} (DATALOADER.RANDOM_SUBSET_RATIO).")
        self._size_subset = int(size * float(subset_ratio))
        if self._size_subset <= 0:
            raise ValueError(f"RandomSubsetTrainingSampler: subset_ratio={subset_ratio} of {size} images "
                             "keeps none; raise the ratio.")
        self._seed_subset = None if seed_subset is None else int(seed_subset)
        self._shuffle = shuffle
        self._subset_cache: tuple[int, torch.Tensor] | None = None
        logger.info("RandomSubsetTrainingSampler: %d of %d images.", self._size_subset, size)

    def subset(self) -> list[int]:
        """The dataset indices trained on (in draw order)."""
        return self._subset().tolist()

    def _subset(self) -> torch.Tensor:
        seed = self._seed_subset if self._seed_subset is not None else self._seed + 7_919
        if self._subset_cache is None or self._subset_cache[0] != seed:
            g = torch.Generator()
            g.manual_seed(seed)
            self._subset_cache = (seed, torch.randperm(self._size, generator=g)[: self._size_subset])
        return self._subset_cache[1]

    def _global_order(self, epoch: int) -> list[int]:
        subset = self._subset()
        if not self._shuffle:
            return subset.tolist()
        g = torch.Generator()
        g.manual_seed(self._seed + 1_000_003 * int(epoch))
        return subset[torch.randperm(self._size_subset, generator=g)].tolist()

    def __len__(self) -> int:
        """Subset indices per rank in one epoch."""
        return math.ceil(self._size_subset / self._world_size)


# Detectron2's training samplers by name -> the keyword arguments a loader dict may give them.
TRAINING_SAMPLER_KEYS: dict[str, tuple[str, ...]] = {
    "TrainingSampler": ("shuffle", "seed"),
    "RepeatFactorTrainingSampler": ("repeat_thresh", "sqrt", "shuffle", "seed"),
    "RandomSubsetTrainingSampler": ("subset_ratio", "shuffle", "seed", "seed_subset"),
}


def build_training_sampler(kind: str, args: Mapping[str, Any], dataset: Any, *, seed: int | None,
                           infinite: bool, where: str = "train_dataloader") -> _ShardedSampler:
    """One of Detectron2's training samplers from a loader dict's ``sampler=dict(type=kind, **args)``.

    ``RepeatFactorTrainingSampler`` takes ``repeat_thresh`` (and ``sqrt``, default True) and computes
    the repeat factors from the dataset's categories; ``RandomSubsetTrainingSampler`` takes
    ``subset_ratio``. ``seed`` in ``args`` overrides the run's ``seed``.
    """
    if kind not in TRAINING_SAMPLER_KEYS:
        raise ValueError(f"{where}.sampler type={kind!r} is not one of {sorted(TRAINING_SAMPLER_KEYS)}.")
    args = dict(args)
    unknown = sorted(set(args) - set(TRAINING_SAMPLER_KEYS[kind]))
    if unknown:
        raise ValueError(f"{where}.sampler: {kind} does not take {unknown}; it takes "
                         f"{list(TRAINING_SAMPLER_KEYS[kind])}.")
    run_seed = args.pop("seed", seed)
    shuffle = bool(args.pop("shuffle", True))
    if kind == "TrainingSampler":
        return TrainingSampler(len(dataset), shuffle=shuffle, seed=run_seed, infinite=infinite)
    if kind == "RepeatFactorTrainingSampler":
        if "repeat_thresh" not in args:
            raise ValueError(f"{where}.sampler: RepeatFactorTrainingSampler needs repeat_thresh= "
                             "(DATALOADER.REPEAT_THRESHOLD, e.g. 0.001 for LVIS).")
        factors = repeat_factors_from_category_frequency(dataset, float(args["repeat_thresh"]),
                                                         sqrt=bool(args.get("sqrt", True)))
        return RepeatFactorTrainingSampler(factors, shuffle=shuffle, seed=run_seed, infinite=infinite)
    if "subset_ratio" not in args:
        raise ValueError(f"{where}.sampler: RandomSubsetTrainingSampler needs subset_ratio= "
                         "(DATALOADER.RANDOM_SUBSET_RATIO, in (0, 1]).")
    return RandomSubsetTrainingSampler(len(dataset), float(args["subset_ratio"]), shuffle=shuffle,
                                       seed=run_seed, infinite=infinite, seed_subset=args.get("seed_subset"))


