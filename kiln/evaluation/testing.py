"""Detectron2's result helpers: ``print_csv_format`` and ``verify_results`` (``TEST.EXPECTED_RESULTS``).

kiln's evaluators return flat dicts (``{'bbox/AP': 41.2, 'bbox/AP-person': ...}``); Detectron2's
return nested ones (``{'bbox': {'AP': 41.2}}``). Both helpers take either: a flat key
``'task/metric'`` is read as task ``task``, metric ``metric``.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from typing import Any

from kiln.utils.config_access import cfg_get

__all__ = ["print_csv_format", "verify_results", "nested_results"]

logger = logging.getLogger(__name__)


def nested_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """``{'bbox/AP': 1}`` -> ``{'bbox': {'AP': 1}}``; nested entries and keys without ``/`` stay."""
    out: dict[str, Any] = {}
    for key, value in results.items():
        if isinstance(value, Mapping):
            out.setdefault(key, {}).update(value)
        elif "/" in key:
            task, metric = key.split("/", 1)
            out.setdefault(task, {})[metric] = value
        else:
            out[key] = value
    return out


def print_csv_format(results: Mapping[str, Any]) -> None:
    """Log each task's main metrics as two comma-separated lines (names, values to 4 decimals),
    prefixed ``copypaste:``, as Detectron2 does; per-class entries (names with ``-``) are left out."""
    for task, res in nested_results(results).items():
        if isinstance(res, Mapping):
            main = [(k, v) for k, v in res.items() if "-" not in k]
            logger.info("copypaste: Task: %s", task)
            logger.info("copypaste: %s", ",".join(k for k, _ in main))
            logger.info("copypaste: %s", ",".join(f"{float(v):.4f}" for _, v in main))
        else:
            logger.info("copypaste: %s=%s", task, res)


def verify_results(cfg: Any, results: Mapping[str, Any]) -> bool:
    """Check ``results`` against ``cfg.TEST.EXPECTED_RESULTS`` (``[[task, metric, expected,
    tolerance], ...]``); an empty list passes. A missing or non-finite metric, or one further than
    ``tolerance`` from ``expected``, logs the expected and actual results and exits with status 1,
    as Detectron2's ``verify_results`` does."""
    expected_results = cfg_get(cfg_get(cfg, "TEST"), "EXPECTED_RESULTS", []) or []
    if not len(expected_results):
        return True
    nested = nested_results(results)
    ok = True
    for entry in expected_results:
        if len(entry) != 4:
            raise ValueError(f"TEST.EXPECTED_RESULTS entry {list(entry)!r}: expected [task, metric, expected "
                             "value, tolerance], e.g. ['bbox', 'AP', 38.5, 0.02].")
        task, metric, expected, tolerance = entry
        actual = nested.get(task, {}).get(metric) if isinstance(nested.get(task), Mapping) else None
        if actual is None or not math.isfinite(float(actual)) or abs(float(actual) - expected) > tolerance:
            ok = False
    if not ok:
        logger.error("Result verification failed!")
        logger.error("Expected Results: %s", [list(e) for e in expected_results])
        logger.error("Actual Results: %s", nested)
        sys.exit(1)
    logger.info("Results verification passed.")
    return True
