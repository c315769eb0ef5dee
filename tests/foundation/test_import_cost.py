"""kiln's foundation modules must not import torch (or other heavy modules) at import time."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "cv2", "pycocotools", "tensorboard", "fsspec", "yaml", "numpy", "matplotlib")


@pytest.mark.parametrize("module", ["kiln", "kiln.config", "kiln.fileio", "kiln.registry", "kiln.image"])
def test_module_import_does_not_load_heavy_dependencies(module):
    code = (
        f"import sys, {module}\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_loading_a_python_config_does_not_import_torch(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("model = dict(type='X', depth=50)\n")
    code = (
        "import sys\nfrom kiln.config import Config\n"
        f"Config.fromfile({str(path)!r}).dump()\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
