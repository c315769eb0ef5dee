"""Write the one summary of ``benchmarks/gpu_check.sh`` from what its steps left in WORK_DIR.

    python benchmarks/gpu_summary.py WORK_DIR SUMMARY_FILE

WORK_DIR holds ``steps.tsv`` (name, status, seconds, exit code per step, written by the script),
``<step>.log`` for each step, ``gpu_junit.xml`` (the test suite) and ``demo/`` (the demo run's
work dir with ``metrics.jsonl`` and ``log.txt``). Anything missing is reported as missing.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import xml.etree.ElementTree as ET


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tail(text: str, n: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


def steps_table(work: str) -> tuple[list[str], list[tuple[str, str, float, str]]]:
    """The markdown table of the steps and the parsed rows."""
    rows = []
    for line in _read(os.path.join(work, "steps.tsv")).splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            rows.append((parts[0], parts[1], float(parts[2]), parts[3]))
    out = ["| step | status | seconds | exit code |", "|---|---|---|---|"]
    out += [f"| {name} | {status} | {secs:.0f} | {code} |" for name, status, secs, code in rows]
    return out, rows


def suite_counts(work: str) -> dict[str, int | list[str]]:
    """passed / failed / errors / skipped and the names of failing tests, from the JUnit file."""
    path = os.path.join(work, "gpu_junit.xml")
    if not os.path.isfile(path):
        return {}
    root = ET.parse(path).getroot()
    counts: dict[str, int | list[str]] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    for case in root.iter("testcase"):
        counts["tests"] += 1  # type: ignore[operator]
        for kind in ("failure", "error", "skipped"):
            el = case.find(kind)
            if el is not None:
                key = {"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]
                counts[key] += 1  # type: ignore[operator]
                if kind != "skipped":
                    msg = (el.get("message") or "").splitlines()[0][:160] if el.get("message") else ""
                    failing.append(f"{case.get('classname')}::{case.get('name')} ({kind}) {msg}")
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]  # type: ignore[operator]
    counts["failing"] = failing
    return counts


def demo_figures(work: str) -> dict[str, float | int | str]:
    """Iterations, s/iter and it/s (median of the logged ``time``), data time, last AP, peak memory."""
    demo = os.path.join(work, "demo")
    records = []
    for line in _read(os.path.join(demo, "metrics.jsonl")).splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    out: dict[str, float | int | str] = {}
    times = [r["time"] for r in records if isinstance(r.get("time"), (int, float))]
    if times:
        # The first logged window holds start-up (cuDNN autotuning, loader warm-up): skip it.
        steady = times[1:] or times
        out["s_per_iter"] = statistics.median(steady)
        out["it_per_s"] = 1.0 / out["s_per_iter"] if out["s_per_iter"] else float("nan")
    data_times = [r["data_time"] for r in records if isinstance(r.get("data_time"), (int, float))]
    if data_times:
        out["data_time"] = statistics.median(data_times[1:] or data_times)
    iters = [r["iteration"] for r in records if "iteration" in r and "loss" in r]  # training records
    if iters:
        out["iterations"] = int(max(iters)) + 1
    aps = [(r.get("iteration", -1), r["bbox/AP"]) for r in records if "bbox/AP" in r]
    if aps:
        out["bbox_AP"] = aps[-1][1]
        ap50 = [r["bbox/AP50"] for r in records if "bbox/AP50" in r]
        if ap50:
            out["bbox_AP50"] = ap50[-1]
    mems = re.findall(r"max_mem: (\d+)M", _read(os.path.join(demo, "log.txt")))
    if mems:
        out["max_mem_MB"] = max(int(m) for m in mems)
    preds = os.path.join(work, "demo_infer", "predictions.json")
    if os.path.isfile(preds):
        try:
            out["infer_images"] = len(json.loads(_read(preds)))
        except ValueError:
            out["infer_images"] = "unreadable predictions.json"
    return out


def main() -> None:
    """Assemble the summary file."""
    work, summary = sys.argv[1], sys.argv[2]
    lines = ["# kiln GPU check", ""]
    env = _read(os.path.join(work, "env.log")).strip()
    lines += ["## Machine", "", "```", env or "(no environment log)", "```", ""]
    table, rows = steps_table(work)
    lines += ["## Steps", ""] + table + [""]
    counts = suite_counts(work)
    lines += ["## GPU test suite (tests/gpu, tests/engine/test_device.py)", ""]
    if counts:
        lines.append(f"passed {counts['passed']}, failed {counts['failures']}, errors {counts['errors']}, "
                     f"skipped {counts['skipped']} (of {counts['tests']})")
        for name in counts["failing"]:  # type: ignore[union-attr]
            lines.append(f"- {name}")
    else:
        lines.append("no JUnit report (the suite did not run or was cut off)")
    lines += ["", "```", _tail(_read(os.path.join(work, "suite.log")), 25), "```", ""]
    demo = demo_figures(work)
    lines += ["## Demo config (kiln::shapes/retinanet_r18_fpn_shapes.py)", ""]
    if demo:
        for key, value in demo.items():
            lines.append(f"- {key}: {value:.4g}" if isinstance(value, float) else f"- {key}: {value}")
    else:
        lines.append("no metrics (the run did not get far enough)")
    lines += ["", "```", _tail(_read(os.path.join(work, "demo.log")), 12), "```", ""]
    benches = (
        ("detector_step", "RetinaNet R50-FPN vs torchvision (benchmarks/detector_step.py)", 8),
        ("two_stage_step", "Faster R-CNN R50-FPN vs torchvision (benchmarks/two_stage_step.py)", 4),
    )
    for step, title, n in benches:
        text = _tail(_read(os.path.join(work, f"{step}.log")), n) or "(no output)"
        lines += [f"## {title}", "", "```", text, "```", ""]
    failed = [name for name, status, _, _ in rows if status != "ok"]
    suite_bad = bool(counts) and (counts["failures"] or counts["errors"])  # type: ignore[operator]
    verdict = "ALL OK" if rows and not failed and not suite_bad else f"NOT OK: {', '.join(failed) or 'tests'}"
    lines.insert(2, f"**{verdict}**\n")
    os.makedirs(os.path.dirname(os.path.abspath(summary)), exist_ok=True)
    with open(summary, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"summary: {summary} ({verdict})")


if __name__ == "__main__":
    main()
