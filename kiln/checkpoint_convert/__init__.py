"""Checkpoints of every publisher into kiln models: format and layout detection, renaming, matching.

``read_checkpoint(path)`` reads kiln/MMDetection/Detectron2/torchvision ``.pth`` and Detectron2/Caffe2
``.pkl`` files (pickles with data only); ``convert_for_model(state, model.state_dict())`` renames the
layout it detects (:data:`LAYOUTS`) into kiln's names, matches prefixes and returns what to load plus a
:class:`LoadReport`. :func:`load_into` does both for a model.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .align import LoadReport, align_state_dict
from .convert import convert_for_model, to_kiln_names
from .layouts import LAYOUTS, detect_layout
from .reader import read_checkpoint

__all__ = ["LAYOUTS", "LoadReport", "align_state_dict", "convert_for_model", "detect_layout", "load_into",
           "read_checkpoint", "to_kiln_names"]

logger = logging.getLogger(__name__)


def load_into(model: Any, path: str | os.PathLike, *, allow_pickle: bool = False,
              strict: bool = False) -> LoadReport:
    """Load the checkpoint file ``path`` (any layout) into ``model``, log the report and return it.

    ``strict=True`` raises ``RuntimeError`` with the report when anything did not load.
    """
    ckpt = read_checkpoint(path, allow_pickle=allow_pickle)
    aligned, report = convert_for_model(ckpt["model"], model.state_dict(), source=f"'{os.fspath(path)}'",
                                        model=model)
    if strict and (report.missing or report.unexpected or report.shape_mismatch):
        raise RuntimeError(report.format() + "\n(strict: every key must load)")
    model.load_state_dict(aligned, strict=False)
    if not report.clean:
        logger.warning(report.format()) if (report.missing or report.shape_mismatch) else logger.info(
            report.format())
    return report
