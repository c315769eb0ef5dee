"""The seed's own `retinanet_r101_fpn_1x.py` (tests/fixtures, verbatim) trains with only overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "retinanet_r101_fpn_1x.py"


def _coco_layout(root: Path) -> None:
    """data_root in the seed's layout (annotations/instances_{train,val}2017.json, {train,val}2017/) with
    COCO's 80 categories: the seed's head has 80 classes (81 with background in v1), and kiln checks that
    the head and the dataset agree."""
    from upstream_helpers import make_mini_coco

    make_mini_coco(str(root), num_train=4, num_val=2, size=64)


def test_seed_retinanet_r101_config_trains_with_data_root_and_size_overrides(tmp_path):
    root = tmp_path / "coco"
    _coco_layout(root)
    work = tmp_path / "work"
    size = "(64,64)"
    args = ["train", str(FIXTURE), "--work-dir", str(work), "--cfg-options", f"data_root={root}/",
            f"data.train.pipeline.2.img_scale={size}", f"data.val.pipeline.1.img_scale={size}",
            f"data.test.pipeline.1.img_scale={size}", "data.workers_per_gpu=0", "total_epochs=1",
            "log_config.interval=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_HOME=str(tmp_path / "torch"),
               KILN_HOME=str(tmp_path / "kiln"))
    proc = subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, env=env,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # torchvision://resnet101 is not in the (empty) cache: skipped with a warning, not downloaded
    assert "resnet101" in out and "warn" in out.lower()
    cfg_text = (work / "config.py").read_text()
    assert f"{root}/annotations/instances_train2017.json" in cfg_text  # data_root followed
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [0, 1]  # 4 images, imgs_per_gpu=2
    assert any("bbox/AP" in r for r in records)  # evaluation=dict(interval=1, metric='bbox')
    assert (work / "epoch_1.pth").is_file()  # checkpoint_config=dict(interval=1)
