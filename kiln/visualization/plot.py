"""Training curves (loss, lr, ...) from a ``metrics.jsonl`` file, drawn with matplotlib (Agg).

Reads both JSON-lines dialects: kiln/Detectron2 (``{"iteration": 19, "loss": ...}``) and MMCV
(``{"mode": "train", "epoch": 1, "iter": 50, "lr": ..., "loss": ...}``, where ``iter`` restarts
every epoch and ``"mode": "val"`` lines carry metrics).

Example::

    plot_metrics('work_dir/metrics.jsonl', keys=['loss', 'lr'], out_file='work_dir/curves.png')
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["load_metrics", "metric_series", "plot_metrics"]


def load_metrics(path: str) -> list[dict[str, Any]]:
    """Parse a JSON-lines file into a list of dicts; a truncated last line (a running job) is
    skipped, a malformed line elsewhere is an error naming the file and line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"metrics file '{path}' does not exist (the runner writes "
                                "WORK_DIR/metrics.jsonl during training)")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    records = []
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == last:
                continue
            raise ValueError(f"{path}:{i + 1}: not a JSON object ({exc.msg}); expected one JSON dict "
                             "per line") from exc
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _x_values(records: Sequence[dict[str, Any]], x_key: str | None) -> list[float]:
    if x_key is not None:
        return [float(r.get(x_key, math.nan)) for r in records]
    if records and all("iteration" in r for r in records):
        return [float(r["iteration"]) for r in records]
    if records and all("iter" in r for r in records):
        # MMCV's iter restarts each epoch: count on across epochs.
        xs, offset, prev_epoch, last = [], 0, None, 0
        for r in records:
            epoch = r.get("epoch")
            if prev_epoch is not None and epoch != prev_epoch:
                offset += last
            xs.append(float(offset + r["iter"]))
            last, prev_epoch = r["iter"], epoch
        return xs
    return [float(i) for i in range(len(records))]


def metric_series(records: Iterable[dict[str, Any]], keys: Sequence[str], x_key: str | None = None,
                  mode: str | None = "train") -> dict[str, tuple[list[float], list[float]]]:
    """``key -> (xs, ys)`` for each of ``keys`` (records lacking a key are skipped). With MMCV
    logs only lines of ``mode`` (default ``'train'``) are used; ``mode=None`` keeps all."""
    recs = [r for r in records if mode is None or r.get("mode", mode) == mode]
    xs = _x_values(recs, x_key)
    out: dict[str, tuple[list[float], list[float]]] = {}
    for key in keys:
        pts = [(x, float(r[key])) for x, r in zip(xs, recs)
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        out[key] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def _smooth(ys: list[float], window: int) -> list[float]:
    if window <= 1:
        return ys
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= window:
            acc -= ys[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_metrics(metrics: str | Sequence[dict[str, Any]], keys: Sequence[str] = ("loss", "lr"),
                 out_file: str = "curves.png", x_key: str | None = None, smooth: int = 1,
                 title: str | None = None) -> str:
    """Plot each of ``keys`` in its own panel (shared x axis) and save a PNG; returns its path.

    Args:
        metrics: a ``metrics.jsonl`` path (or a work dir holding one), or parsed records.
        smooth: moving-average window drawn over the raw curve (1 = raw only).

    Raises:
        KeyError: none of ``keys`` occurs in the file (the message lists the keys that do).
    """
    if isinstance(metrics, str):
        path = os.path.join(metrics, "metrics.jsonl") if os.path.isdir(metrics) else metrics
        records = load_metrics(path)
        source = path
    else:
        records, source = list(metrics), "the records"
    series = metric_series(records, keys, x_key)
    present = {k: v for k, v in series.items() if v[0]}
    if not present:
        available = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float))})
        raise KeyError(f"none of the keys {list(keys)} appear in {source}; numeric keys present: "
                       f"{available}")
    # A bare Figure renders through the Agg canvas without touching pyplot's global backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 2.6 * len(present)))
    axes = fig.subplots(len(present), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (key, (xs, ys)) in zip(axes, present.items()):
        ax.plot(xs, ys, lw=1.0, alpha=0.4 if smooth > 1 else 1.0, label=key)
        if smooth > 1:
            ax.plot(xs, _smooth(ys, smooth), lw=1.5, label=f"{key} (avg {smooth})")
            ax.legend(loc="best", fontsize=8)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(x_key or "iteration")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    parent = os.path.dirname(os.path.abspath(out_file))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    return out_file
