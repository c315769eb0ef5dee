"""The `make demo` config learns: a shortened run of the same shipped config clears an AP floor.

The full demo (1000 images, 6 epochs) reaches bbox AP 45.3 / AP50 66.0 on the 200 shapes
validation images (measured, see benchmarks/RESULTS.md); a run that long does not fit the test
budget. This run trains the same config on 400 images for 5 epochs (250 iterations, one validation
at the end on 50 images, ~100 s CPU with one thread). Per epoch the AP50 of that run was 2.3, 3.5,
5.9, 13.1, 37.2 (AP 0.7, 0.8, 2.0, 7.7, 18.5) on an AVX2-only AMD EPYC; the same run stopped after
3 epochs had measured AP50 9.0 on an earlier machine and 5.9 here, because the float reduction order
differs between CPUs and the first epochs sit on the flat start of the curve. After 5 epochs the
model is past that start on both: the test guards AP50 >= 15 and AP >= 6 (an untrained model scores
0). One torch thread keeps the run reproducible on one machine and its CPU time bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CFG = "kiln::shapes/retinanet_r18_fpn_shapes.py"
AP50_FLOOR = 15.0
AP_FLOOR = 6.0


def test_shortened_demo_run_clears_the_ap_floor(tmp_path):
    work = tmp_path / "demo"
    env = dict(os.environ, KILN_DATA=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    args = ["train", CFG, "--work-dir", str(work), "--cfg-options", "data.train.num_images=400",
            "total_epochs=5", "data.val.num_images=50", "data.test.num_images=50",
            "checkpoint_config.interval=5", "evaluation.interval=5"]
    proc = subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, env=env,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if "bbox/AP50" in r][-1]
    assert final["bbox/AP50"] >= AP50_FLOOR, \
        f"AP50 {final['bbox/AP50']:.2f} after 250 iterations is below the floor {AP50_FLOOR}"
    assert final["bbox/AP"] >= AP_FLOOR, \
        f"AP {final['bbox/AP']:.2f} after 250 iterations is below the floor {AP_FLOOR}"
