"""Test-suite-wide rules: tests marked ``cuda`` (tests/gpu) are skipped where CUDA is unavailable."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.cuda`` tests with the reason "needs CUDA" on machines without a GPU."""
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in marked:
        item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """No test reaches the internet: weights kiln would download come only from the cache (tests that
    exercise downloads serve files from a loopback server and lift this for themselves)."""
    import os

    os.environ["KILN_OFFLINE"] = "1"
