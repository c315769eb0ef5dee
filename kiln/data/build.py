"""Data loaders: ``build_train_loader`` / ``build_test_loader`` returning a resumable loader.

How exact resume works (the contract in docs/architecture.md):

* The main process turns the sampler's index stream into batches of ``(position, index)`` pairs.
  Only index arithmetic happens here, so skipping to batch ``k`` never reads or decodes data.
* A batch of pairs goes to one worker (``batch_size=None`` in the torch ``DataLoader``), which
  produces each sample under python/numpy/torch RNGs seeded from ``(seed, rank, epoch, position)``
  and restores the previous RNG states afterwards. Augmentations therefore depend only on where
  a sample is in the stream, not on the worker count or on what ran before.
* The torch ``DataLoader`` gets its own ``torch.Generator``, so iterating never draws from the
  global torch RNG (model-side randomness after a resume matches an uninterrupted run).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.data as torchdata

from kiln.registry import DATA_LOADERS
from kiln.utils.rng import preserved_rngs, seed_cpu_rngs

from .common import DatasetFromList, MapDataset
from .samplers import InferenceSampler, TrainingSampler, get_dist_info

logger = logging.getLogger(__name__)

__all__ = [
    "ResumableLoader",
    "build_train_loader",
    "build_test_loader",
    "build_dataloader",
    "trivial_batch_collator",
    "sample_seed",
    "seeded_rngs",
]


def trivial_batch_collator(batch: list[Any]) -> list[Any]:
    """Collate that keeps the batch a list of per-image dicts (no stacking)."""
    return batch


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    # One round of splitmix64: a cheap, well-mixed 64-bit hash (numpy's SeedSequence costs ~75 µs).
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, rank: int, epoch: int, position: int) -> int:
    """The 32-bit seed of the sample at ``position`` of ``rank``'s stream in ``epoch``."""
    h = _splitmix64(int(seed) & _MASK64)
    for v in (rank, epoch, position):
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h & 0xFFFFFFFF


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python ``random``, numpy's global RNG and torch's CPU RNG; restore all three on exit."""
    with preserved_rngs():
        seed_cpu_rngs(seed)
        yield


class _SeededBatchDataset(torchdata.Dataset):
    """Produces a whole batch from a key ``(seed, rank, epoch, ((position, index), ...))``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple) -> list[Any]:
        seed, rank, epoch, entries = key
        # In a worker process the global RNGs belong to us; in the main process (num_workers=0)
        # they are the user's and are restored, once per batch (saving numpy's state is ~0.5 ms).
        in_worker = torchdata.get_worker_info() is not None
        with contextlib.nullcontext() if in_worker else preserved_rngs():
            out = []
            for position, index in entries:
                seed_cpu_rngs(sample_seed(seed, rank, epoch, position))
                out.append(self.dataset[index])
        return out


def _aspect_ratio_flags(dataset: Any) -> np.ndarray:
    """0/1 per sample (1 = wider than tall), read from metadata only (no image decoding)."""
    ds = dataset
    while True:
        if hasattr(ds, "flag"):
            return np.asarray(ds.flag, dtype=np.int64)
        if isinstance(ds, MapDataset):
            ds = ds.dataset
            continue
        break
    if isinstance(ds, (DatasetFromList, list)):
        flags = []
        for i in range(len(ds)):
            d = ds[i]
            if not isinstance(d, dict) or "width" not in d or "height" not in d:
                raise ValueError(
                    "aspect_ratio_grouping=True needs 'width' and 'height' in every dataset dict "
                    f"(item {i} has keys {sorted(d) if isinstance(d, dict) else type(d).__name__}). "
                    "Add them, or set aspect_ratio_grouping=False."
                )
            flags.append(1 if d["width"] > d["height"] else 0)
        return np.asarray(flags, dtype=np.int64)
    raise ValueError(
        f"aspect_ratio_grouping=True: cannot tell the aspect ratios of {type(dataset).__name__} without "
        "decoding images. Give the dataset a `flag` array (0/1 per sample, 1 = width > height), use "
        "dataset dicts with width/height, or set aspect_ratio_grouping=False."
    )


