"""Open a data loader at (epoch, batch): the one place that positions a stream for a resume.

kiln's :class:`~kiln.data.build.ResumableLoader` is positioned without loading the skipped batches
(``set_epoch`` + ``set_start``); other loaders are replayed (their sampler told the epoch first).
Used by the training loops, the Detectron2 trainers and the validation-loss hook.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["is_resumable_loader", "position_loader", "open_loader_at"]

logger = logging.getLogger(__name__)

_END = object()


def is_resumable_loader(loader: Any) -> bool:
    """Whether ``loader`` can be positioned without replaying batches (kiln's ResumableLoader contract)."""
    return all(hasattr(loader, a) for a in ("set_epoch", "set_start", "state_dict", "load_state_dict"))


def position_loader(loader: Any, epoch: int = 0, start: int = 0) -> bool:
    """Make a kiln ResumableLoader's next ``iter()`` start at batch ``start`` of ``epoch``.

    Returns ``False`` (and does nothing) for loaders that cannot be positioned.
    """
    if not is_resumable_loader(loader):
        return False
    loader.set_epoch(epoch)
    loader.set_start(start)
    return True


def open_loader_at(
    loader: Any, epoch: int = 0, start: int = 0, *, what: str = "", replay: bool = True
) -> Iterator:
    """An iterator over ``loader`` from batch ``start`` of ``epoch``.

    Args:
        loader: a kiln ResumableLoader (positioned directly) or any iterable.
        epoch: the epoch whose order to produce (``sampler.set_epoch`` for other loaders).
        start: batches of that epoch to skip.
        what: who asks; when given, replaying skipped batches logs a warning naming it.
        replay: for loaders that cannot be positioned: skip ``start`` batches by reading them
            (``False``: start wherever a fresh iterator starts, as Detectron2 does).

    A replayed loader that is shorter than ``start`` starts over from its beginning.
    """
    if position_loader(loader, epoch, start):
        return iter(loader)
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    it = iter(loader)
    if start and replay:
        if what:
            logger.warning(
                "%s: the data loader (%s) cannot be positioned, so resuming replays and skips %d batches. "
                "Use kiln.data.build_train_loader for an exact, replay-free resume.",
                what,
                type(loader).__name__,
                start,
            )
        for _ in range(start):
            if next(it, _END) is _END:  # the loader got shorter: start over
                return iter(loader)
    return it
