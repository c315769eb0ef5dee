"""Detectron2 config ``VERSION`` handling: version-1 files are upgraded to version 2 on merge.

Detectron2 renamed a block of keys before its public release (``detectron2/config/compat.py``,
``ConverterV2``); a yaml that says ``VERSION: 1`` (or has no ``VERSION`` but uses the old names) is
rewritten to the new names before it is merged, as Detectron2 does. A version kiln does not know
(below 1 or above the schema's) is refused naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["upgrade_loaded_cfg", "V1_RENAMES"]

logger = logging.getLogger("kiln.config")

#: (version-1 key, version-2 key), Detectron2's ConverterV2 renames (anchor keys handled apart).
V1_RENAMES = (
    ("MODEL.WEIGHT", "MODEL.WEIGHTS"),
    ("MODEL.PANOPTIC_FPN.SEMANTIC_LOSS_SCALE", "MODEL.SEM_SEG_HEAD.LOSS_WEIGHT"),
    ("MODEL.PANOPTIC_FPN.RPN_LOSS_SCALE", "MODEL.RPN.LOSS_WEIGHT"),
    ("MODEL.PANOPTIC_FPN.INSTANCE_LOSS_SCALE", "MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT"),
    ("MODEL.PANOPTIC_FPN.COMBINE_ON", "MODEL.PANOPTIC_FPN.COMBINE.ENABLED"),
    ("MODEL.PANOPTIC_FPN.COMBINE_OVERLAP_THRESHOLD", "MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH"),
    ("MODEL.PANOPTIC_FPN.COMBINE_STUFF_AREA_LIMIT", "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT"),
    ("MODEL.PANOPTIC_FPN.COMBINE_INSTANCES_CONFIDENCE_THRESHOLD",
     "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH"),
    ("MODEL.ROI_HEADS.SCORE_THRESH", "MODEL.ROI_HEADS.SCORE_THRESH_TEST"),
    ("MODEL.ROI_HEADS.NMS", "MODEL.ROI_HEADS.NMS_THRESH_TEST"),
    ("MODEL.RETINANET.INFERENCE_SCORE_THRESHOLD", "MODEL.RETINANET.SCORE_THRESH_TEST"),
    ("MODEL.RETINANET.INFERENCE_TOPK_CANDIDATES", "MODEL.RETINANET.TOPK_CANDIDATES_TEST"),
    ("MODEL.RETINANET.INFERENCE_NMS_THRESHOLD", "MODEL.RETINANET.NMS_THRESH_TEST"),
    ("TEST.DETECTIONS_PER_IMG", "TEST.DETECTIONS_PER_IMAGE"),
    ("TEST.AUG_ON", "TEST.AUG.ENABLED"),
    ("TEST.AUG_MIN_SIZES", "TEST.AUG.MIN_SIZES"),
    ("TEST.AUG_MAX_SIZE", "TEST.AUG.MAX_SIZE"),
    ("TEST.AUG_FLIP", "TEST.AUG.FLIP"),
)
_V1_ANCHOR_KEYS = ("MODEL.RPN.ANCHOR_SIZES", "MODEL.RPN.ANCHOR_ASPECT_RATIOS", "MODEL.RETINANET.ANCHOR_SIZES",
                   "MODEL.RETINANET.ANCHOR_ASPECT_RATIOS", "MODEL.RETINANET.ANCHOR_STRIDES")


def _has(d: Mapping, key: str) -> bool:
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _pop(d: dict, key: str) -> Any:
    *parents, last = key.split(".")
    node = d
    for part in parents:
        node = node[part]
    value = node.pop(last)
    # drop parents left empty by the rename so they do not shadow schema nodes
    for depth in range(len(parents), 0, -1):
        parent = d
        for part in parents[: depth - 1]:
            parent = parent[part]
        if parent[parents[depth - 1]] == {}:
            del parent[parents[depth - 1]]
    return value


def _put(d: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = d
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _rename(d: dict, old: str, new: str) -> None:
    if _has(d, old):
        _put(d, new, _pop(d, old))


def upgrade_loaded_cfg(loaded: dict, latest: int, default_arch: str, filename: str) -> dict:
    """Bring a loaded yaml mapping (``_BASE_`` already merged) to config version ``latest``.

    ``default_arch`` is the ``MODEL.META_ARCHITECTURE`` in force when the file does not set one (the
    anchor keys move differently for RetinaNet). Returns the same dict, modified in place.
    """
    version = loaded.get("VERSION")
    if version is None:
        old = [k for k, _ in V1_RENAMES if _has(loaded, k)] + [k for k in _V1_ANCHOR_KEYS if _has(loaded, k)]
        if not old:
            return loaded
        logger.warning("%s has no VERSION and uses version-1 keys (%s); upgrading it as VERSION 1.",
                       filename, ", ".join(old))
        version = 1
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= latest:
        raise ConfigError(f"{filename}: VERSION={version!r}: kiln reads Detectron2 config versions 1 to "
                          f"{latest}; write VERSION: {latest} with the current key names.")
    if version == latest:
        return loaded
    for old, new in V1_RENAMES:
        _rename(loaded, old, new)
    arch = (loaded.get("MODEL") or {}).get("META_ARCHITECTURE", default_arch)
    used, unused = ("RETINANET", "RPN") if arch == "RetinaNet" else ("RPN", "RETINANET")
    _rename(loaded, f"MODEL.{used}.ANCHOR_ASPECT_RATIOS", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS")
    _rename(loaded, f"MODEL.{used}.ANCHOR_SIZES", "MODEL.ANCHOR_GENERATOR.SIZES")
    dropped = [k for k in (f"MODEL.{unused}.ANCHOR_SIZES", f"MODEL.{unused}.ANCHOR_ASPECT_RATIOS",
                           "MODEL.RETINANET.ANCHOR_STRIDES") if _has(loaded, k)]
    for key in dropped:
        _pop(loaded, key)
    if dropped:
        # Detectron2 drops them too: version 1 declared them but the other meta-architecture never read them.
        logger.warning("%s (VERSION 1): %s not read by %s; dropped as Detectron2 does.", filename,
                       ", ".join(dropped), arch)
    loaded["VERSION"] = latest
    return loaded