class _BatchKeys(torchdata.Sampler):
    """Yields the batch keys of the loader's current epoch, starting at its current position."""

    def __init__(self, loader: ResumableLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[tuple]:
        ld = self.loader
        epoch, start = ld._epoch, ld._start
        for i, entries in enumerate(ld._batches(epoch)):
            if i >= start:
                yield (ld.seed, ld.rank, epoch, entries)

    def __len__(self) -> int:
        return len(self.loader)


def _leave_signals_to_the_main_process(worker_id: int) -> None:
    """Loader workers ignore SIGINT: Ctrl-C signals the whole foreground process group, and the main
    process turns it into a checkpoint-and-stop (kiln.engine.preemption), which needs its workers
    alive until then; it shuts them down itself. (SIGTERM keeps its default action: it is how the
    main process terminates workers that do not exit in time.)"""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ResumableLoader:
    """An iterable of batches (lists of per-image dicts) whose position can be saved and restored.

    Build it with :func:`build_train_loader` / :func:`build_test_loader`. The loader is a position
    in a stream: ``iter()`` continues from the current ``(epoch, start)``; each yielded batch
    advances ``start``; finishing an epoch (finite mode) moves to ``epoch + 1, start 0``, so
    calling ``set_epoch`` every epoch is allowed but not required.

    Args:
        dataset: map-style dataset (``dataset[i]`` is one finished sample).
        sampler: an index sampler with ``set_epoch``, ``set_start``, ``epoch_indices`` and
            ``infinite``/``seed`` (:class:`TrainingSampler`, :class:`InferenceSampler`, ...).
        batch_size: images per batch on this rank.
        num_workers: data-loading processes (0 = in the main process).
        aspect_ratio_grouping: batch only images of the same orientation (needs metadata).
        drop_last: drop the last incomplete batch of an epoch (finite mode).
        collate_fn: applied to the list of samples of a batch; default keeps the list.
        pin_memory: put batches in pinned (page-locked) host memory, so copies to a GPU can run
            asynchronously (the runner turns this on when the run is on CUDA).
        persistent_workers: keep the worker processes between epochs (MMEngine's
            ``persistent_workers``). Off by default: a fresh fork per epoch is cheap and shutting
            persistent workers down costs ~5 s each (join timeout). Exactness does not depend on it
            (every sample is produced under seeds from its stream position). With ``num_workers=0``
            there are no workers to keep, so it has nothing to do.
    """

    def __init__(self, dataset: Any, sampler: Any, batch_size: int, num_workers: int = 0,
                 aspect_ratio_grouping: bool = False, drop_last: bool = False,
                 collate_fn: Callable[[list[Any]], Any] | None = None, pin_memory: bool = False,
                 persistent_workers: bool = False) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        for attr in ("set_epoch", "epoch_indices"):
            if not hasattr(sampler, attr):
                raise TypeError(
                    f"ResumableLoader needs a kiln sampler with '{attr}' (TrainingSampler, InferenceSampler, "
                    f"RepeatFactorTrainingSampler); got {type(sampler).__name__}. Wrap other samplers in a "
                    "plain torch DataLoader instead (resume then replays batches)."
                )
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = batch_size
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        self.infinite = bool(getattr(sampler, "infinite", False))
        self.seed = int(getattr(sampler, "seed", 0))
        self.rank = int(getattr(sampler, "rank", 0))
        self._flags = _aspect_ratio_flags(dataset) if aspect_ratio_grouping else None
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self._epoch = 0
        self._start = 0
        self._len_cache: dict[int, int] = {}
        self._collate = collate_fn or trivial_batch_collator
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        self._torch_loader = torchdata.DataLoader(
            _SeededBatchDataset(dataset),
            batch_size=None,
            sampler=_BatchKeys(self),
            num_workers=self.num_workers,
            collate_fn=self._collate,
            generator=generator,
            persistent_workers=bool(persistent_workers) and self.num_workers > 0,
            pin_memory=pin_memory,
            worker_init_fn=_leave_signals_to_the_main_process if self.num_workers > 0 else None,
        )

    # ------------------------------------------------------------------ batching
    def _index_stream(self, epoch: int, rank: int) -> Iterator[int]:
        s = self.sampler
        if self.infinite:
            e = epoch
            while True:
                yield from s.epoch_indices(e, rank)
                e += 1
        else:
            yield from s.epoch_indices(epoch, rank)

    def _rank_batches(self, epoch: int, rank: int) -> Iterator[tuple[tuple[int, int], ...]]:
        """Batches of ``rank`` in ``epoch`` as tuples of ``(position, dataset index)``."""
        bs = self.batch_size
        stream = enumerate(self._index_stream(epoch, rank))
        if self._flags is None:
            batch: list[tuple[int, int]] = []
            for pos, idx in stream:
                batch.append((pos, idx))
                if len(batch) == bs:
                    yield tuple(batch)
                    batch = []
            if batch and not self.drop_last:
                yield tuple(batch)
            return
        buckets: list[list[tuple[int, int]]] = [[], []]
        for pos, idx in stream:
            b = buckets[int(self._flags[idx])]
            b.append((pos, idx))
            if len(b) == bs:
                yield tuple(b)
                b.clear()
        if not self.drop_last:
            for b in buckets:
                if b:
                    yield tuple(b)

    def _batches(self, epoch: int) -> Iterator[tuple[tuple[int, int], ...]]:
        """This rank's batches of ``epoch``.

        With aspect-ratio grouping in finite mode, ranks could end an epoch with different batch
        counts, and DDP would hang on the unmatched all-reduce. Every rank therefore computes all
        ranks' counts (the global order is a function of seed and epoch, so no communication is
        needed) and truncates (``drop_last``) or pads by repeating its own batches (with fresh
        positions, hence fresh augmentation) to the common count.
        """
        world = int(getattr(self.sampler, "world_size", 1))
        if self.infinite or self._flags is None or world == 1:
            yield from self._rank_batches(epoch, self.rank)
            return
        counts = [sum(1 for _ in self._rank_batches(epoch, r)) for r in range(world)]
        target = min(counts) if self.drop_last else max(counts)
        mine = list(self._rank_batches(epoch, self.rank))
        yield from mine[:target]
        if not mine:
            return
        n_positions = 1 + max(pos for b in mine for pos, _ in b)
        for i in range(len(mine), target):
            cycle, j = divmod(i, len(mine))
            yield tuple((pos + cycle * n_positions, idx) for pos, idx in mine[j])

    # ------------------------------------------------------------------ public API
    @property
    def pin_memory(self) -> bool:
        """Whether batches come in pinned host memory (takes effect at the next ``iter()``)."""
        return bool(self._torch_loader.pin_memory)

    @pin_memory.setter
    def pin_memory(self, value: bool) -> None:
        # torch reads the flag when an iterator is created, so this applies from the next epoch on.
        self._torch_loader.pin_memory = bool(value)

    def __len__(self) -> int:
        """Batches per epoch (finite mode); for an infinite loader, batches per pass over the data."""
        if self.infinite:
            n = len(self.sampler)
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if self._epoch not in self._len_cache:
            self._len_cache[self._epoch] = sum(1 for _ in self._batches(self._epoch))
        return self._len_cache[self._epoch]

    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to."""
        return self._epoch

    @property
    def start(self) -> int:
        """Batches of the current epoch already consumed (the next batch's index)."""
        return self._start

    def set_epoch(self, epoch: int) -> None:
        """Iterate epoch ``epoch`` on the next ``iter()`` (its shuffle order and sample seeds)."""
        if int(epoch) != self._epoch:
            self._epoch = int(epoch)
            self._start = 0

    def set_start(self, batches_done: int) -> None:
        """Start the next ``iter()`` at batch ``batches_done`` of the epoch, without decoding the skipped."""
        if batches_done < 0:
            raise ValueError(f"set_start expects a non-negative batch count, got {batches_done}.")
        self._start = int(batches_done)

    def state_dict(self) -> dict[str, int]:
        """``{seed, epoch, start}``: enough to continue the stream exactly."""
        return {"seed": self.seed, "epoch": self._epoch, "start": self._start}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a ``state_dict()``, seed included (the order and augmentation derive from it)."""
        seed = int(state["seed"])
        if seed != self.seed:
            # A resumed run may have drawn a different random seed; the checkpoint's wins, since
            # continuing the saved stream exactly is the point of resuming.
            logger.info("ResumableLoader: using the checkpoint's seed %d instead of %d.", seed, self.seed)
            self.seed = seed
            if hasattr(self.sampler, "_seed"):
                self.sampler._seed = seed
            self._len_cache.clear()
        self._epoch = int(state.get("epoch", 0))
        self._start = int(state.get("start", 0))

    def __iter__(self) -> Iterator[Any]:
        epoch = self._epoch
        for batch in self._torch_loader:
            self._start += 1
            yield batch
        if not self.infinite and self._epoch == epoch:
            # A finished epoch moves the stream on, so a plain `for epoch: for batch in loader` loop
            # never repeats an order and a checkpoint taken now resumes at the next epoch.
            self._epoch = epoch + 1
            self._start = 0

    def __repr__(self) -> str:
        return (f"ResumableLoader(batch_size={self.batch_size}, num_workers={self.num_workers}, "
                f"infinite={self.infinite}, seed={self.seed}, epoch={self._epoch}, start={self._start})")


def _as_dataset(dataset: Any, mapper: Callable | None) -> Any:
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper)
    return dataset


@DATA_LOADERS.register_module()
def build_train_loader(
    dataset: Any,
    *,
    mapper: Callable | None = None,
    total_batch_size: int,
    num_workers: int = 0,
    sampler: Any = None,
    aspect_ratio_grouping: bool = False,
    seed: int | None = None,
    infinite: bool = False,
    drop_last: bool = True,
    collate_fn: Callable | None = None,
    shuffle: bool = True,
    pin_memory: bool = False,
) -> ResumableLoader:
    """Build the training loader of this rank.

    Args:
        dataset: a list of dataset dicts or a map-style dataset.
        mapper: applied to each item (e.g. ``DatasetMapper``); ``None`` when the dataset already
            returns finished samples (MM-style datasets with a pipeline).
        total_batch_size: images per step summed over all ranks (must divide by world size).
        num_workers: loader processes per rank.
        sampler: default ``TrainingSampler(len(dataset), seed=seed, infinite=infinite)``.
        aspect_ratio_grouping: batch landscape and portrait images separately.
        seed: the run's seed (same on all ranks); ``None`` draws a shared random one.
        infinite: iteration-based training (one endless stream) vs. epochs.
        drop_last: drop an incomplete last batch per epoch.
        collate_fn: default keeps the list of per-image dicts.
        pin_memory: batches in pinned host memory (for asynchronous copies to a GPU; a runner on
            CUDA turns it on by itself).

    Example::

        >>> loader = build_train_loader(dicts, mapper=mapper, total_batch_size=4, seed=0)
        >>> loader.set_epoch(3); loader.set_start(10)   # resume at batch 10 of epoch 3
    """
    _, world_size = get_dist_info()
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise ValueError(
            f"total_batch_size ({total_batch_size}) must be a positive multiple of the world size "
            f"({world_size}); set e.g. "
            f"total_batch_size={max(1, total_batch_size // world_size) * world_size}."
        )
    dataset = _as_dataset(dataset, mapper)
    if sampler is None:
        sampler = TrainingSampler(len(dataset), shuffle=shuffle, seed=seed, infinite=infinite)
    return ResumableLoader(dataset, sampler, total_batch_size // world_size, num_workers=num_workers,
                           aspect_ratio_grouping=aspect_ratio_grouping, drop_last=drop_last,
                           collate_fn=collate_fn, pin_memory=pin_memory)


@DATA_LOADERS.register_module()
def build_test_loader(
    dataset: Any,
    *,
    mapper: Callable | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    sampler: Any = None,
    collate_fn: Callable | None = None,
    pin_memory: bool = False,
) -> ResumableLoader:
    """Build an inference loader: every sample exactly once across ranks, in order, no dropping.

    ``pin_memory``: batches in pinned host memory (for asynchronous copies to a GPU).
    """
    dataset = _as_dataset(dataset, mapper)
    if sampler is None:
        sampler = InferenceSampler(len(dataset))
    return ResumableLoader(dataset, sampler, batch_size, num_workers=num_workers, drop_last=False,
                           collate_fn=collate_fn, pin_memory=pin_memory)


@DATA_LOADERS.register_module()
def build_dataloader(
    dataset: Any,
    samples_per_gpu: int = 1,
    workers_per_gpu: int = 0,
    num_gpus: int = 1,
    dist: bool = True,
    shuffle: bool = True,
    seed: int | None = None,
    runner_type: str = "EpochBasedRunner",
    imgs_per_gpu: int | None = None,
    **kwargs: Any,
) -> ResumableLoader:
    """MM-style builder (``data=dict(samples_per_gpu=2, workers_per_gpu=2, ...)``).

    Training loaders (``shuffle=True``) group by ``dataset.flag`` when the dataset has one (MM's
    GroupSampler) and are infinite for ``runner_type='IterBasedRunner'``; ``shuffle=False`` gives
    an in-order inference loader. ``imgs_per_gpu`` is the old name of ``samples_per_gpu``.
    """
    if imgs_per_gpu is not None:
        samples_per_gpu = imgs_per_gpu
    if kwargs:
        unknown = sorted(kwargs)
        raise TypeError(f"build_dataloader: unsupported arguments {unknown}; supported: samples_per_gpu, "
                        "workers_per_gpu, num_gpus, dist, shuffle, seed, runner_type.")
    _, world_size = get_dist_info()
    per_rank = samples_per_gpu if dist else samples_per_gpu * num_gpus
    workers = workers_per_gpu if dist else workers_per_gpu * num_gpus
    if not shuffle:
        return build_test_loader(dataset, batch_size=per_rank, num_workers=workers)
    return build_train_loader(
        dataset, total_batch_size=per_rank * world_size, num_workers=workers, seed=seed,
        aspect_ratio_grouping=hasattr(dataset, "flag"), infinite=runner_type == "IterBasedRunner",
        drop_last=False,
    )
