"""Config resolution parity: MMDetection's own config trees resolved by kiln and by MMEngine 0.10.

Every config of the released MMDetection ``configs/`` trees (all ``.py`` files outside ``_base_``
folders) is loaded twice: by kiln's ``Config.fromfile`` in this process, and by MMEngine's
``Config.fromfile`` in a separate Python that has MMEngine installed (a side virtualenv; MMEngine is
never a kiln dependency and never imported here). Each resolved config is reduced to plain JSON
(dicts, lists, scalars: tuples become lists, ``ConfigDict`` becomes dict; only representation is
normalised, a different value counts) and the two are compared.

    python scripts/mmdet_config_parity.py --mmengine-python /path/to/sidevenv/bin/python \\
        [--root .venv/upstream] [--versions 3.3.0 2.28.2] [--json-out parity.json]

Prints per tree: configs, loaded by kiln, loaded by MMEngine, resolved identically, differing
(with the first differing key path; a config whose only difference is a ``_delete_`` marker that
MMEngine leaves in place when the base had no such key, and kiln drops, is counted apart), and
the configs one side refuses (with the reason). Configs
that both refuse (e.g. ``custom_imports`` of packages that are not installed) are counted as "both
refuse". The trees come from ``scripts/fetch_upstream_configs.py``; ``--root`` defaults to
``$KILN_UPSTREAM_CONFIGS`` or ``<repo>/.venv/upstream``. Exit status 1 when a config both load
resolves differently.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# Runs inside the MMEngine interpreter: one JSON line per config on stdout.
_MMENGINE_CHILD = r'''
import json, math, sys, warnings
warnings.filterwarnings("ignore")
from mmengine.config import Config

def plain(v):
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return {"__float__": repr(v)}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, type):
        return {"__class__": v.__qualname__}
    return {"__object__": type(v).__qualname__, "repr": repr(v)}

for path in sys.stdin.read().split("\n"):
    if not path:
        continue
    try:
        out = {"path": path, "cfg": plain(Config.fromfile(path).to_dict())}
    except BaseException as exc:  # a config may raise anything, also SystemExit
        out = {"path": path, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    print(json.dumps(out), flush=True)
'''


def plain(v: Any) -> Any:
    """The JSON form both sides are reduced to (kept identical to the child's ``plain``)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return {"__float__": repr(v)}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, type):
        return {"__class__": v.__qualname__}
    return {"__object__": type(v).__qualname__, "repr": repr(v)}


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first key path where ``a`` and ``b`` differ (kiln, MMEngine), or None if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if path else key
            if key not in a:
                return sub, "<missing>", b[key]
            if key not in b:
                return sub, a[key], "<missing>"
            found = first_difference(a[key], b[key], sub)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}.{i}")
            if found:
                return found
        return None
    if type(a) is not type(b) or a != b:
        return path, a, b
    return None


def without_delete_markers(v: Any) -> Any:
    """``v`` without ``_delete_`` keys (MMEngine leaves one where the base had nothing to delete)."""
    if isinstance(v, dict):
        return {k: without_delete_markers(x) for k, x in v.items() if k != "_delete_"}
    if isinstance(v, list):
        return [without_delete_markers(x) for x in v]
    return v


def list_configs(tree: str) -> list[str]:
    """Every ``.py`` config of a ``configs/`` tree outside ``_base_`` folders, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if d != "_base_")
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return sorted(out)


def load_kiln(path: str) -> dict:
    """kiln's resolution of one config as plain JSON, or the first line of its error."""
    from kiln.config import Config

    try:
        return {"cfg": plain(Config.fromfile(path).to_dict())}
    except Exception as exc:  # the row records any refusal
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return {"error": f"{type(exc).__name__}: {msg}"}


