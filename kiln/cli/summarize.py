"""``kiln summarize DIR``: mean ± std of final metrics across runs (seeds/repeats), as a table.

A *run* is any directory under DIR holding ``test_metrics.json`` (written by ``kiln test``) or a
``metrics.jsonl`` (written during training; the last record that has the metric is used). Runs are
grouped by their directory name with ``seed<N>``/``repeat<N>`` parts removed, so
``10shot_seed0_repeat3`` and ``10shot_seed1`` both land in group ``10shot``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run", "collect_runs", "summarize_runs", "format_table"]

_SEED_PART = re.compile(r"[_\-.]?(seed|repeat|rep|run)[_\-]?\d+", re.IGNORECASE)


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln summarize``."""
    p = sub.add_parser(name, help="aggregate metrics across runs into a mean ± std table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir")
    p.add_argument("--metrics", nargs="+", default=["bbox/AP", "bbox/AP50", "bbox/AP75"],
                   help="metric keys (a key matches when it equals or ends with '/'+KEY)")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    p.add_argument("--out", default=None, help="also write the table to this file")
    return p


def _match(key: str, metric: str) -> bool:
    return key == metric or key.endswith("/" + metric)


def _read_run(run_dir: Path, metrics: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    test_file = run_dir / "test_metrics.json"
    records: list[dict] = []
    if test_file.is_file():
        records = [json.loads(test_file.read_text())]
    elif (run_dir / "metrics.jsonl").is_file():
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run
    for metric in metrics:
        for rec in reversed(records):
            hit = next((k for k in rec if _match(k, metric) and isinstance(rec[k], (int, float))), None)
            if hit is not None:
                found[metric] = float(rec[hit])
                break
    return found


def collect_runs(results_dir: str | Path, metrics: list[str]) -> dict[str, dict[str, float]]:
    """Run directory (relative to ``results_dir``) → its final metric values."""
    root = Path(results_dir)
    if not root.is_dir():
        raise CLIError(f"results directory '{results_dir}' does not exist")
    runs: dict[str, dict[str, float]] = {}
    markers = sorted({*root.rglob("test_metrics.json"), *root.rglob("metrics.jsonl")})
    for marker in markers:
        rel = marker.parent.relative_to(root).as_posix()
        if rel in runs:
            continue
        values = _read_run(marker.parent, metrics)
        if values:
            runs[rel] = values
    return runs


def _group_name(run: str) -> str:
    name = _SEED_PART.sub("", run).strip("_-./")
    return name or "all"


def summarize_runs(runs: dict[str, dict[str, float]], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per group: ``{'group', 'n', metric: (mean, std)}`` (sample std; 0 for one run)."""
    groups: dict[str, list[dict[str, float]]] = {}
    for run_name, values in sorted(runs.items()):
        groups.setdefault(_group_name(run_name), []).append(values)
    rows = []
    for group, items in groups.items():
        row: dict[str, Any] = {"group": group, "n": len(items)}
        for m in metrics:
            vals = [v[m] for v in items if m in v]
            if not vals:
                row[m] = None
                continue
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            row[m] = (mean, std)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], metrics: list[str], fmt: str = "markdown") -> str:
    """Render rows as a markdown table (``mean ± std``) or CSV (separate mean/std columns)."""
    if fmt == "csv":
        head = ["group", "n"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
        lines = [",".join(head)]
        for r in rows:
            cells = [r["group"], str(r["n"])]
            for m in metrics:
                cells += ["", ""] if r[m] is None else [f"{r[m][0]:.4f}", f"{r[m][1]:.4f}"]
            lines.append(",".join(cells))
        return "\n".join(lines)
    head = ["group", "n", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["group"], str(r["n"])]
        cells += ["-" if r[m] is None else f"{r[m][0]:.4f} ± {r[m][1]:.4f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln summarize``."""
    runs = collect_runs(args.results_dir, args.metrics)
    if not runs:
        raise CLIError(f"no run under '{args.results_dir}' has any of the metrics {args.metrics} "
                       f"(looked for test_metrics.json and metrics.jsonl files)")
    table = format_table(summarize_runs(runs, args.metrics), args.metrics, args.format)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0
