"""Argument checks and a text table shared by the MMDetection-style metrics (CocoMetric, VOCMetric)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_collect_device", "check_backend_args", "text_table"]


def check_collect_device(value: str, owner: str) -> str:
    """``collect_device`` says how MMEngine moves results between ranks ('cpu' or 'gpu'); the
    results are the same either way, and kiln always gathers through its object collective."""
    if value not in ("cpu", "gpu"):
        raise ValueError(f"{owner}: collect_device must be 'cpu' or 'gpu', got {value!r}.")
    return value


def check_backend_args(backend_args: Mapping | None, owner: str) -> None:
    """Accept ``None`` or a local backend; a remote storage backend is refused (kiln reads local files)."""
    if backend_args is None:
        return
    backend = dict(backend_args).get("backend", "local")
    if backend != "local" or set(backend_args) - {"backend"}:
        raise ValueError(
            f"{owner}: backend_args={dict(backend_args)!r}: kiln reads annotation files from the local "
            f"file system only. Copy the file locally and set backend_args=None (or dict(backend='local'))."
        )


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A boxed fixed-width table, for the per-class results the metrics log."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt = [("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |") for r in cells]
    return "\n".join([line, fmt[0], line, *fmt[1:], line])
