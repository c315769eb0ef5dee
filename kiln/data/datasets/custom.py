"""``CustomDataset``: the MM-style dataset base class (annotations + a config pipeline).

``dataset[i]`` builds the pipeline's input dict and runs the pipeline:

``results = dict(img_info=..., ann_info=..., img_prefix=..., seg_prefix=..., filename=...,
image_id=..., bbox_fields=[], mask_fields=[], seg_fields=[])`` where ``img_info`` has
``filename`` (relative to ``img_prefix``), ``width``, ``height``, ``id`` and ``ann_info`` has
``bboxes`` (N×4 float32 XYXY pixels), ``labels`` (N int64, contiguous 0-based),
``bboxes_ignore`` (M×4 float32) with ``labels_ignore`` where the dataset knows them, optionally
``masks`` (polygons per object) and ``seg_map``. Test mode gives the same without ``ann_info`` for
a dataset built with the MMDetection 2.x keys, with it for one built with the 3.x keys (3.x test
pipelines load annotations too).
"""

from __future__ import annotations

import copy
import json
import logging
import os.path as osp
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from kiln.data.transforms.pipelines import check_backend
from kiln.registry import DATASETS

from .proposals import load_proposals

logger = logging.getLogger(__name__)

__all__ = ["CustomDataset"]


def _load_file(path: str) -> Any:
    if not osp.isfile(path):
        raise FileNotFoundError(f"Annotation file '{path}' does not exist; check ann_file and data_root.")
    if path.endswith((".pkl", ".pickle")):
        from kiln.fileio.safe_pickle import safe_load

        return safe_load(path)  # data only: a crafted pickle cannot run code
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    raise ValueError(f"Annotation file '{path}': unsupported format; use .json or .pkl "
                     "(the MM middle format).")


_DATA_PREFIX_KEYS = {"img": "img_prefix", "img_path": "img_prefix", "seg": "seg_prefix"}


class _Default:
    """Marks an argument left out (``min_size=None`` means "no minimum", so ``None`` cannot)."""

    def __repr__(self) -> str:
        return "<dataset default>"


