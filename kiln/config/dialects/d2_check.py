"""Shared rules of the Detectron2 translator: reading dotted keys, refusing values kiln cannot honour.

Every key of Detectron2's schema is either mapped onto the canonical schema or, when it holds a value
kiln cannot honour, refused by :func:`refuse` with one message naming the key and the value (a
``ValueError`` subclass, :class:`D2KeyError`, that carries the key). Keys that only matter for a head
kiln does not have (keypoints, semantic and panoptic segmentation) stop translation up front
(:func:`check_supported_heads`).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

__all__ = [
    "D2KeyError",
    "refuse",
    "value_of",
    "default_of",
    "is_default",
    "require_default",
    "warn_unread",
    "check_supported_heads",
    "SUPPORTED_META_ARCHITECTURES",
]

logger = logging.getLogger("kiln.config")

SUPPORTED_META_ARCHITECTURES = ("GeneralizedRCNN", "RetinaNet", "ProposalNetwork")
SUPPORTED_META_ARCHITECTURES += ("FCOS", "ATSS")  # kiln's dense detectors, head keys from MODEL.RETINANET
_SEGMENTATION_ARCHS = {
    "SemanticSegmentor": "semantic segmentation (MODEL.SEM_SEG_HEAD)",
    "PanopticFPN": "panoptic segmentation (MODEL.SEM_SEG_HEAD + MODEL.PANOPTIC_FPN)",
}


class D2KeyError(ValueError):
    """A Detectron2 key set to a value kiln cannot honour; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def refuse(key: str, value: Any, why: str) -> D2KeyError:
    """The error for ``key=value``: ``raise refuse('MODEL.X', v, 'kiln ...; use ...')``."""
    return D2KeyError(key, f"{key}={value!r}: {why}")


def value_of(d2: Any, key: str) -> Any:
    """``d2['A']['B']`` for ``'A.B'``."""
    node = d2
    for part in key.split("."):
        node = node[part]
    return node


@functools.lru_cache(maxsize=1)
def _defaults() -> Any:
    from kiln.config.defaults import get_default_cfg

    return get_default_cfg()


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def default_of(key: str) -> Any:
    """Detectron2's default for ``key`` (kiln's schema)."""
    return value_of(_defaults(), key)


def is_default(d2: Any, key: str) -> bool:
    """Whether ``key`` holds its schema default (lists and tuples compare equal)."""
    return _norm(value_of(d2, key)) == _norm(default_of(key))


def require_default(d2: Any, key: str, why: str) -> None:
    """Refuse ``key`` unless it holds its default; ``why`` says when the key means something."""
    if not is_default(d2, key):
        raise refuse(key, value_of(d2, key), why)


def warn_unread(d2: Any, key: str, why: str) -> None:
    """Say (a warning naming ``key``) that a value set away from its default is not read here.

    For an option of a feature that is switched off or not chosen (``INPUT.CROP.SIZE`` with crops off,
    ``SOLVER.STEPS`` with a cosine schedule): Detectron2 ignores it too, so the config is valid, but the
    user is told instead of the value vanishing silently. ``why`` says when the key is read.
    """
    if not is_default(d2, key):
        logger.warning("%s=%r has no effect: %s (as in Detectron2).", key, value_of(d2, key), why)


def check_supported_heads(d2: Any) -> None:
    """Stop with one message naming the head when the config needs one kiln does not have."""
    arch = d2.MODEL.META_ARCHITECTURE
    if arch in _SEGMENTATION_ARCHS:
        raise refuse(
            "MODEL.META_ARCHITECTURE",
            arch,
            f"kiln has no {_SEGMENTATION_ARCHS[arch]} head; the config loads but cannot be built. "
            f"Supported meta-architectures: {', '.join(SUPPORTED_META_ARCHITECTURES)}",
        )
    if arch not in SUPPORTED_META_ARCHITECTURES:
        raise refuse(
            "MODEL.META_ARCHITECTURE",
            arch,
            f"no kiln mapping; supported: {', '.join(SUPPORTED_META_ARCHITECTURES)}",
        )
    if d2.MODEL.MASK_ON and arch != "GeneralizedRCNN":
        raise refuse("MODEL.MASK_ON", True, f"masks need MODEL.META_ARCHITECTURE GeneralizedRCNN (an R-CNN "
                     f"with ROI heads), not {arch}")
    if d2.MODEL.KEYPOINT_ON:
        raise refuse(
            "MODEL.KEYPOINT_ON",
            True,
            "kiln has no keypoint head (MODEL.ROI_KEYPOINT_HEAD); it "
            "trains box detectors only. Set MODEL.KEYPOINT_ON False to train the box part",
        )
