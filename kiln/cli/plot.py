"""``kiln plot WORK_DIR/metrics.jsonl --keys loss lr --out curve.png``: training curves.

The plotting itself is :func:`kiln.visualization.plot_metrics`; this module is the command line.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln plot``."""
    p = sub.add_parser(name, help="plot scalars from metrics.jsonl to a PNG")
    p.add_argument("metrics", help="a metrics.jsonl file (or the work_dir holding it)")
    p.add_argument("--keys", nargs="+", default=["loss", "lr"], help="scalars to plot, one panel each")
    p.add_argument("--out", default=None, help="PNG path (default: curve.png next to metrics.jsonl)")
    p.add_argument("--x", default=None, help="x-axis key (default: iteration)")
    p.add_argument("--smooth", type=int, default=1, help="moving-average window drawn over the curve")
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln plot``."""
    from kiln.visualization import plot_metrics

    path = args.metrics
    if os.path.isdir(path):
        # kiln's name, else Detectron2's (a Detectron2 yaml run or DefaultTrainer writes metrics.json)
        names = [n for n in ("metrics.jsonl", "metrics.json") if os.path.isfile(os.path.join(path, n))]
        path = os.path.join(path, names[0] if names else "metrics.jsonl")
    if not os.path.isfile(path):
        raise CLIError(f"metrics file '{path}' does not exist (train first; the runner writes "
                       f"WORK_DIR/metrics.jsonl, or metrics.json for Detectron2 configs)")
    if args.smooth < 1:
        raise CLIError("--smooth must be >= 1")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), "curve.png")
    try:
        plot_metrics(path, keys=args.keys, out_file=out, x_key=args.x, smooth=args.smooth)
    except KeyError as exc:
        raise CLIError(str(exc.args[0]) if exc.args else str(exc)) from exc
    print(f"wrote {out}")
    return 0
