"""Detectron2-style entry points: loaders built from a ``CfgNode``-like config and catalog names.

``build_detection_train_loader(cfg, mapper=None)`` reads ``cfg.DATASETS.TRAIN``,
``cfg.SOLVER.IMS_PER_BATCH``, ``cfg.DATALOADER.{NUM_WORKERS, ASPECT_RATIO_GROUPING,
FILTER_EMPTY_ANNOTATIONS, SAMPLER_TRAIN, REPEAT_THRESHOLD, REPEAT_SQRT, RANDOM_SUBSET_RATIO}`` and
``cfg.SEED``, and returns the
same :class:`~kiln.data.build.ResumableLoader` as :func:`~kiln.data.build.build_train_loader`
(infinite, as Detectron2's iteration-based training expects). Config is read here, at the edge;
everything below takes plain arguments.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kiln.utils import cfg_lookup as _cfg

from .build import ResumableLoader, build_test_loader, build_train_loader
from .catalog import DatasetCatalog, MetadataCatalog
from .samplers import TRAINING_SAMPLER_KEYS, build_training_sampler

logger = logging.getLogger(__name__)

__all__ = ["get_detection_dataset_dicts", "build_detection_train_loader", "build_detection_test_loader"]

def get_detection_dataset_dicts(names: str | Sequence[str], filter_empty: bool = True, min_keypoints: int = 0,
                                proposal_files: Sequence[str] | None = None, check_consistency: bool = True
                                ) -> list[dict]:
    """Concatenate the dataset dicts of catalog datasets; optionally drop images without objects.

    Datasets listed together must agree on ``thing_classes`` (their labels would clash otherwise;
    ``check_consistency=False`` skips the check, as in Detectron2). "Without objects" means no
    annotation with ``iscrowd == 0``. ``proposal_files`` (one per name; Detectron2's, MMDetection 2.x or
    3.x layout) attach each image's precomputed proposals as ``proposal_boxes`` (XYXY, best first),
    ``proposal_objectness_logits`` and ``proposal_bbox_mode``, as Detectron2's
    ``load_proposals_into_dataset`` does. ``min_keypoints`` > 0 is refused: kiln has no keypoints.
    """
    if min_keypoints:
        raise ValueError(f"get_detection_dataset_dicts: min_keypoints={min_keypoints}: kiln has no "
                         "keypoint annotations or heads; leave it 0 "
                         "(MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE).")
    if isinstance(names, str):
        names = [names]
    if proposal_files and len(proposal_files) != len(names):
        raise ValueError(f"get_detection_dataset_dicts: {len(proposal_files)} proposal files for "
                         f"{len(names)} datasets {list(names)}; give one per dataset "
                         "(DATASETS.PROPOSAL_FILES_TRAIN/TEST next to DATASETS.TRAIN/TEST).")
    if len(names) == 0:
        raise ValueError("get_detection_dataset_dicts: no dataset names given (cfg.DATASETS.TRAIN is empty).")
    per_name = [DatasetCatalog.get(n) for n in names]
    if proposal_files:
        per_name = [_with_proposals(dicts, path, name)
                    for dicts, path, name in zip(per_name, proposal_files, names)]
    for name, dicts in zip(names, per_name):
        if len(dicts) == 0:
            raise ValueError(f"Dataset '{name}' is empty.")
    classes = {n: MetadataCatalog.get(n).get("thing_classes") for n in names}
    known = {n: c for n, c in classes.items() if c is not None}
    if check_consistency and len({tuple(c) for c in known.values()}) > 1:
        raise ValueError(f"Datasets {list(names)} have different thing_classes {known}; labels would mix. "
                         "Train on datasets with the same classes, or remap them first.")
    dicts = list(itertools.chain.from_iterable(per_name))
    if filter_empty:
        before = len(dicts)
        dicts = [d for d in dicts if any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", []))]
        if len(dicts) < before:
            logger.info("Removed %d images without usable annotations; %d left.", before - len(dicts),
                        len(dicts))
        if not dicts:
            raise ValueError(f"No image of {list(names)} has a non-crowd annotation; set "
                             "DATALOADER.FILTER_EMPTY_ANNOTATIONS False or check the annotations.")
    return dicts


def _with_proposals(dicts: list[dict], path: str, name: str) -> list[dict]:
    """Copies of ``dicts`` carrying the proposals ``path`` holds for them (matched by image id)."""
    import numpy as np

    from .datasets.proposals import load_proposals

    infos = [{"id": d.get("image_id"), "filename": d.get("file_name", "")} for d in dicts]
    arrays = load_proposals(path, infos, owner=f"dataset '{name}'")
    out = []
    for d, a in zip(dicts, arrays):
        a = np.asarray(a, dtype=np.float32).reshape(len(a), -1)
        # the reader gives scores (sigmoid of Detectron2's logits, MMDetection's scores): back to logits
        p = np.clip(a[:, 4], 1e-7, 1 - 1e-7) if a.shape[1] > 4 else np.full(len(a), 0.5, np.float32)
        d = dict(d, proposal_boxes=a[:, :4], proposal_bbox_mode=0,
                 proposal_objectness_logits=(np.log(p) - np.log1p(-p)).astype(np.float32))
        out.append(d)
    return out


def _proposal_files(cfg: Any, key: str) -> Any:
    return _cfg(cfg, f"DATASETS.{key}") if bool(_cfg(cfg, "MODEL.LOAD_PROPOSALS", False)) else None


def _default_mapper(cfg: Any, is_train: bool) -> Callable:
    from .mapper import DatasetMapper

    return DatasetMapper.from_config(cfg, is_train)


def _sampler_from_cfg(cfg: Any, dataset: Any, seed: int | None) -> Any:
    """``DATALOADER.SAMPLER_TRAIN`` with ``REPEAT_THRESHOLD``/``REPEAT_SQRT`` or ``RANDOM_SUBSET_RATIO``."""
    name = _cfg(cfg, "DATALOADER.SAMPLER_TRAIN", "TrainingSampler")
    if name not in TRAINING_SAMPLER_KEYS:
        raise ValueError(f"cfg.DATALOADER.SAMPLER_TRAIN = {name!r} is unknown; use one of "
                         f"{sorted(TRAINING_SAMPLER_KEYS)}.")
    args: dict[str, Any] = {}
    if name == "RepeatFactorTrainingSampler":
        args = dict(repeat_thresh=float(_cfg(cfg, "DATALOADER.REPEAT_THRESHOLD")),
                    sqrt=bool(_cfg(cfg, "DATALOADER.REPEAT_SQRT", True)))
    elif name == "RandomSubsetTrainingSampler":
        ratio = _cfg(cfg, "DATALOADER.RANDOM_SUBSET_RATIO", None)
        if ratio is None:
            raise ValueError("cfg.DATALOADER.SAMPLER_TRAIN = 'RandomSubsetTrainingSampler' needs "
                             "DATALOADER.RANDOM_SUBSET_RATIO (the fraction of images kept, in (0, 1]).")
        args = dict(subset_ratio=float(ratio))
    return build_training_sampler(name, args, dataset, seed=seed, infinite=True, where="cfg.DATALOADER")


def _is_config(obj: Any) -> bool:
    return hasattr(obj, "DATASETS") or hasattr(obj, "SOLVER") or (
        isinstance(obj, Mapping) and ("DATASETS" in obj or "SOLVER" in obj))


def build_detection_train_loader(cfg: Any = None, mapper: Callable | None = None, *, dataset: Any = None,
                                 sampler: Any = None, total_batch_size: int | None = None,
                                 aspect_ratio_grouping: bool = True, num_workers: int = 0) -> ResumableLoader:
    """The training loader of a Detectron2-style config (see the module docstring for the keys).

    Detectron2's two calls work: ``build_detection_train_loader(cfg, mapper=None)`` and the explicit
    ``build_detection_train_loader(dataset, mapper=..., total_batch_size=..., sampler=None,
    aspect_ratio_grouping=True, num_workers=0)`` (``dataset`` a list of dicts or a map-style
    dataset; the default sampler is an infinite ``TrainingSampler`` with a shared random seed).

    Args:
        cfg: a ``CfgNode`` (or nested dict), or the dataset (explicit call).
        mapper: turns a dataset dict into a model input; default ``DatasetMapper(cfg, True)``.
        dataset: overrides ``cfg.DATASETS.TRAIN`` (a list of dicts or a map-style dataset).
        sampler: overrides ``cfg.DATALOADER.SAMPLER_TRAIN``.
        total_batch_size, aspect_ratio_grouping, num_workers: the explicit call's arguments (with a
            config they come from ``SOLVER.IMS_PER_BATCH`` and ``DATALOADER.*``; giving them too is
            an error).

    Example (the seed's custom trainer)::

        class TextTrainer(DefaultTrainer):
            @classmethod
            def build_train_loader(cls, cfg):
                return build_detection_train_loader(cfg, BoundaryMapper(cfg))
    """
    if cfg is not None and not _is_config(cfg):
        if dataset is not None:
            raise TypeError("build_detection_train_loader: the dataset was given twice (first argument and "
                            "dataset=).")
        cfg, dataset = None, cfg
    if cfg is None:
        if dataset is None or total_batch_size is None:
            raise TypeError("build_detection_train_loader: give a config, or dataset and total_batch_size= "
                            "(Detectron2's explicit call).")
        return build_train_loader(dataset, mapper=mapper, total_batch_size=int(total_batch_size),
                                  num_workers=int(num_workers), sampler=sampler,
                                  aspect_ratio_grouping=bool(aspect_ratio_grouping), infinite=True)
    if total_batch_size is not None:
        raise TypeError("build_detection_train_loader(cfg, ...): the batch size comes from "
                        "SOLVER.IMS_PER_BATCH; do not pass total_batch_size= too.")
    if dataset is None:
        filter_empty = bool(_cfg(cfg, "DATALOADER.FILTER_EMPTY_ANNOTATIONS", True))
        dataset = get_detection_dataset_dicts(_cfg(cfg, "DATASETS.TRAIN"), filter_empty=filter_empty,
                                              proposal_files=_proposal_files(cfg, "PROPOSAL_FILES_TRAIN"))
    if mapper is None:
        mapper = _default_mapper(cfg, True)
    seed = _cfg(cfg, "SEED", -1)
    seed = int(seed) if seed is not None and int(seed) >= 0 else None
    if sampler is None:
        sampler = _sampler_from_cfg(cfg, dataset, seed)
    return build_train_loader(
        dataset, mapper=mapper, total_batch_size=int(_cfg(cfg, "SOLVER.IMS_PER_BATCH")),
        num_workers=int(_cfg(cfg, "DATALOADER.NUM_WORKERS", 0)), sampler=sampler,
        aspect_ratio_grouping=bool(_cfg(cfg, "DATALOADER.ASPECT_RATIO_GROUPING", True)), infinite=True,
    )


def build_detection_test_loader(cfg: Any = None, dataset_name: str | Sequence[str] | None = None,
                                mapper: Callable | None = None, *, dataset: Any = None, sampler: Any = None,
                                batch_size: int = 1, num_workers: int | None = None) -> ResumableLoader:
    """An in-order inference loader (nothing filtered, nothing dropped).

    Detectron2's two calls work: ``build_detection_test_loader(cfg, dataset_name, mapper=None)``
    (catalog name(s); ``DATALOADER.NUM_WORKERS``; default mapper ``DatasetMapper(cfg, False)``) and
    the explicit ``build_detection_test_loader(dataset, mapper=..., sampler=None, batch_size=1,
    num_workers=0)``.
    """
    if cfg is not None and not _is_config(cfg):
        if dataset is not None:
            raise TypeError("build_detection_test_loader: the dataset was given twice (first argument and "
                            "dataset=).")
        cfg, dataset = None, cfg
    if cfg is None:
        if dataset is None:
            raise TypeError("build_detection_test_loader: give a config and dataset_name, or a dataset "
                            "(Detectron2's explicit call).")
        return build_test_loader(dataset, mapper=mapper, batch_size=batch_size, sampler=sampler,
                                 num_workers=int(num_workers or 0))
    if dataset_name is None:
        raise TypeError("build_detection_test_loader(cfg, dataset_name): name the catalog dataset to load "
                        "(e.g. cfg.DATASETS.TEST[0]).")
    names = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
    proposal_files = None
    if _proposal_files(cfg, "PROPOSAL_FILES_TEST") is not None:  # one file per DATASETS.TEST entry
        tests, files = list(_cfg(cfg, "DATASETS.TEST")), list(_cfg(cfg, "DATASETS.PROPOSAL_FILES_TEST"))
        missing = [n for n in names if n not in tests]
        if missing or len(files) != len(tests):
            raise ValueError(f"MODEL.LOAD_PROPOSALS: DATASETS.PROPOSAL_FILES_TEST ({len(files)} files) "
                             f"must have one file per DATASETS.TEST entry {tests}; {missing or names} not "
                             "covered.")
        proposal_files = [files[tests.index(n)] for n in names]
    dicts = get_detection_dataset_dicts(names, filter_empty=False, proposal_files=proposal_files)
    if mapper is None:
        mapper = _default_mapper(cfg, False)
    workers = _cfg(cfg, "DATALOADER.NUM_WORKERS", 0) if num_workers is None else num_workers
    return build_test_loader(dicts, mapper=mapper, batch_size=batch_size, sampler=sampler,
                             num_workers=int(workers))
