"""``kiln plot WORK_DIR/metrics.jsonl --keys loss lr --out curve.png``: training curves."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run", "read_series", "plot_series"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln plot``."""
    p = sub.add_parser(name, help="plot scalars from metrics.jsonl to a PNG")
    p.add_argument("metrics", help="a metrics.jsonl file (or the work_dir holding it)")
    p.add_argument("--keys", nargs="+", default=["loss", "lr"], help="scalars to plot, one panel each")
    p.add_argument("--out", default=None, help="PNG path (default: next to metrics.jsonl, curve.png)")
    p.add_argument("--x", default=None, help="x-axis key (default: iteration, or iter)")
    return p


Series = dict[str, tuple[list[float], list[float]]]


def read_series(path: str, keys: list[str], x_key: str | None = None) -> Series:
    """key → (xs, ys) from a JSON-lines file; records without the key are skipped."""
    series: Series = {k: ([], []) for k in keys}
    with open(path) as f:
        for n, line in enumerate(f):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a partial last line of a running job
            x = rec.get(x_key, n) if x_key else rec.get("iteration", rec.get("iter", n))
            for k in keys:
                v = rec.get(k)
                if isinstance(v, (int, float)):
                    series[k][0].append(float(x))
                    series[k][1].append(float(v))
    return series


def plot_series(series: Series, out: str, x_key: str = "iteration") -> None:
    """One stacked panel per key, saved as a PNG (matplotlib's Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.6 * len(series)), sharex=True, squeeze=False)
    for ax, (key, (xs, ys)) in zip(axes[:, 0], series.items()):
        ax.plot(xs, ys, lw=1.2)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(x_key)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln plot``."""
    path = args.metrics
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.isfile(path):
        raise CLIError(f"metrics file '{path}' does not exist (train first; the runner writes "
                       f"WORK_DIR/metrics.jsonl)")
    series = read_series(path, args.keys, args.x)
    empty = [k for k, (xs, _) in series.items() if not xs]
    if len(empty) == len(series):
        with open(path) as f:
            first = next((json.loads(ln) for ln in f if ln.strip()), {})
        raise CLIError(f"none of the keys {args.keys} appear in {path}; keys present: {sorted(first)}")
    for k in empty:
        series.pop(k)
        print(f"warning: key '{k}' not found in {path}; skipped")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), "curve.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    plot_series(series, out, args.x or "iteration")
    print(f"wrote {out}")
    return 0