def _short(value: Any, n: int = 90) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def compare_tree(version: str, tree: str, mmengine_python: str) -> dict:
    """Load every config of ``tree`` with both loaders; return counts and per-config rows."""
    paths = list_configs(tree)
    t0 = time.perf_counter()
    child = subprocess.Popen(  # MMEngine works in parallel with kiln's in-process loads
        [mmengine_python, "-c", _MMENGINE_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, cwd=tree,
    )
    child.stdin.write("\n".join(paths) + "\n")
    child.stdin.close()
    kiln_rows = {p: load_kiln(p) for p in paths}
    kiln_s = time.perf_counter() - t0
    mm_rows = {}
    for line in child.stdout:
        row = json.loads(line)
        mm_rows[row.pop("path")] = row
    child.wait()
    rows = []
    for p in paths:
        k, m = kiln_rows[p], mm_rows.get(p, {"error": "MMEngine process gave no result"})
        rel = os.path.relpath(p, tree)
        if "cfg" in k and "cfg" in m:
            diff = first_difference(k["cfg"], m["cfg"])
            status = "identical" if diff is None else "differ"
            if diff and first_difference(k["cfg"], without_delete_markers(m["cfg"])) is None:
                status = "stray _delete_"  # kiln drops a marker that had no base value to delete
            rows.append(dict(config=rel, status=status, diff=diff))
        elif "cfg" in k:
            rows.append(dict(config=rel, status="mmengine refuses", reason=m["error"]))
        elif "cfg" in m:
            rows.append(dict(config=rel, status="kiln refuses", reason=k["error"]))
        else:
            reason = f"kiln: {k['error']} | MMEngine: {m['error']}"
            rows.append(dict(config=rel, status="both refuse", reason=reason))
    count = {s: sum(r["status"] == s for r in rows) for s in
             ("identical", "stray _delete_", "differ", "kiln refuses", "mmengine refuses", "both refuse")}
    return dict(version=version, configs=len(paths), rows=rows, counts=count,
                seconds=round(time.perf_counter() - t0, 1), kiln_seconds=round(kiln_s, 1),
                loaded_kiln=len(paths) - count["kiln refuses"] - count["both refuse"],
                loaded_mmengine=len(paths) - count["mmengine refuses"] - count["both refuse"])


def report(result: dict) -> None:
    """Print the summary line and every row that is not 'identical'."""
    c = result["counts"]
    both = c["identical"] + c["differ"] + c["stray _delete_"]
    print(f"MMDetection {result['version']}: {result['configs']} configs; "
          f"loaded by kiln {result['loaded_kiln']}, by MMEngine {result['loaded_mmengine']}; "
          f"both load {both}: resolved identically {c['identical']}, "
          f"identical but for a stray _delete_ marker MMEngine keeps {c['stray _delete_']}, "
          f"differ {c['differ']}; both refuse {c['both refuse']}; only kiln refuses {c['kiln refuses']}; "
          f"only MMEngine refuses {c['mmengine refuses']}  ({result['seconds']} s)")
    for row in result["rows"]:
        if row["status"] in ("differ", "stray _delete_"):
            path, kv, mv = row["diff"]
            print(f"  {row['status'].upper():>16}  {row['config']}: {path or '<root>'}: "
                  f"kiln {_short(kv)} vs MMEngine {_short(mv)}")
        elif row["status"] != "identical":
            print(f"  {row['status'].upper():>16}  {row['config']}: {row['reason'][:200]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmengine-python", default=os.environ.get("KILN_MMENGINE_PYTHON"),
                        help="a Python with MMEngine 0.10 installed (or $KILN_MMENGINE_PYTHON)")
    parser.add_argument("--root", default=os.environ.get("KILN_UPSTREAM_CONFIGS",
                                                         os.path.join(REPO, ".venv", "upstream")))
    parser.add_argument("--versions", nargs="+", default=["3.3.0", "2.28.2"])
    parser.add_argument("--json-out", help="write every row (config, status, difference or reason) here")
    args = parser.parse_args()
    if not args.mmengine_python:
        parser.error("--mmengine-python (or $KILN_MMENGINE_PYTHON) is required: a Python with MMEngine 0.10")
    sys.path.insert(0, REPO)
    results, differ = [], 0
    for version in args.versions:
        tree = os.path.join(args.root, f"mmdet-{version}", "configs")
        if not os.path.isdir(tree):
            parser.error(f"{tree} missing: run python scripts/fetch_upstream_configs.py --dest {args.root}")
        result = compare_tree(version, tree, args.mmengine_python)
        report(result)
        results.append(result)
        differ += result["counts"]["differ"]
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