DEFAULT: Any = _Default()


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Distinct RGB colours, one per class (hues spaced by the golden ratio), for ``metainfo['palette']``."""
    import colorsys

    out = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


class PackedRecords(Sequence):
    """Image records pickled into one numpy byte buffer (MMEngine's ``serialize_data``).

    A list of many small dicts costs one python object per value; loader workers forked from the
    main process then copy those pages as reference counts change. One buffer plus offsets is shared
    copy-on-write for good. Each access unpickles a fresh dict, so callers may modify what they get.
    """

    def __init__(self, records: Sequence[Any]) -> None:
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
        self._buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return [self[i] for i in range(*idx.indices(len(self)))]
        idx = int(idx)
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"record {idx} out of range ({len(self)} records)")
        start = int(self._ends[idx - 1]) if idx > 0 else 0
        return pickle.loads(self._buffer[start:int(self._ends[idx])].tobytes())


@DATASETS.register_module()
class CustomDataset(Dataset):
    """Detection dataset in the MM "middle format", and the base of ``CocoDataset``/``VOCDataset``.

    The middle format is a list (json or pickle) of
    ``{'filename': 'a.jpg', 'width': 640, 'height': 480, 'ann': {'bboxes': N×4, 'labels': N,
    'bboxes_ignore': M×4 (optional)}}``. Subclasses override :meth:`load_annotations` and
    :meth:`get_ann_info`.

    Takes the MMDetection 2.x keys or the 3.x keys (one or the other; a mix is refused):

    2.x (``img_prefix='train2017/', classes=(...), filter_empty_gt=True, min_size=32``):
        classes: class names overriding ``CLASSES`` (a list, or a text file with one per line).
        img_prefix / seg_prefix: folders of the images / semantic-segmentation maps.
        filter_empty_gt: in training, drop images without (non-ignored) boxes (default ``True``).
        min_size: in training, drop images whose shorter side is smaller (pixels); ``None`` keeps all.
        file_client_args: storage backend; local files only.
        Test mode gives results without ``ann_info``.

    3.x (``data_prefix=dict(img='train2017/'), filter_cfg=dict(filter_empty_gt=True, min_size=32),
    metainfo=dict(classes=(...), palette=[...])``):
        data_prefix: ``dict(img=..., seg=...)`` folders (``img_path`` is MMEngine's name for ``img``).
        filter_cfg: ``None`` keeps every image (as in MMDetection 3.x); ``filter_empty_gt`` drops images
            with no instance of the selected classes (crowd/difficult ones count), ``min_size`` images
            whose shorter side is smaller. Test mode never filters.
        metainfo: ``classes`` (a subset: only those classes' annotations, labels in that order),
            ``palette`` (RGB per class) and any other entries, all readable from :attr:`metainfo`.
        backend_args: storage backend; ``None`` or local only (a remote backend is refused).
        serialize_data: keep image records pickled in one buffer (:class:`PackedRecords`).
        lazy_init: ``False`` only (kiln loads annotations when the dataset is built).
        indices: after filtering keep only the first ``n`` images (an int) or these positions.
        max_refetch: how many times a rejected training sample is replaced by another (default 1000;
            99 for 2.x-style datasets, kiln's earlier behaviour).
        Test mode still loads annotations (3.x test pipelines run ``LoadAnnotations``).

    Both: ``ann_file`` (relative to ``data_root`` if that is given), ``pipeline`` (list of transform
    configs for :class:`kiln.data.transforms.Compose`), ``data_root``, ``proposal_file`` (precomputed
    proposals for Fast R-CNN in MMDetection's or Detectron2's pickle layout, see
    :mod:`kiln.data.datasets.proposals`; each image's array is ``results['proposals']``), ``test_mode``.
    """

    CLASSES: Sequence[str] | None = None
    # MMDetection 2.x default of min_size for this dataset type (3.x spells filters in filter_cfg).
    MM2_MIN_SIZE: int | None = None
    # Keys a 3.x ``data_prefix`` may have, and the attribute each sets.
    DATA_PREFIX_KEYS: Mapping[str, str] = _DATA_PREFIX_KEYS
    # Keys a 3.x ``filter_cfg`` may have.
    FILTER_CFG_KEYS: tuple[str, ...] = ("filter_empty_gt", "min_size")

    def __init__(self, ann_file: str, pipeline: Sequence[Mapping | Any] | None = None,
                 classes: Sequence[str] | str | None = None, data_root: str | None = None,
                 img_prefix: str | None = None, seg_prefix: str | None = None,
                 proposal_file: str | None = None, test_mode: bool = False,
                 filter_empty_gt: bool | None = None, min_size: int | None = DEFAULT,
                 file_client_args: Mapping | None = None, *, metainfo: Mapping | None = None,
                 data_prefix: Mapping[str, str] | None = None, filter_cfg: Mapping | None = None,
                 backend_args: Mapping | None = None, serialize_data: bool | None = None,
                 lazy_init: bool | None = None, indices: int | Sequence[int] | None = None,
                 max_refetch: int | None = None) -> None:
        name = type(self).__name__
        given2 = sorted(k for k, v in dict(classes=classes, img_prefix=img_prefix, seg_prefix=seg_prefix,
                                           filter_empty_gt=filter_empty_gt,
                                           min_size=None if min_size is DEFAULT else "given",
                                           file_client_args=file_client_args).items() if v is not None)
        given3 = sorted(k for k, v in dict(metainfo=metainfo, data_prefix=data_prefix, filter_cfg=filter_cfg,
                                           backend_args=backend_args, serialize_data=serialize_data,
                                           lazy_init=lazy_init, indices=indices,
                                           max_refetch=max_refetch).items() if v is not None)
        if given2 and given3:
            raise ValueError(
                f"{name} mixes MMDetection 2.x keys {given2} with 3.x keys {given3}; use one spelling: "
                "3.x data_prefix=dict(img=...), filter_cfg=dict(filter_empty_gt=..., min_size=...), "
                "metainfo=dict(classes=...); or 2.x img_prefix=..., filter_empty_gt=..., min_size=..., "
                "classes=...")
        self.mmdet3 = bool(given3)
        check_backend(name, "file_client_args", file_client_args)
        check_backend(name, "backend_args", backend_args)
        if lazy_init:
            raise ValueError(f"{name} lazy_init=True: kiln loads the annotations when the dataset is built "
                             "(the loader needs its length right away); remove lazy_init.")
        self.ann_file = ann_file
        self.data_root = data_root
        self.img_prefix = img_prefix or ""
        self.seg_prefix = seg_prefix
        self.sub_data_root = ""
        self.proposal_file = proposal_file
        self.test_mode = test_mode
        self.max_refetch = int(max_refetch) if max_refetch is not None else (1000 if self.mmdet3 else 99)
        user_meta = dict(metainfo or {})
        if metainfo is not None and not isinstance(metainfo, Mapping):
            raise TypeError(f"{name} metainfo must be a dict like dict(classes=(...), palette=[...]), got "
                            f"{type(metainfo).__name__}")
        if self.mmdet3:
            self._apply_data_prefix(data_prefix or {})
            filters = self._read_filter_cfg(filter_cfg)
            self.filter_empty_gt = bool(filters.get("filter_empty_gt", False))
            self.min_size = filters.get("min_size") or None
            self.bbox_min_size = filters.get("bbox_min_size")
            self.filter_enabled = filter_cfg is not None
            classes = user_meta.get("classes")
        else:
            self.filter_empty_gt = True if filter_empty_gt is None else bool(filter_empty_gt)
            self.min_size = self.MM2_MIN_SIZE if min_size is DEFAULT else min_size
            self.bbox_min_size = None
            self.filter_enabled = True
        if data_root is not None:
            if not osp.isabs(self.ann_file):
                self.ann_file = osp.join(data_root, self.ann_file)
            if self.img_prefix is not None and not osp.isabs(self.img_prefix):
                self.img_prefix = osp.join(data_root, self.img_prefix)
            if self.seg_prefix is not None and not osp.isabs(self.seg_prefix):
                self.seg_prefix = osp.join(data_root, self.seg_prefix)
            if self.proposal_file is not None and not osp.isabs(self.proposal_file):
                self.proposal_file = osp.join(data_root, self.proposal_file)
        self.CLASSES = self.get_classes(classes)
        self.data_infos: Sequence[dict[str, Any]] = self.load_annotations(self.ann_file)
        self.proposals = (load_proposals(self.proposal_file, self.data_infos, self.img_prefix, name)
                          if self.proposal_file else None)
        if not test_mode and self.filter_enabled:
            valid = self._filter_imgs()
            if len(valid) < len(self.data_infos):
                logger.info("%s: kept %d of %d images (filter_empty_gt=%s, min_size=%s)", name,
                            len(valid), len(self.data_infos), self.filter_empty_gt, self.min_size)
            self._keep(valid)
        if indices is not None:
            self._keep(self._resolve_indices(indices))
        if len(self.data_infos) == 0:
            raise ValueError(
                f"{name}('{self.ann_file}') has no images left"
                + ("" if test_mode else f" after filtering (filter_empty_gt={self.filter_empty_gt}, "
                   f"min_size={self.min_size}, indices={indices!r}); check the annotations or relax the "
                   "filters") + "."
            )
        self._set_group_flag()
        self._metainfo = dict(user_meta)
        self._metainfo["classes"] = tuple(self.CLASSES) if self.CLASSES is not None else None
        if "palette" not in self._metainfo and self.CLASSES is not None:
            self._metainfo["palette"] = default_palette(len(self.CLASSES))
        if serialize_data:
            self.data_infos = PackedRecords(self.data_infos)
        if pipeline is None:
            self.pipeline = None
        else:
            from kiln.data.transforms import Compose

            self.pipeline = Compose(pipeline)

    # ------------------------------------------------------------ 3.x keys
    def _apply_data_prefix(self, data_prefix: Mapping[str, str]) -> None:
        name = type(self).__name__
        if not isinstance(data_prefix, Mapping):
            raise TypeError(f"{name} data_prefix must be a dict like dict(img='train2017/'), got "
                            f"{data_prefix!r}")
        unknown = sorted(set(data_prefix) - set(self.DATA_PREFIX_KEYS))
        if unknown:
            raise ValueError(f"{name} data_prefix has keys {unknown} that {name} does not read; it takes "
                             f"{sorted(self.DATA_PREFIX_KEYS)}.")
        for key, value in data_prefix.items():
            setattr(self, self.DATA_PREFIX_KEYS[key], value)

    def _read_filter_cfg(self, filter_cfg: Mapping | None) -> dict[str, Any]:
        name = type(self).__name__
        if filter_cfg is None:
            return {}
        if not isinstance(filter_cfg, Mapping):
            raise TypeError(f"{name} filter_cfg must be a dict like dict(filter_empty_gt=True, min_size=32), "
                            f"got {filter_cfg!r}")
        unknown = sorted(set(filter_cfg) - set(self.FILTER_CFG_KEYS))
        if unknown:
            raise ValueError(f"{name} filter_cfg has keys {unknown} that {name} does not read (as in "
                             f"MMDetection 3.x, it takes {list(self.FILTER_CFG_KEYS)}); remove them.")
        return dict(filter_cfg)

    def _resolve_indices(self, indices: int | Sequence[int]) -> list[int]:
        n = len(self.data_infos)
        if isinstance(indices, int) and not isinstance(indices, bool):
            if indices < 0:
                raise ValueError(f"{type(self).__name__} indices={indices}: expected a non-negative count")
            return list(range(min(indices, n)))
        out = [int(i) for i in indices]
        bad = [i for i in out if not -n <= i < n]
        if bad:
            raise IndexError(f"{type(self).__name__} indices {bad[:5]} are out of range for {n} images "
                             "(after filtering).")
        return [i % n for i in out]

    def _keep(self, positions: Sequence[int]) -> None:
        self.data_infos = [self.data_infos[i] for i in positions]
        if self.proposals is not None:
            self.proposals = [self.proposals[i] for i in positions]

    @property
    def metainfo(self) -> dict[str, Any]:
        """``classes`` (tuple), ``palette`` (RGB per class) and any other ``metainfo`` entries (a copy)."""
        return copy.deepcopy(self._metainfo)

    # ------------------------------------------------------------ annotations
    @classmethod
    def get_classes(cls, classes: Sequence[str] | str | None = None) -> Sequence[str] | None:
        """Class names: ``classes`` (list or text file with one name per line) or ``cls.CLASSES``."""
        if classes is None:
            return cls.CLASSES
        if isinstance(classes, str):
            if not osp.isfile(classes):
                raise FileNotFoundError(f"classes='{classes}' is neither a list nor an existing text file.")
            with open(classes, encoding="utf-8") as f:
                return [line.strip() for line in f if line.strip()]
        if isinstance(classes, (list, tuple)):
            return list(classes)
        raise TypeError(f"classes must be a list of names or a file path, got {type(classes).__name__}.")

    def load_annotations(self, ann_file: str) -> list[dict[str, Any]]:
        """Load the middle-format list; each entry needs ``filename``, ``width``, ``height``."""
        infos = _load_file(ann_file)
        if not isinstance(infos, list):
            raise ValueError(f"'{ann_file}': the middle format is a list of image dicts, got "
                             f"{type(infos).__name__}.")
        for i, info in enumerate(infos):
            missing = [k for k in ("filename", "width", "height") if k not in info]
            if missing:
                raise ValueError(f"'{ann_file}': entry {i} lacks {missing}.")
            info.setdefault("id", i)
        return infos

    def get_ann_info(self, idx: int) -> dict[str, Any]:
        """Annotations of image ``idx``: ``bboxes`` (N×4 XYXY float32), ``labels`` (N int64), ..."""
        ann = dict(self.data_infos[idx].get("ann", {}))
        ann["bboxes"] = np.asarray(ann.get("bboxes", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
        ann["labels"] = np.asarray(ann.get("labels", np.zeros(0)), dtype=np.int64).reshape(-1)
        ann["bboxes_ignore"] = np.asarray(ann.get("bboxes_ignore", np.zeros((0, 4))),
                                          dtype=np.float32).reshape(-1, 4)
        if "labels_ignore" in ann:
            ann["labels_ignore"] = np.asarray(ann["labels_ignore"], dtype=np.int64).reshape(-1)
        return ann

    def get_cat_ids(self, idx: int) -> list[int]:
        """Contiguous labels present in image ``idx`` (used by ``ClassBalancedDataset``)."""
        return self.get_ann_info(idx)["labels"].astype(int).tolist()

    def _filter_imgs(self) -> list[int]:
        """Indices kept in training: large enough and (if ``filter_empty_gt``) with boxes.

        MMDetection 2.x counts the non-ignored boxes; 3.x counts every instance of the selected
        classes, ignored (crowd/difficult) ones included."""
        valid = []
        for i, info in enumerate(self.data_infos):
            if self.min_size is not None and min(info["width"], info["height"]) < self.min_size:
                continue
            if self.filter_empty_gt:
                ann = self.get_ann_info(i)
                n = len(ann["bboxes"]) + (len(ann.get("bboxes_ignore", ())) if self.mmdet3 else 0)
                if n == 0:
                    continue
            valid.append(i)
        return valid

    def _set_group_flag(self) -> None:
        """``flag[i] = 1`` for landscape images (width / height > 1): aspect-ratio grouping."""
        self.flag = np.array([1 if info["width"] / info["height"] > 1 else 0 for info in self.data_infos],
                             dtype=np.uint8)

    # ---------------------------------------------------------------- items
    def __len__(self) -> int:
        return len(self.data_infos)

    def pre_pipeline(self, results: dict[str, Any]) -> None:
        """Add the prefixes and empty field lists the pipeline expects."""
        results["img_prefix"] = self.img_prefix
        results["seg_prefix"] = self.seg_prefix
        results["proposal_file"] = self.proposal_file
        results["bbox_fields"] = []
        results["mask_fields"] = []
        results["seg_fields"] = []

    def _results(self, idx: int, with_ann: bool) -> dict[str, Any]:
        img_info = self.data_infos[idx]
        results: dict[str, Any] = dict(img_info=img_info, filename=img_info["filename"],
                                       image_id=img_info.get("id", idx))
        if with_ann:
            results["ann_info"] = self.get_ann_info(idx)
        if self.proposals is not None:
            results["proposals"] = self.proposals[idx]
        self.pre_pipeline(results)
        return results

    def prepare_train_img(self, idx: int) -> dict[str, Any] | None:
        """Pipeline output for training (``None`` when the pipeline rejects the sample)."""
        results = self._results(idx, with_ann=True)
        return self.pipeline(results) if self.pipeline is not None else results

    def prepare_test_img(self, idx: int) -> dict[str, Any] | None:
        """Pipeline output; without annotations in 2.x mode, with them in 3.x mode (as MMDetection)."""
        results = self._results(idx, with_ann=self.mmdet3)
        return self.pipeline(results) if self.pipeline is not None else results

    def _rand_another(self, idx: int) -> int:
        # numpy's global RNG: the loader seeds it per sample, so the replacement is reproducible.
        pool = np.where(self.flag == self.flag[idx])[0]
        return int(np.random.choice(pool))

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if self.test_mode:
            out = self.prepare_test_img(idx)
            if out is None:
                raise RuntimeError(f"{type(self).__name__}: the test pipeline returned None for image {idx} "
                                   f"({self.data_infos[idx]['filename']}); test pipelines must not reject.")
            return out
        for attempt in range(self.max_refetch + 1):
            data = self.prepare_train_img(idx)
            if data is not None:
                return data
            if attempt == 9:
                logger.warning("%s: pipeline rejected 10 samples in a row (last %s)", type(self).__name__,
                               self.data_infos[idx]["filename"])
            idx = self._rand_another(idx)
        raise RuntimeError(f"{type(self).__name__}: the training pipeline rejected {self.max_refetch + 1} "
                           "samples in a row; check its filtering steps (crops, min box size).")

    def __repr__(self) -> str:
        mode = "test" if self.test_mode else "train"
        return (f"{type(self).__name__}(ann_file={self.ann_file!r}, {mode} mode, {len(self)} images, "
                f"classes={list(self.CLASSES) if self.CLASSES is not None else None})")
