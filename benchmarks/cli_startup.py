"""Start-up cost of the `kiln` command, against bare interpreters measured in the same run.

Each command runs in a fresh interpreter, interleaved round by round; medians are reported.

* A ``python -c pass``                      (interpreter baseline)
* B ``python -c "import torch"``            (what any torch program pays)
* C ``python -m kiln --version``            (parser with every subcommand)
* D ``python -m kiln config print kiln::retinanet/retinanet_r50_fpn_1x_coco.py``
* E ``python -m kiln zoo list``

Goal: C - A and D - A stay small next to B - A, i.e. the command does not import torch (or cv2,
pycocotools, matplotlib) unless the subcommand needs it.

Usage: ``.venv/bin/python benchmarks/cli_startup.py --repeat 7``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "A python -c pass": [sys.executable, "-c", "pass"],
    "B import torch": [sys.executable, "-c", "import torch"],
    "C kiln --version": [sys.executable, "-m", "kiln", "--version"],
    "D kiln config print": [sys.executable, "-m", "kiln", "config", "print",
                            "kiln::retinanet/retinanet_r50_fpn_1x_coco.py"],
    "E kiln zoo list": [sys.executable, "-m", "kiln", "zoo", "list"],
}


def main() -> None:
    """Run the rounds and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.repeat):
        for name, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    base = med["A python -c pass"]
    torch_cost = med["B import torch"] - base
    print("| command | median | minus interpreter | / (import torch cost) |")
    print("|---|---|---|---|")
    for name, ms in med.items():
        extra = ms - base
        print(f"| {name} | {ms:.0f} ms | {extra:.0f} ms | {extra / torch_cost:.3f} |")


if __name__ == "__main__":
    main()
