"""``CustomDataset``: the MM-style dataset base class (annotations + a config pipeline).

``dataset[i]`` builds the pipeline's input dict and runs the pipeline:

``results = dict(img_info=..., ann_info=..., img_prefix=..., seg_prefix=..., filename=...,
image_id=..., bbox_fields=[], mask_fields=[], seg_fields=[])`` where ``img_info`` has
``filename`` (relative to ``img_prefix``), ``width``, ``height``, ``id`` and ``ann_info`` has
``bboxes`` (N×4 float32 XYXY pixels), ``labels`` (N int64, contiguous 0-based),
``bboxes_ignore`` (M×4 float32), optionally ``masks`` (polygons per object) and ``seg_map``.
Test mode gives the same without ``ann_info``.
"""

from __future__ import annotations

import json
import logging
import os.path as osp
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from kiln.registry import DATASETS

logger = logging.getLogger(__name__)

__all__ = ["CustomDataset"]


def _load_file(path: str) -> Any:
    if not osp.isfile(path):
        raise FileNotFoundError(f"Annotation file '{path}' does not exist; check ann_file and data_root.")
    if path.endswith((".pkl", ".pickle")):
        with open(path, "rb") as f:
            return pickle.load(f)
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    raise ValueError(f"Annotation file '{path}': unsupported format; use .json or .pkl "
                     "(the MM middle format).")


@DATASETS.register_module()
class CustomDataset(Dataset):
    """Detection dataset in the MM "middle format", and the base of ``CocoDataset``/``VOCDataset``.

    The middle format is a list (json or pickle) of
    ``{'filename': 'a.jpg', 'width': 640, 'height': 480, 'ann': {'bboxes': N×4, 'labels': N,
    'bboxes_ignore': M×4 (optional)}}``. Subclasses override :meth:`load_annotations` and
    :meth:`get_ann_info`.

    Args:
        ann_file: annotation file (relative to ``data_root`` if that is given).
        pipeline: list of transform configs (built with ``kiln.data.transforms.Compose``).
        classes: class names overriding ``CLASSES`` (a list, or a text file with one per line).
        data_root: prefix for relative ``ann_file``/``img_prefix``/``seg_prefix``/``proposal_file``.
        img_prefix: folder of the images.
        seg_prefix: folder of semantic-segmentation maps (passed through to the pipeline).
        proposal_file: pickle of per-image proposals (``results['proposals']``).
        test_mode: no annotations in the results, no filtering.
        filter_empty_gt: in training, drop images without (non-ignored) boxes.
        min_size: in training, drop images whose shorter side is smaller (pixels); ``None`` keeps all.
    """

    CLASSES: Sequence[str] | None = None

    def __init__(self, ann_file: str, pipeline: Sequence[Mapping | Any] | None = None,
                 classes: Sequence[str] | str | None = None, data_root: str | None = None,
                 img_prefix: str = "", seg_prefix: str | None = None, proposal_file: str | None = None,
                 test_mode: bool = False, filter_empty_gt: bool = True, min_size: int | None = None,
                 file_client_args: Mapping | None = None) -> None:
        self.ann_file = ann_file
        self.data_root = data_root
        self.img_prefix = img_prefix
        self.seg_prefix = seg_prefix
        self.proposal_file = proposal_file
        self.test_mode = test_mode
        self.filter_empty_gt = filter_empty_gt
        self.min_size = min_size
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
        self.data_infos: list[dict[str, Any]] = self.load_annotations(self.ann_file)
        self.proposals = _load_file(self.proposal_file) if self.proposal_file else None
        if not test_mode:
            valid = self._filter_imgs()
            if len(valid) < len(self.data_infos):
                logger.info("%s: kept %d of %d images (filter_empty_gt=%s, min_size=%s)", type(self).__name__,
                            len(valid), len(self.data_infos), filter_empty_gt, min_size)
            self.data_infos = [self.data_infos[i] for i in valid]
            if self.proposals is not None:
                self.proposals = [self.proposals[i] for i in valid]
        if len(self.data_infos) == 0:
            raise ValueError(
                f"{type(self).__name__}('{self.ann_file}') has no images left"
                + ("" if test_mode else f" after filtering (filter_empty_gt={filter_empty_gt}, "
                   f"min_size={min_size}); check the annotations or relax the filters") + "."
            )
        self._set_group_flag()
        if pipeline is None:
            self.pipeline = None
        else:
            from kiln.data.transforms import Compose

            self.pipeline = Compose(pipeline)

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
        return ann

    def get_cat_ids(self, idx: int) -> list[int]:
        """Contiguous labels present in image ``idx`` (used by ``ClassBalancedDataset``)."""
        return self.get_ann_info(idx)["labels"].astype(int).tolist()

    def _filter_imgs(self) -> list[int]:
        """Indices kept in training: large enough and (if ``filter_empty_gt``) with boxes."""
        valid = []
        for i, info in enumerate(self.data_infos):
            if self.min_size is not None and min(info["width"], info["height"]) < self.min_size:
                continue
            if self.filter_empty_gt and len(self.get_ann_info(i)["bboxes"]) == 0:
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
        """Pipeline output without annotations."""
        results = self._results(idx, with_ann=False)
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
        for attempt in range(100):
            data = self.prepare_train_img(idx)
            if data is not None:
                return data
            if attempt == 9:
                logger.warning("%s: pipeline rejected 10 samples in a row (last %s)", type(self).__name__,
                               self.data_infos[idx]["filename"])
            idx = self._rand_another(idx)
        raise RuntimeError(f"{type(self).__name__}: the training pipeline rejected 100 samples in a row; "
                           "check its filtering steps (crops, min box size).")

    def __repr__(self) -> str:
        mode = "test" if self.test_mode else "train"
        return (f"{type(self).__name__}(ann_file={self.ann_file!r}, {mode} mode, {len(self)} images, "
                f"classes={list(self.CLASSES) if self.CLASSES is not None else None})")
