"""A pausable wall-clock timer."""

from __future__ import annotations

from time import perf_counter

__all__ = ["Timer"]


class Timer:
    """Wall-clock timer that can be paused and resumed.

    Example::

        >>> t = Timer()
        >>> t.pause(); t.resume()
        >>> t.seconds() >= 0
        True
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Restart from zero (running)."""
        self._start = perf_counter()
        self._paused: float | None = None
        self._total_paused = 0.0
        self._count_start = 1

    def pause(self) -> None:
        """Stop counting time until :meth:`resume`."""
        if self._paused is not None:
            raise ValueError("Timer.pause() called on a timer that is already paused; call resume() first.")
        self._paused = perf_counter()

    def is_paused(self) -> bool:
        """Whether the timer is currently paused."""
        return self._paused is not None

    def resume(self) -> None:
        """Continue counting after :meth:`pause`."""
        if self._paused is None:
            raise ValueError("Timer.resume() called on a timer that is not paused; call pause() first.")
        self._total_paused += perf_counter() - self._paused
        self._paused = None
        self._count_start += 1

    def seconds(self) -> float:
        """Seconds elapsed since the last reset, excluding paused time."""
        end = self._paused if self._paused is not None else perf_counter()
        return end - self._start - self._total_paused

    def avg_seconds(self) -> float:
        """Running seconds divided by the number of start/resume calls."""
        return self.seconds() / self._count_start
