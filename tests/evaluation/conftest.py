"""Fixtures of the evaluation tests."""

from __future__ import annotations

import json

import pytest
from evaluation_data import make_gt


@pytest.fixture
def gt_file(tmp_path):
    """Path of a real COCO json on disk."""
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(make_gt()))
    return str(path)
