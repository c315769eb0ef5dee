"""Anchor order per location: each publisher enumerates a location's anchors differently.

* kiln / MMDetection (``AnchorGenerator(scale_major=True)``, the default) and torchvision: ratio-major,
  ``ratio_index * num_sizes + size_index``;
* Detectron2 (``DefaultAnchorGenerator``): size-major, ``size_index * num_ratios + ratio_index``.

A head's output channels are grouped per anchor, so converting between orders permutes those groups. The
permutation is found from the target model's own anchors (:func:`anchor_slots`): its base anchors are
sorted the way the publisher enumerates them, which also handles kiln models built with Detectron2's
ordering (then nothing moves). This assumes the publisher's size and ratio lists are ascending, as in
every published config (``SIZES: [[32, 40.3, 50.8]]``, ``ASPECT_RATIOS: [[0.5, 1.0, 2.0]]``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["anchor_slots", "publisher_permutation", "permute_anchor_channels", "ORDER_KEYS"]

#: Sort keys giving each publisher's order of (size, ratio) slots.
ORDER_KEYS = {
    "ratio_major": lambda slot: (slot[1], slot[0]),
    "size_major": lambda slot: (slot[0], slot[1]),
}


def anchor_slots(model: Any) -> dict[str, list[tuple[float, float]]]:
    """``{head prefix: [(size, ratio), ...]}`` of each anchor head's first level, in the model's order."""
    out: dict[str, list[tuple[float, float]]] = {}
    if model is None or not hasattr(model, "named_modules"):
        return out
    for name, module in model.named_modules():
        gen = getattr(module, "anchor_generator", None)
        base = getattr(gen, "base_anchors", None)
        if not base:
            continue
        slots = []
        for x1, y1, x2, y2 in base[0].tolist():
            w, h = x2 - x1, y2 - y1
            slots.append((round(math.sqrt(w * h), 2), round(h / w, 3)))
        out[name] = slots
    return out


def publisher_permutation(slots: list[tuple[float, float]], order: str) -> list[int] | None:
    """For each of the model's anchor slots, the publisher's slot holding the same anchor (None: identity)."""
    publisher = sorted(range(len(slots)), key=lambda j: ORDER_KEYS[order](slots[j]))
    perm = [publisher.index(j) for j in range(len(slots))]
    return None if perm == list(range(len(slots))) else perm


def grid_permutation(num_sizes: int, num_ratios: int, src: str) -> list[int] | None:
    """The permutation from ``src`` order to kiln's default ratio-major order for a full size x ratio grid."""
    if src == "ratio_major" or num_sizes == 1 or num_ratios == 1:
        return None
    return [s * num_ratios + r for r in range(num_ratios) for s in range(num_sizes)]


def permute_anchor_channels(value: torch.Tensor, num_anchors: int, perm: list[int] | None) -> torch.Tensor:
    """Reorder the per-anchor channel groups of a conv weight/bias (``num_anchors * C`` output channels)."""
    if perm is None:
        return value
    per_anchor = value.shape[0] // num_anchors
    return value.reshape(num_anchors, per_anchor, *value.shape[1:])[perm].flatten(0, 1)
