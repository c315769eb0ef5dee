"""``browse_dataset``: write PNGs of training images *after* augmentation, boxes and names drawn.

Looking at what the model really sees catches most data bugs (wrong class mapping, boxes not
following a flip, over-aggressive crops). Works with both config dialects:

* MM style (``cfg.data.train`` with a ``pipeline``): the dataset is built from config with the
  pipeline minus its normalizing/formatting steps (``Normalize``, ``DefaultFormatBundle``,
  ``ImageToTensor``, ``ToTensor``, ``Collect``), so images stay viewable uint8 BGR.
* Detectron2 style (``cfg.DATASETS.TRAIN`` names + ``cfg.INPUT``): dicts from ``DatasetCatalog``
  through :class:`~kiln.data.mapper.DatasetMapper`.

``kiln browse-dataset CONFIG --output-dir DIR`` calls this.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.utils.config_access import cfg_get

__all__ = ["browse_dataset", "strip_pipeline"]

SKIP_TYPES = ("Normalize", "DefaultFormatBundle", "ImageToTensor", "ToTensor", "Collect")


def strip_pipeline(pipeline: Sequence[Mapping], skip_types: Sequence[str] = SKIP_TYPES) -> list[dict]:
    """Return ``pipeline`` without steps whose ``type`` is in ``skip_types`` (recursing into
    ``MultiScaleFlipAug``'s ``transforms``)."""
    out = []
    for step in pipeline:
        step = dict(step)
        if step.get("type") in skip_types:
            continue
        if "transforms" in step and isinstance(step["transforms"], Sequence):
            step["transforms"] = strip_pipeline(step["transforms"], skip_types)
        out.append(step)
    return out


def _strip_dataset_cfg(ds_cfg: Any, skip_types: Sequence[str]) -> Any:
    ds_cfg = dict(ds_cfg)
    if "pipeline" in ds_cfg and ds_cfg["pipeline"] is not None:
        ds_cfg["pipeline"] = strip_pipeline(ds_cfg["pipeline"], skip_types)
    if "dataset" in ds_cfg:  # RepeatDataset / ClassBalancedDataset
        ds_cfg["dataset"] = _strip_dataset_cfg(ds_cfg["dataset"], skip_types)
    if "datasets" in ds_cfg:  # ConcatDataset
        ds_cfg["datasets"] = [_strip_dataset_cfg(d, skip_types) for d in ds_cfg["datasets"]]
    return ds_cfg


def _class_names(dataset: Any) -> list[str] | None:
    seen = set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        names = getattr(dataset, "CLASSES", None)
        if names is not None:
            return list(names)
        inner = getattr(dataset, "datasets", None)
        dataset = inner[0] if isinstance(inner, Sequence) and inner else getattr(dataset, "dataset", None)
    return None


def _first(value: Any) -> Any:
    # MultiScaleFlipAug outputs lists (one per scale/flip); show the first variant.
    return value[0] if isinstance(value, list) and value else value


def _seed(i: int) -> None:
    # Reproducible pictures: sample i is always augmented the same way.
    from kiln.utils import set_random_seed

    set_random_seed(i)


def _browse_mm(cfg: Any, split: str, num_images: int, skip_types: Sequence[str]):
    from kiln.registry import DATASETS

    data = cfg_get(cfg, "data")
    if data is None:  # the canonical (MMEngine) layout: <split>_dataloader.dataset
        data = {s: cfg_get(loader, "dataset") for s in ("train", "val", "test")
                if (loader := cfg_get(cfg, f"{s}_dataloader")) is not None}
    ds_cfg = cfg_get(data, split)
    if ds_cfg is None:
        raise KeyError(f"browse_dataset: the config has no data.{split}; available splits: "
                       f"{sorted(k for k in data if isinstance(data[k], Mapping))} (data.<split> or "
                       f"<split>_dataloader.dataset)")
    ds_cfg = _strip_dataset_cfg(copy.deepcopy(ds_cfg), skip_types)
    dataset = DATASETS.build(ds_cfg, cfg_path=f"data.{split}")
    names = _class_names(dataset)
    for i in range(min(num_images, len(dataset))):
        _seed(i)
        item = dataset[i]
        img = _first(item["img"])
        boxes = _first(item.get("gt_bboxes", np.zeros((0, 4), np.float32)))
        labels = _first(item.get("gt_labels"))
        masks = _first(item.get("gt_masks"))  # BitmapMasks/PolygonMasks on the (padded) image
        fname = _first(item.get("ori_filename") or item.get("filename") or f"{i}")
        norm = _first(item.get("img_norm_cfg")) if not isinstance(img, np.ndarray) else None
        yield i, str(fname), img, boxes, labels, names, norm, masks


def _browse_d2(cfg: Any, split: str, num_images: int):
    from .catalog import DatasetCatalog, MetadataCatalog
    from .mapper import DatasetMapper

    datasets = cfg.DATASETS
    names_key = {"train": "TRAIN", "val": "TEST", "test": "TEST"}[split]
    ds_names = list(getattr(datasets, names_key))
    if not ds_names:
        raise KeyError(f"browse_dataset: cfg.DATASETS.{names_key} is empty; name a registered dataset "
                       f"(registered: {DatasetCatalog.list()})")
    dicts = [d for name in ds_names for d in DatasetCatalog.get(name)]
    mapper = DatasetMapper.from_config(cfg, is_train=True)  # is_train keeps annotations to draw
    class_names = getattr(MetadataCatalog.get(ds_names[0]), "thing_classes", None)
    fmt = cfg_get(cfg.INPUT, "FORMAT", "BGR")
    for i in range(min(num_images, len(dicts))):
        _seed(i)
        out = mapper(dicts[i])
        inst = out.get("instances")
        boxes = inst.gt_boxes.tensor if inst is not None else np.zeros((0, 4), np.float32)
        labels = inst.gt_classes if inst is not None else None
        masks = inst.gt_masks if inst is not None and inst.has("gt_masks") else None
        img = out["image"].permute(1, 2, 0).numpy()
        if fmt == "RGB":
            img = img[:, :, ::-1]
        yield i, os.path.basename(out["file_name"]), img, boxes, labels, class_names, None, masks


def browse_dataset(cfg: Any, output_dir: str, num_images: int = 10, split: str = "train",
                   skip_types: Sequence[str] = SKIP_TYPES) -> list[str]:
    """Write ``num_images`` augmented samples of ``split`` as PNGs with boxes, class names and instance
    masks (when the pipeline loads them: ``LoadAnnotations(with_mask=True)`` / ``MODEL.MASK_ON``).

    Args:
        cfg: a loaded config (MM style with ``data`` or ``<split>_dataloader``, or Detectron2 style
            with ``DATASETS``).
        output_dir: created if missing; files are ``<index>_<image name>.png``.
        skip_types: MM pipeline steps left out so images stay displayable.

    Returns:
        The written file paths, in dataset order.
    """
    from kiln.visualization import Visualizer

    if split not in ("train", "val", "test"):
        raise ValueError(f"browse_dataset split must be 'train', 'val' or 'test', got {split!r}")
    if cfg_get(cfg, "data") is not None or any(
        cfg_get(cfg, f"{s}_dataloader") is not None for s in ("train", "val", "test")
    ):
        samples = _browse_mm(cfg, split, num_images, skip_types)
    elif cfg_get(cfg, "DATASETS") is not None:
        samples = _browse_d2(cfg, split, num_images)
    else:
        raise KeyError("browse_dataset: the config has neither 'data' (MM style: data.train with a "
                       "pipeline) nor 'DATASETS' (Detectron2 style); which dataset should be shown?")
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for i, fname, img, boxes, labels, names, norm, masks in samples:
        if isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3:
            vis = Visualizer(img, class_names=names)
        else:
            from kiln.visualization import image_from_tensor

            vis = Visualizer(image_from_tensor(img, norm), class_names=names)
        vis.draw_boxes(boxes, labels, masks=masks)
        stem = os.path.splitext(os.path.basename(fname))[0]
        written.append(vis.save(os.path.join(output_dir, f"{i:05d}_{stem}.png")))
    return written
