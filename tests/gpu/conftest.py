"""The GPU suite: its helper module (gpu_workloads) is importable from the tests here."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
