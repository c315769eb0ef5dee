"""Import cost of kiln's foundation next to ``import torch``, measured in the same run.

Each sample is a fresh interpreter that times, with ``time.perf_counter``:
  A. ``import torch``                      (the baseline)
  B. ``import torch`` then the kiln modules (what a training script pays)
  C. the kiln modules alone                 (what ``kiln config ...`` style tools pay)
Samples of A/B/C alternate so machine noise hits all three alike; medians are reported.
Goal: B / A <= 1.10.

    .venv/bin/python benchmarks/import_time.py [--repeat 7] [--modules kiln kiln.config ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

DEFAULT_MODULES = ["kiln", "kiln.config", "kiln.fileio", "kiln.registry", "kiln.image"]


def _time_imports(pre: list[str], mods: list[str]) -> float:
    code = (
        "import time, importlib\n"
        f"for m in {pre!r}: importlib.import_module(m)\n"
        "t = time.perf_counter()\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    """Measure and print a small table plus the B/A ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--modules", nargs="+", default=DEFAULT_MODULES)
    args = parser.parse_args()

    _time_imports([], ["torch"])  # warm the OS file cache once, not counted
    torch_s, both_s, kiln_s = [], [], []
    for _ in range(args.repeat):
        torch_s.append(_time_imports([], ["torch"]))
        both_s.append(_time_imports([], ["torch", *args.modules]))
        kiln_s.append(_time_imports([], args.modules))
    a, b, c = (statistics.median(x) for x in (torch_s, both_s, kiln_s))
    print(f"modules: {' '.join(args.modules)}   (median of {args.repeat} fresh interpreters)")
    print(f"A  import torch                 {a * 1e3:8.1f} ms")
    print(f"B  import torch + kiln modules  {b * 1e3:8.1f} ms")
    print(f"C  kiln modules alone           {c * 1e3:8.1f} ms")
    print(f"ratio B/A = {b / a:.3f}  (goal <= 1.10)   C/A = {c / a:.3f}")


if __name__ == "__main__":
    main()
