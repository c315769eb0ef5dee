"""``kiln summarize DIR``: mean ± std of final metrics across runs (seeds/repeats), as a table.

A *run* is any directory under DIR holding ``test_metrics.json`` (written by ``kiln test``) or a
``metrics.jsonl`` (written during training; the last record that has the metric is used). Runs are
grouped by their directory name with ``seed<N>``/``repeat<N>`` parts removed, so
``10shot_seed0_repeat3`` and ``10shot_seed1`` both land in group ``10shot``.

DeFRCN's ``tools/extract_results.py`` form, ``kiln summarize --res-dir DIR --shot-list 1 2 3 5 10``:
for each shot K, the runs are the folders of DIR whose name starts with ``{K}shot_`` (their final
evaluation: ``inference/res_final.json``, ``test_metrics.json`` or the training log); one table per
shot lists every run, the mean (``μ``), the standard deviation (``σ``, numpy's population std as
DeFRCN) and the 95% confidence half-width (``c`` = 1.96 σ / √n) of nAP, nAP50, nAP75, bAP, bAP50,
bAP75 (and AP, AP50, AP75), the metrics the runs have. The tables are printed and written to
``DIR/results.txt``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run", "collect_runs", "summarize_runs", "format_table", "shot_tables",
           "DEFRCN_METRICS"]

_SEED_PART = re.compile(r"[_\-.]?(seed|repeat|rep|run)[_\-]?\d+", re.IGNORECASE)


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln summarize``."""
    p = sub.add_parser(name, help="aggregate metrics across runs into a mean ± std table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", nargs="?", default=None)
    p.add_argument("--res-dir", default=None, help="DeFRCN's form: the folder of {K}shot_* run folders")
    p.add_argument("--shot-list", type=int, nargs="+", default=None, metavar="K",
                   help="with --res-dir: the shots to tabulate (DeFRCN's default: 10)")
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
    final_eval = run_dir / "inference" / "res_final.json"  # `kiln train --eval-only` (Detectron2 layout)
    records: list[dict] = []
    if test_file.is_file():
        records = [json.loads(test_file.read_text())]
    elif final_eval.is_file():
        records = [json.loads(final_eval.read_text())]
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


DEFRCN_METRICS = ["nAP", "nAP50", "nAP75", "bAP", "bAP50", "bAP75", "AP", "AP50", "AP75"]


def shot_tables(res_dir: str | Path, shots: list[int], metrics: list[str] | None = None) -> str:
    """DeFRCN's ``extract_results`` tables (see the module docstring) as one text."""
    root = Path(res_dir)
    if not root.is_dir():
        raise CLIError(f"--res-dir '{res_dir}' does not exist")
    metrics = metrics or DEFRCN_METRICS
    parts = []
    for shot in shots:
        runs = {}
        for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name.split("_")[0] == f"{shot}shot"):
            values = _read_run(d, metrics)
            if values:
                runs[d.name] = values
        if not runs:
            raise CLIError(f"no finished {shot}-shot run in '{res_dir}' (folders named {shot}shot_* holding "
                           f"inference/res_final.json, test_metrics.json or a metrics log)")
        cols = [m for m in metrics if all(m in v for v in runs.values())]
        if not cols:
            raise CLIError(f"the {shot}-shot runs in '{res_dir}' share none of the metrics {metrics}")
        table = [[name, *(v[m] for m in cols)] for name, v in runs.items()]
        n = len(table)
        mean = [sum(r[i + 1] for r in table) / n for i in range(len(cols))]
        std = [math.sqrt(sum((r[i + 1] - mean[i]) ** 2 for r in table) / n) for i in range(len(cols))]
        rows = table + [["μ", *mean], ["σ", *std], ["c", *(1.96 * s / math.sqrt(n) for s in std)]]
        lines = [f"--> {shot}-shot", "| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += ["| " + " | ".join([str(r[0]), *(f"{x:.2f}" for x in r[1:])]) + " |" for r in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln summarize``."""
    if args.res_dir is not None or args.shot_list is not None:
        if args.results_dir is not None:
            raise CLIError("give RESULTS_DIR or --res-dir (DeFRCN's per-shot tables), not both")
        if args.res_dir is None:
            raise CLIError("--shot-list goes with --res-dir DIR")
        text = shot_tables(args.res_dir, args.shot_list or [10])
        print(text)
        out = Path(args.out) if args.out else Path(args.res_dir) / "results.txt"
        out.write_text(text + "\n")
        print(f"Reformat all results -> {out}")
        return 0
    if args.results_dir is None:
        raise CLIError("name the results: kiln summarize RESULTS_DIR, or --res-dir DIR --shot-list K ...")
    runs = collect_runs(args.results_dir, args.metrics)
    if not runs:
        raise CLIError(f"no run under '{args.results_dir}' has any of the metrics {args.metrics} "
                       f"(looked for test_metrics.json and metrics.jsonl files)")
    table = format_table(summarize_runs(runs, args.metrics), args.metrics, args.format)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0
