"""Precomputed proposal files (Fast R-CNN): read any of the three layouts, align them with a dataset.

* MMDetection 2.x: a list with one ``N×4`` or ``N×5`` (score last) array per image, in the order of the
  dataset's annotation file (before filtering), best first.
* MMDetection 3.x: a dict keyed by ``'<image folder>/<file name>'`` (``'val2017/000000000139.jpg'``),
  each value a dict with ``bboxes`` (``N×4``) and optionally ``scores`` (or an ``N×4``/``N×5`` array).
* Detectron2 (``tools/`` proposal dumps, ``DATASETS.PROPOSAL_FILES_*``): a dict with ``ids`` (image ids;
  older files call them ``indexes``), ``boxes`` (one array per id), optionally ``objectness_logits`` and
  ``bbox_mode`` (0 = XYXY_ABS, 1 = XYWH_ABS; default XYXY_ABS). As Detectron2's mapper does before taking
  its top-k, each image's boxes are sorted by objectness (highest first), so "the first N" means the same
  in every layout.

Files are read with :func:`kiln.fileio.safe_pickle.safe_load` (data only: a crafted pickle cannot run code).
"""

from __future__ import annotations

import os.path as osp
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["load_proposals", "align_proposals"]

# Detectron2's BoxMode values that proposal files use.
_XYXY_ABS, _XYWH_ABS = 0, 1


def load_proposals(
    path: str, data_infos: Sequence[Mapping[str, Any]], img_prefix: str = "", owner: str = "dataset"
) -> list[np.ndarray]:
    """Read ``path`` and return one float32 ``N×4`` / ``N×5`` (score last) array per entry of ``data_infos``.

    ``data_infos`` are the dataset's image records (``filename`` relative to ``img_prefix``, ``id``).
    Raises ``FileNotFoundError`` for a missing file and ``KeyError``/``ValueError`` naming the image for a
    file that does not cover the dataset.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"{owner}: proposal_file '{path}' does not exist; check proposal_file and "
            "data_root (Fast R-CNN reads precomputed proposals, e.g. dumped by an RPN run)."
        )
    from kiln.fileio.safe_pickle import safe_load

    return align_proposals(safe_load(path), data_infos, img_prefix, f"{owner}: proposal_file '{path}'")


def align_proposals(
    data: Any, data_infos: Sequence[Mapping[str, Any]], img_prefix: str = "", where: str = "proposal_file"
) -> list[np.ndarray]:
    """:func:`load_proposals` on already-loaded file contents ``data``."""
    if isinstance(data, Mapping) and "boxes" in data and ("ids" in data or "indexes" in data):
        return _detectron2(data, data_infos, where)
    if isinstance(data, Mapping):
        return _by_file_name(data, data_infos, img_prefix, where)
    if isinstance(data, (list, tuple)):
        if len(data) != len(data_infos):
            raise ValueError(
                f"{where} holds proposals for {len(data)} images but the annotation file has "
                f"{len(data_infos)}; "
                "an MMDetection list-style proposal file must have one entry per image, in the annotation "
                "file's order (was it dumped for another split?)."
            )
        return [_as_boxes(p, f"{where} entry {i}") for i, p in enumerate(data)]
    raise ValueError(
        f"{where}: unknown layout {type(data).__name__}; expected MMDetection's list of N×4/N×5 arrays, "
        "MMDetection 3.x's dict keyed by '<folder>/<file name>', or Detectron2's dict with 'ids' and 'boxes'."
    )


def _as_boxes(value: Any, where: str) -> np.ndarray:
    if isinstance(value, Mapping):
        if "bboxes" not in value:
            raise ValueError(
                f"{where}: a proposal dict needs 'bboxes' (and optionally 'scores'); has {sorted(value)}."
            )
        boxes = np.asarray(value["bboxes"], np.float32).reshape(-1, 4)
        if "scores" in value:
            scores = np.asarray(value["scores"], np.float32).reshape(-1)
            if len(scores) != len(boxes):
                raise ValueError(f"{where}: {len(boxes)} bboxes but {len(scores)} scores.")
            boxes = np.concatenate([boxes, scores[:, None]], axis=1)
        return boxes
    arr = np.asarray(value, np.float32)
    if arr.size == 0:
        return np.zeros((0, 4), np.float32)
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ValueError(
            f"{where}: proposals must be an N×4 (x1, y1, x2, y2) or N×5 (plus score) array, got "
            f"shape {arr.shape}."
        )
    return arr


def _detectron2(
    data: Mapping[str, Any], data_infos: Sequence[Mapping[str, Any]], where: str
) -> list[np.ndarray]:
    ids = data["ids"] if "ids" in data else data["indexes"]
    boxes, logits = data["boxes"], data.get("objectness_logits")
    if len(boxes) != len(ids) or (logits is not None and len(logits) != len(ids)):
        raise ValueError(
            f"{where}: 'ids', 'boxes' and 'objectness_logits' must have one entry per image "
            f"(got {len(ids)}, {len(boxes)}, {len(logits) if logits is not None else '-'})."
        )
    mode = int(data.get("bbox_mode", _XYXY_ABS))
    if mode not in (_XYXY_ABS, _XYWH_ABS):
        raise ValueError(
            f"{where}: bbox_mode={mode} is not supported; proposal boxes must be XYXY_ABS (0) or "
            "XYWH_ABS (1) in pixels."
        )
    # Detectron2 matches by str(id): a file written with int ids serves a dataset with str ids and back.
    position = {str(i): k for k, i in enumerate(ids)}
    out = []
    for info in data_infos:
        image_id = info.get("id")
        k = position.get(str(image_id))
        if k is None:
            raise KeyError(
                f"{where} has no proposals for image id {image_id!r} ({info.get('filename')}); it covers "
                f"{len(ids)} images (ids like {[ids[j] for j in range(min(3, len(ids)))]}). Use the proposal "
                "file dumped for this dataset split."
            )
        b = np.asarray(boxes[k], np.float32).reshape(-1, 4).copy()
        if mode == _XYWH_ABS:
            b[:, 2:] += b[:, :2]
        if logits is not None:
            s = np.asarray(logits[k], np.float32).reshape(-1)
            if len(s) != len(b):
                raise ValueError(
                    f"{where}: image id {image_id!r} has {len(b)} boxes but {len(s)} objectness logits."
                )
            order = np.argsort(-s, kind="stable")  # Detectron2 takes the top-k by objectness
            b = np.concatenate([b[order], (1.0 / (1.0 + np.exp(-s[order])))[:, None]], axis=1)
        out.append(b.astype(np.float32))
    return out


def _by_file_name(
    data: Mapping[str, Any], data_infos: Sequence[Mapping[str, Any]], img_prefix: str, where: str
) -> list[np.ndarray]:
    out = []
    for info in data_infos:
        path = osp.join(img_prefix or "", info["filename"])
        # MMDetection 3.x keys: the image's folder name and file name ('val2017/000000000139.jpg').
        key = osp.join(osp.basename(osp.dirname(path)), osp.basename(path))
        if key not in data:
            raise KeyError(
                f"{where} has no proposals for '{key}' (image id {info.get('id')!r}); its keys look like "
                f"{list(data)[:3]}. An MMDetection 3.x proposal file is keyed by "
                "'<image folder>/<file name>'."
            )
        out.append(_as_boxes(data[key], f"{where}['{key}']"))
    return out
