"""``build_dataloader_from_cfg``: an MMEngine dataloader dict (``train_dataloader=dict(...)``) → a
:class:`~kiln.data.build.ResumableLoader`.

MMEngine builds a torch ``DataLoader`` from the dict; kiln builds its resumable loader instead
(docs/architecture.md "Data loaders and exact resume"), reading every key the dict may have:

* ``batch_size`` (per GPU), ``num_workers``, ``persistent_workers``, ``pin_memory``, ``drop_last``;
* ``sampler``: ``DefaultSampler(shuffle, seed, round_up)`` or ``InfiniteSampler(shuffle, seed)``;
  Detectron2's ``TrainingSampler``, ``RepeatFactorTrainingSampler(repeat_thresh, sqrt)`` and
  ``RandomSubsetTrainingSampler(subset_ratio, seed_subset)`` for training, ``InferenceSampler`` for
  evaluation (:func:`~kiln.data.samplers.build_training_sampler`);
* ``batch_sampler``: ``AspectRatioBatchSampler(drop_last)`` (landscape and portrait images batched
  apart, from dataset metadata, as MMDetection's);
* ``collate_fn``: ``pseudo_collate`` (the default: a batch is the list of per-image samples, kiln's
  batch contract) or a callable; ``default_collate`` is refused (it stacks samples into tensors,
  which kiln's models do not take);
* ``dataset``: already built by the caller.

A key outside these is an error naming it; a sampler that cannot mean what it says in this loop
(an ``InfiniteSampler`` in an epoch-based loop, a shuffled evaluation loader) is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .build import ResumableLoader
from .samplers import (
    TRAINING_SAMPLER_KEYS,
    InferenceSampler,
    TrainingSampler,
    build_training_sampler,
    get_dist_info,
)

__all__ = ["build_dataloader_from_cfg", "LOADER_KEYS"]

LOADER_KEYS = ("batch_size", "num_workers", "persistent_workers", "pin_memory", "drop_last", "sampler",
               "batch_sampler", "collate_fn", "dataset")
_SAMPLER_KEYS = {"DefaultSampler": ("shuffle", "seed", "round_up"), "InfiniteSampler": ("shuffle", "seed")}
_BATCH_SAMPLER_KEYS = {"AspectRatioBatchSampler": ("drop_last",)}


def _type_name(value: Any) -> Any:
    return value if isinstance(value, str) or value is None else getattr(value, "__name__", value)


def _read_sampler(cfg: Any, where: str) -> tuple[str, dict[str, Any]]:
    if cfg is None:
        return "DefaultSampler", {}
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{where}.sampler must be a dict like dict(type='DefaultSampler', shuffle=True), got "
                        f"{type(cfg).__name__}")
    args = dict(cfg)
    kind = _type_name(args.pop("type", "DefaultSampler"))
    if kind in TRAINING_SAMPLER_KEYS:  # Detectron2's: their arguments are checked when built
        return kind, args
    if kind == "InferenceSampler":
        if args:
            raise ValueError(f"{where}.sampler: InferenceSampler takes no arguments, got {sorted(args)}.")
        return kind, args
    if kind not in _SAMPLER_KEYS:
        raise ValueError(f"{where}.sampler type={kind!r}: kiln's resumable loaders take "
                         f"{sorted(_SAMPLER_KEYS)} (the MMEngine samplers), Detectron2's "
                         f"{sorted(TRAINING_SAMPLER_KEYS)} and InferenceSampler; other samplers cannot "
                         "resume exactly.")
    unknown = sorted(set(args) - set(_SAMPLER_KEYS[kind]))
    if unknown:
        raise ValueError(f"{where}.sampler: {kind} does not take {unknown}; it takes "
                         f"{list(_SAMPLER_KEYS[kind])}.")
    return kind, args


def _read_batch_sampler(cfg: Any, where: str) -> dict[str, Any] | None:
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{where}.batch_sampler must be a dict like dict(type='AspectRatioBatchSampler'), "
                        f"got {type(cfg).__name__}")
    args = dict(cfg)
    kind = _type_name(args.pop("type", None))
    if kind not in _BATCH_SAMPLER_KEYS:
        raise ValueError(f"{where}.batch_sampler type={kind!r}: kiln implements "
                         f"{sorted(_BATCH_SAMPLER_KEYS)} only.")
    unknown = sorted(set(args) - set(_BATCH_SAMPLER_KEYS[kind]))
    if unknown:
        raise ValueError(f"{where}.batch_sampler: {kind} does not take {unknown}; it takes "
                         f"{list(_BATCH_SAMPLER_KEYS[kind])}.")
    return args


def _read_collate(cfg: Any, where: str) -> Callable | None:
    if cfg is None or callable(cfg) and not isinstance(cfg, Mapping):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{where}.collate_fn must be dict(type='pseudo_collate') or a callable, got {cfg!r}")
    args = dict(cfg)
    kind = _type_name(args.pop("type", None))
    if args:
        raise ValueError(f"{where}.collate_fn: {kind} takes no arguments, got {sorted(args)}.")
    if kind == "pseudo_collate":
        return None  # the loader's default: the batch is the list of per-image samples
    if kind == "default_collate":
        raise ValueError(f"{where}.collate_fn=default_collate stacks the samples of a batch into tensors; "
                         "kiln's models take a batch as a list of per-image samples (and images of "
                         "different sizes cannot be stacked). Use dict(type='pseudo_collate') or remove "
                         "collate_fn.")
    raise ValueError(f"{where}.collate_fn type={kind!r}: kiln implements 'pseudo_collate' (and refuses "
                     "'default_collate'); pass a callable for anything else.")


def _as_int(value: Any, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}.{key} must be an int >= {minimum}, got {value!r}")
    return value


def build_dataloader_from_cfg(
    loader_cfg: Mapping[str, Any],
    dataset: Any,
    *,
    training: bool,
    infinite: bool = False,
    seed: int | None = None,
    where: str = "train_dataloader",
    aspect_ratio_grouping: bool | None = None,
) -> ResumableLoader:
    """Build this rank's loader from an MMEngine dataloader dict (see the module docstring).

    Args:
        loader_cfg: ``dict(batch_size=2, num_workers=2, sampler=dict(...), ...)``; its ``dataset`` entry
            is ignored (``dataset`` is the built one).
        dataset: the built map-style dataset.
        training: a training loader (shuffled by default, seeded, possibly infinite) or an evaluation
            loader (every image once, in order: :class:`InferenceSampler`).
        infinite: iteration-based training (one endless stream; MMEngine restarts a
            ``DefaultSampler`` epoch after epoch, ``InfiniteSampler`` never ends).
        seed: the run's seed; ``sampler.seed`` overrides it (``None`` draws one shared by ranks).
        where: the config key, for errors.
        aspect_ratio_grouping: force grouping on/off; ``None`` groups exactly when
            ``batch_sampler=dict(type='AspectRatioBatchSampler')`` says so.

    Example::

        >>> loader = build_dataloader_from_cfg(cfg.train_dataloader, ds, training=True,  # doctest: +SKIP
        ...                                    infinite=False, seed=0, where='train_dataloader')
        >>> loader.set_epoch(3); loader.set_start(10)   # resume at batch 10 of epoch 3  # doctest: +SKIP
    """
    if not isinstance(loader_cfg, Mapping):
        raise TypeError(f"{where} must be a dict like dict(batch_size=2, num_workers=2, dataset=...), got "
                        f"{type(loader_cfg).__name__}")
    unknown = sorted(k for k in loader_cfg if k not in LOADER_KEYS)
    if unknown:
        raise KeyError(f"{where} has keys kiln's loader does not take: {unknown}. Rule: an MMEngine "
                       f"dataloader dict may have {', '.join(LOADER_KEYS)}; a misspelled or unsupported "
                       "key is refused rather than ignored.")
    batch_size = _as_int(loader_cfg.get("batch_size", 1), "batch_size", where, 1)
    num_workers = _as_int(loader_cfg.get("num_workers", 0), "num_workers", where, 0)
    drop_last = bool(loader_cfg.get("drop_last", False))
    kind, sampler_args = _read_sampler(loader_cfg.get("sampler"), where)
    batch_args = _read_batch_sampler(loader_cfg.get("batch_sampler"), where)
    collate_fn = _read_collate(loader_cfg.get("collate_fn"), where)
    if batch_args is not None:
        drop_last = drop_last or bool(batch_args.get("drop_last", False))
    grouping = (batch_args is not None) if aspect_ratio_grouping is None else bool(aspect_ratio_grouping)
    shuffle = bool(sampler_args.get("shuffle", True))
    _, world_size = get_dist_info()
    if training and kind == "InferenceSampler":
        raise ValueError(f"{where}.sampler=InferenceSampler visits every image once, in order: it is for "
                         "evaluation loaders. Train with dict(type='TrainingSampler') or 'DefaultSampler'.")
    if not training and kind in TRAINING_SAMPLER_KEYS:
        raise ValueError(f"{where}.sampler={kind} is a training sampler; an evaluation loader visits every "
                         "image once: use dict(type='InferenceSampler') or DefaultSampler(shuffle=False).")
    if training and kind in TRAINING_SAMPLER_KEYS:
        sampler: Any = build_training_sampler(kind, sampler_args, dataset, seed=seed, infinite=infinite,
                                              where=where)
    elif training:
        if kind == "InfiniteSampler" and not infinite:
            raise ValueError(f"{where}.sampler=InfiniteSampler never ends an epoch, and this run's train "
                             "loop is epoch-based; use dict(type='DefaultSampler', shuffle=True), or an "
                             "iteration-based loop (train_cfg=dict(type='IterBasedTrainLoop', "
                             "max_iters=...)).")
        if sampler_args.get("round_up") is False and world_size > 1:
            raise ValueError(f"{where}.sampler round_up=False: kiln's training sampler always pads the index "
                             "list so every rank gets the same number of samples (unequal shards hang DDP); "
                             "remove round_up.")
        run_seed = sampler_args.get("seed", seed)
        sampler = TrainingSampler(len(dataset), shuffle=shuffle, seed=run_seed, infinite=infinite)
    else:
        if kind == "InfiniteSampler":
            raise ValueError(f"{where}.sampler=InfiniteSampler: an evaluation loader must end; use "
                             "dict(type='DefaultSampler', shuffle=False).")
        if "shuffle" in sampler_args and shuffle:
            raise ValueError(f"{where}.sampler shuffle=True: kiln's evaluation loaders visit every image "
                             "once, in order (metrics do not depend on the order); set shuffle=False.")
        # round_up pads evaluation shards in MMEngine and the metric drops the padding again; kiln's
        # InferenceSampler never pads, which gives the same metrics either way.
        sampler = InferenceSampler(len(dataset))
    return ResumableLoader(
        dataset, sampler, batch_size, num_workers=num_workers, aspect_ratio_grouping=grouping,
        drop_last=drop_last, collate_fn=collate_fn, pin_memory=bool(loader_cfg.get("pin_memory", False)),
        persistent_workers=bool(loader_cfg.get("persistent_workers", False)),
    )
