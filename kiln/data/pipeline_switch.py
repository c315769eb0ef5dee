"""Replacing the transform pipeline of a training set while a loader is in use.

What MMDetection's ``PipelineSwitchHook`` does (e.g. turning Mosaic/MixUp off for the last epochs),
on the data side: :func:`switch_pipeline` finds every dataset holding a ``pipeline`` under a loader
(through kiln's and torch's dataset wrappers) and gives it the new one.

Why it keeps resumes exact: in kiln's :class:`~kiln.data.ResumableLoader` the random state of every
sample is a pure function of ``(seed, rank, epoch, position)`` and never of what ran before, so which
pipeline an epoch uses is all that decides its samples. The hook switches as a function of the
epoch, hence a resumed run switches (or has switched) exactly where the uninterrupted one did.

Worker processes hold their own copy of the dataset. ``ResumableLoader`` starts fresh workers at
every epoch, so they see the new pipeline; a plain torch ``DataLoader`` with
``persistent_workers=True`` is made to start new workers at its next ``iter()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["datasets_with_pipeline", "require_pipeline", "switch_pipeline"]

# Attributes under which kiln's and torch's wrappers keep what they wrap.
_INNER = ("dataset", "datasets")


def datasets_with_pipeline(root: Any) -> list[Any]:
    """The datasets holding a ``pipeline`` attribute under ``root`` (a loader or a dataset), in order."""
    found: list[Any] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if obj is not root and hasattr(obj, "pipeline"):
            found.append(obj)
            continue
        for attr in _INNER:
            inner = getattr(obj, attr, None)
            if inner is None:
                continue
            if isinstance(inner, Sequence) and not isinstance(inner, (str, bytes)) and attr == "datasets":
                stack.extend(reversed(list(inner)))
            else:
                stack.append(inner)
    return found


def _describe(root: Any) -> str:
    chain, obj = [], root
    for _ in range(6):
        if obj is None:
            break
        chain.append(type(obj).__name__)
        obj = getattr(obj, "dataset", None)
    return " -> ".join(chain)


def require_pipeline(loader: Any) -> list[Any]:
    """:func:`datasets_with_pipeline`, or a ``ValueError`` explaining why there is none."""
    targets = datasets_with_pipeline(loader)
    if not targets:
        raise ValueError(
            f"No dataset with a 'pipeline' under the training loader ({_describe(loader)}); switching the "
            f"pipeline needs an MM-style dataset built with pipeline=[...] (CustomDataset, CocoDataset, "
            f"ShapesDataset, ...). Detectron2-style datasets keep their augmentations in the mapper."
        )
    return targets


def switch_pipeline(loader: Any, pipeline: Any) -> list[Any]:
    """Give every pipeline-holding dataset under ``loader`` the transform ``pipeline`` (a callable).

    Returns the datasets changed. Raises ``ValueError`` when there is none (e.g. a Detectron2-style
    dataset whose augmentations live in a mapper). A torch ``DataLoader`` with persistent workers
    gets new workers at its next ``iter()`` (its old ones hold the old pipeline).
    """
    targets = require_pipeline(loader)
    for ds in targets:
        ds.pipeline = pipeline
    if getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0:
        # The live iterator owns worker processes with the old dataset; dropping it (torch shuts its
        # workers down when it is collected) makes the next iter() start workers with the new one.
        loader._iterator = None
    return targets
