"""Helpers for CLI tests: run `kiln` in a subprocess (the real command) or in-process via main()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_kiln(*args: str, env: dict | None = None, cwd: str | None = None, timeout: int = 600):
    """Run ``python -m kiln ARGS`` and return the CompletedProcess (text output captured)."""
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or str(REPO), timeout=timeout)


@pytest.fixture
def kiln():
    """The real `kiln` command in a subprocess: ``kiln('config', 'print', ...)``."""
    return run_kiln


@pytest.fixture
def kiln_home(tmp_path, monkeypatch):
    """An empty KILN_HOME (model zoo cache) for the test."""
    home = tmp_path / "kiln_home"
    home.mkdir()
    monkeypatch.setenv("KILN_HOME", str(home))
    return home
