"""Class-count agreement between a detector's heads and its dataset.

A head whose ``num_classes`` differs from the dataset's class list trains without complaint (labels
beyond the head are never predicted, extra outputs are never trained) and only shows up as a poor mAP.
MMDetection 2.x checks it with ``NumClassCheckHook``; kiln runs the same check by default for every
dialect (:func:`check_model_dataset_classes`) and offers the hook by its MMDetection name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

__all__ = ["check_model_dataset_classes", "check_num_classes", "dataset_classes", "num_classes_of"]

logger = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel / DataParallel keep the model in `.module`.
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


def _is_class_agnostic(module: nn.Module) -> bool:
    # RPN heads score objectness only (num_classes=1 by construction): never compared to a dataset.
    return any(cls.__name__ == "RPNHead" for cls in type(module).__mro__)


def _config_key(name: str) -> str:
    # "roi_head.bbox_head.2" -> "roi_head.bbox_head[2]" (how a config addresses a cascade stage).
    parts: list[str] = []
    for part in name.split("."):
        if part.isdigit() and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(part)
    return ".".join(parts)


def num_classes_of(model: nn.Module, model_key: str = "model") -> dict[str, int]:
    """``{config key: num_classes}`` of every classifying head of ``model``, e.g.
    ``{'model.roi_head.bbox_head.num_classes': 80}`` (cascade stages as ``bbox_head[i]``).

    A head is a module that stores an integer ``num_classes`` itself (containers that only report a
    child's count, such as RoI heads, are not listed twice); class-agnostic RPN heads are skipped.
    """
    out: dict[str, int] = {}
    for name, module in _unwrap(model).named_modules():
        value = module.__dict__.get("num_classes")
        if isinstance(value, bool) or not isinstance(value, int) or _is_class_agnostic(module):
            continue
        key = ".".join(p for p in (model_key, _config_key(name), "num_classes") if p)
        out[key] = value
    return out


def dataset_classes(dataset: Any) -> tuple[str, ...] | None:
    """The class names of ``dataset``: MMDetection 3.x ``metainfo['classes']``, 2.x ``CLASSES``, or
    ``classes``; wrappers (``RepeatDataset``, ``ConcatDataset``...) are looked through. ``None`` when
    the dataset does not say.
    """
    seen = 0
    while dataset is not None and seen < 8:
        meta = getattr(dataset, "metainfo", None)
        if isinstance(meta, Mapping) and meta.get("classes") is not None:
            return _as_names(meta["classes"], "metainfo.classes")
        for attr in ("CLASSES", "classes"):
            value = getattr(dataset, attr, None)
            if value is not None and not callable(value):
                return _as_names(value, attr)
        inner = getattr(dataset, "dataset", None)
        if inner is None:
            members = getattr(dataset, "datasets", None)
            inner = members[0] if members is not None and len(members) else None
        dataset = inner
        seen += 1
    return None


def _as_names(value: Any, attr: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(
            f"dataset {attr}={value!r} is a string; it must be a tuple of class names. For one class "
            f"write ({value!r},) — with the trailing comma."
        )
    if not isinstance(value, Sequence):
        raise TypeError(f"dataset {attr} must be a tuple/list of class names, got {type(value).__name__}.")
    return tuple(value)


def check_num_classes(
    model: nn.Module, classes: Sequence[str], *, model_key: str = "model", dataset_key: str
) -> None:
    """Raise ``ValueError`` if a head's ``num_classes`` differs from ``len(classes)``.

    The message names both numbers and both config keys, e.g. ``model.roi_head.bbox_head.num_classes=80
    but train_dataloader.dataset has 3 classes (metainfo.classes / CLASSES): ...``.
    """
    n = len(classes)
    wrong = {k: v for k, v in num_classes_of(model, model_key).items() if v != n}
    if not wrong:
        return
    heads = ", ".join(f"{k}={v}" for k, v in wrong.items())
    shown = list(classes[:8]) + (["..."] if n > 8 else [])
    raise ValueError(
        f"{heads} but {dataset_key} has {n} classes (metainfo.classes / CLASSES): {shown}. "
        f"Set {next(iter(wrong))}={n} (every head), or give the dataset the classes the model was "
        "built for (metainfo=dict(classes=(...)) in MMDetection 3.x, classes=(...) in 2.x)."
    )


def check_model_dataset_classes(model: nn.Module, dataset: Any, *, where: str) -> bool:
    """The default class-count check of every dialect: ``model``'s heads against ``dataset``.

    ``where`` is the dataset's config key for the message (``'train_dataloader.dataset'``,
    ``'data.train'``). Returns ``True`` when checked; a dataset that names no classes cannot be
    checked: a warning says so and ``False`` is returned.
    """
    classes = dataset_classes(dataset)
    if classes is None:
        logger.warning(
            "class-count check skipped: %s (%s) has no metainfo['classes'] / CLASSES, so the heads' "
            "num_classes (%s) cannot be compared with it.",
            where, type(dataset).__name__, num_classes_of(model),
        )
        return False
    check_num_classes(model, classes, dataset_key=where)
    return True
