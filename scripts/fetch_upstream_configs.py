"""Download the released MMDetection wheels and extract their ``configs/`` trees (nothing is installed).

kiln's upstream-config tests and ``scripts/mmdet_config_parity.py`` run MMDetection's own config files
unchanged. They are read from the released packages (``pip download --no-deps``), so the trees are the
exact files users have, and no MMDetection code is ever imported or installed.

    python scripts/fetch_upstream_configs.py [--dest .venv/upstream]

Result: ``<dest>/mmdet-3.3.0/configs/...`` and ``<dest>/mmdet-2.28.2/configs/...``; a tree already in
place is kept. Tests find the trees in ``$KILN_UPSTREAM_CONFIGS`` (default ``<repo>/.venv/upstream``).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

VERSIONS = ("3.3.0", "2.28.2")
_PREFIX = "mmdet/.mim/configs/"


def fetch(version: str, dest: str) -> str:
    """Extract ``mmdet==version``'s configs under ``dest/mmdet-<version>/configs``; return that path."""
    out = os.path.join(dest, f"mmdet-{version}", "configs")
    if os.path.isdir(out) and os.listdir(out):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--disable-pip-version-check", f"mmdet=={version}", "-d", tmp], check=True)
        wheels = glob.glob(os.path.join(tmp, f"mmdet-{version}-*.whl"))
        if not wheels:
            raise SystemExit(f"pip download gave no mmdet {version} wheel in {tmp}")
        staging = out + ".partial"
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in zf.namelist():
                if name.startswith(_PREFIX) and not name.endswith("/"):
                    target = os.path.join(staging, name[len(_PREFIX):])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with zf.open(name) as src, open(target, "wb") as dst:
                        dst.write(src.read())
        os.replace(staging, out)  # a half-extracted tree never looks complete
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=os.path.join(os.path.dirname(__file__), "..", ".venv", "upstream"))
    args = parser.parse_args()
    for version in VERSIONS:
        print(fetch(version, os.path.abspath(args.dest)))


if __name__ == "__main__":
    main()
