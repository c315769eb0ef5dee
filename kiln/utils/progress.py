"""Progress of long loops that reads well both in a terminal and in a log file.

In a terminal: a tqdm bar on stderr (redrawn in place). Redirected (a log file, a SLURM output file, a
pipe): no ``\\r`` redraws, which turn into one unreadable line there; instead one log line every
``every_s`` seconds with the count, the time per item and an ETA, so a long evaluation is visibly alive.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["progress", "stderr_is_terminal"]


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (where a redrawn progress bar belongs)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress(iterable: Iterable, desc: str, *, total: int | None = None, logger: logging.Logger | None = None,
             every_s: float = 10.0, terminal: bool | None = None) -> Iterable:
    """``iterable`` with progress shown: a tqdm bar when ``terminal`` (default: stderr is a terminal),
    else a ``logger`` line every ``every_s`` seconds (``desc: i/N, s/it, ETA``)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if stderr_is_terminal() if terminal is None else terminal:
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
    return _logged(iterable, desc, total, logger or logging.getLogger("kiln"), every_s)


def _logged(iterable: Iterable, desc: str, total: int | None, logger: logging.Logger,
            every_s: float) -> Iterator[Any]:
    start = last = time.perf_counter()
    n = 0
    for item in iterable:
        yield item
        n += 1
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            per = (now - start) / n
            eta = f", ETA {datetime.timedelta(seconds=int(per * (total - n)))}" if total else ""
            logger.info("%s: %d/%s done, %.3f s/it%s", desc, n, total if total is not None else "?", per, eta)
