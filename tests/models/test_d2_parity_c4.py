"""C4 Faster R-CNN (Detectron2's ``Res5ROIHeads``) reproduces Detectron2's own losses: kiln's ``ResLayer``
shared head and ``BBoxHead(with_avg_pool=True)`` with the Detectron2 training options.

The reference losses in tests/fixtures/d2_parity/faster_rcnn_c4.json were computed by Detectron2 with
``python scripts/d2_parity.py compare --models faster_rcnn_c4 --iters 20 --write-fixture
tests/fixtures/d2_parity --fixture-iters 4`` (Detectron2's faster_rcnn_R_50_C4_1x.yaml, R50 at a quarter of
its width, 32 RoIs per image, CPU); see tests/models/test_d2_parity.py for the recipe.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _harness():
    spec = importlib.util.spec_from_file_location("d2_parity", ROOT / "scripts" / "d2_parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("model_cfg", ["kiln_model_cfg", "translator_model_cfg"])
def test_kiln_c4_reproduces_detectron2_losses(model_cfg):
    h = _harness()
    fx = json.loads((ROOT / "tests" / "fixtures" / "d2_parity" / "faster_rcnn_c4.json").read_text())
    got = h.kiln_run(fx["d2_config"], h.make_batches(fx["iters"], fx["seed"]), fx["iters"], fx["seed"],
                     model_cfg=getattr(h, model_cfg))
    rel = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-6) for a, b in zip(fx["losses"], got) for k in a)
    assert len(got) == len(fx["losses"]) and rel < 1e-4, (fx["losses"], got)
    assert fx["d2_config"]["MODEL"]["ROI_HEADS"]["NAME"] == "Res5ROIHeads"
