"""``VisualizerWriter``: the run's scalars (losses, lr, validation metrics) into the visualizer's backends.

In MMEngine the logger hook sends every logged scalar to ``runner.visualizer.add_scalars``, so a
config with ``vis_backends=[dict(type='TensorboardVisBackend')]`` gets its loss curves in TensorBoard
and ``LocalVisBackend`` a ``scalars.json``. kiln's logger hooks write through
:class:`~kiln.engine.writers.EventWriter` objects; this one is the bridge: added to the logger hook's
writers, it hands each iteration's new scalars to the visualizer.

Example::

    writer = VisualizerWriter(runner.visualizer)
    LoggerHook(interval=50, writers=[*default_writers, writer])
"""

from __future__ import annotations

from typing import Any

from kiln.engine.events import get_event_storage
from kiln.engine.writers import EventWriter

__all__ = ["VisualizerWriter"]


class VisualizerWriter(EventWriter):
    """Writes the scalars put since the last write to ``visualizer.add_scalars``, one call per iteration.

    The step is the number of iterations done (MMEngine's ``runner.iter + 1`` for training lines;
    validation metrics put after iteration N land at step N, as MMEngine records them).

    Args:
        visualizer: anything with ``add_scalars(dict, step=...)`` and ``close()`` (``runner.visualizer``).
        window: smoothing window in iterations (as the other writers).
    """

    def __init__(self, visualizer: Any, window: int = 20) -> None:
        if not hasattr(visualizer, "add_scalars"):
            raise TypeError("VisualizerWriter needs a visualizer with add_scalars, got "
                            f"{type(visualizer).__name__}.")
        self._visualizer = visualizer
        self._window = window
        self._last_written: dict[str, int] = {}

    def write(self) -> None:
        """Send each iteration's new scalars (smoothed where hinted) as one ``add_scalars`` call."""
        by_iter: dict[int, dict[str, float]] = {}
        latest = get_event_storage().latest_with_smoothing_hint(self._window, newer_than=self._last_written)
        for name, (value, itr) in latest.items():
            by_iter.setdefault(itr, {})[name] = value
            self._last_written[name] = itr
        for itr in sorted(by_iter):
            self._visualizer.add_scalars(by_iter[itr], step=itr + 1)

    def close(self) -> None:
        """Close the visualizer's backends (flush event files, finish runs)."""
        self._visualizer.close()
