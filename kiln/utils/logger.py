"""Logging setup: one console handler on the main process, one log file per rank.

``setup_logger`` may be called repeatedly (every test, every ``kiln train``): each call replaces the
handlers the previous call installed on that logger instead of stacking duplicates.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from typing import Any

__all__ = ["setup_logger", "log_first_n", "log_every_n", "log_every_n_seconds"]

_KILN_HANDLER_ATTR = "_kiln_setup_logger"

_FMT = "[%(asctime)s %(name)s %(levelname)s]: %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


class _ColorFormatter(logging.Formatter):
    """Highlights WARNING/ERROR prefixes on a terminal; messages stay plain."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"\x1b[31m{text}\x1b[0m"
        if record.levelno >= logging.WARNING:
            return f"\x1b[33m{text}\x1b[0m"
        return text


def _log_file_for(output: str, rank: int) -> str:
    # A path ending in .txt/.log is the file itself; anything else is a directory.
    if output.endswith((".txt", ".log")):
        filename = output
    else:
        filename = os.path.join(output, "log.txt")
    if rank > 0:
        filename = f"{filename}.rank{rank}"
    return filename


def setup_logger(
    output: str | None = None,
    rank: int = 0,
    name: str = "kiln",
    *,
    level: int | str = logging.INFO,
    color: bool | None = None,
    console: bool = True,
    propagate: bool = True,
) -> logging.Logger:
    """Configure logger ``name``: console output on rank 0 and (optionally) a log file per rank.

    Args:
        output: a directory (the file is ``output/log.txt``) or a ``.txt``/``.log`` file path.
            Ranks other than 0 write ``<file>.rank{r}``. ``None`` means no file.
        rank: this process's global rank; only rank 0 prints to the console.
        name: the logger to configure (children like ``kiln.engine`` propagate to it).
        level: the logger's level.
        color: colour WARNING/ERROR on the console; default: only if stdout is a terminal.
        console: set False to skip the console handler entirely.
        propagate: also pass records to the root logger. True by default so that tools hooked on the
            root logger (pytest's caplog, an application's own handlers) still see kiln's records; set
            False if your application prints root records to the console too and lines appear twice.

    Returns:
        The configured :class:`logging.Logger`.
    """
    logger = logging.getLogger(name)
    if isinstance(level, str):
        level_value = logging.getLevelName(level.upper())
        if not isinstance(level_value, int):
            raise ValueError(
                f"setup_logger: unknown log level {level!r}; use one of DEBUG, INFO, WARNING, ERROR."
            )
        level = level_value
    logger.setLevel(level)
    logger.propagate = propagate

    for handler in list(logger.handlers):
        if getattr(handler, _KILN_HANDLER_ATTR, False):
            logger.removeHandler(handler)
            handler.close()

    plain = logging.Formatter(_FMT, datefmt=_DATEFMT)
    if console and rank == 0:
        stream = logging.StreamHandler(stream=sys.stdout)
        use_color = sys.stdout.isatty() if color is None else color
        stream.setFormatter(_ColorFormatter(_FMT, datefmt=_DATEFMT) if use_color else plain)
        stream.setLevel(level)
        setattr(stream, _KILN_HANDLER_ATTR, True)
        logger.addHandler(stream)

    if output is not None:
        filename = _log_file_for(os.fspath(output), rank)
        parent = os.path.dirname(filename)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fh = logging.FileHandler(filename, mode="a", encoding="utf-8")
        fh.setFormatter(plain)
        fh.setLevel(logging.DEBUG)
        setattr(fh, _KILN_HANDLER_ATTR, True)
        logger.addHandler(fh)
    return logger


_LOG_COUNTER: Counter = Counter()
_LOG_TIMER: dict[Any, float] = {}


def _caller_key() -> tuple[str, int]:
    frame = sys._getframe(2)
    return frame.f_code.co_filename, frame.f_lineno


def log_first_n(lvl: int, msg: str, n: int = 1, *, name: str = "kiln", key: str = "caller") -> None:
    """Log ``msg`` only the first ``n`` times this call site (``key='caller'``) or message is reached."""
    k: Any = _caller_key() if key == "caller" else (key, msg)
    _LOG_COUNTER[k] += 1
    if _LOG_COUNTER[k] <= n:
        logging.getLogger(name).log(lvl, msg)


def log_every_n(lvl: int, msg: str, n: int = 1, *, name: str = "kiln") -> None:
    """Log ``msg`` on the 1st, (n+1)th, (2n+1)th ... time this call site is reached."""
    k = _caller_key()
    _LOG_COUNTER[k] += 1
    if n == 1 or _LOG_COUNTER[k] % n == 1:
        logging.getLogger(name).log(lvl, msg)


def log_every_n_seconds(lvl: int, msg: str, n: float = 1.0, *, name: str = "kiln") -> None:
    """Log ``msg`` at most once every ``n`` seconds from this call site."""
    k = _caller_key()
    last = _LOG_TIMER.get(k)
    now = time.monotonic()
    if last is None or now - last >= n:
        logging.getLogger(name).log(lvl, msg)
        _LOG_TIMER[k] = now
