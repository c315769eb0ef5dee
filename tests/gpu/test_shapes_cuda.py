"""The demo detector on the GPU through the real command: train, evaluate (COCO AP), infer."""

from __future__ import annotations

import json

import pytest
from gpu_workloads import SHAPES_CFG, kiln_cmd, shapes_options

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short RetinaNet run on the shapes data on cuda (2 epochs of 40 iterations + validation).

    Validation keeps every detection (score_thr 0): a briefly trained model scores low, and COCO AP
    is undefined (NaN) without any detection.
    """
    root = tmp_path_factory.mktemp("shapes_cuda")
    env = {"KILN_DATA": str(root / "data")}
    work = root / "work"
    proc = kiln_cmd("train", SHAPES_CFG, "--work-dir", str(work), "--device", "cuda", "--cfg-options",
                    *shapes_options(train_images=320), "model.test_cfg.score_thr=0.0", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, env


def test_training_logs_peak_cuda_memory_and_validation_ap(trained):
    work, _ = trained
    log = (work / "log.txt").read_text()
    assert "max_mem:" in log
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    aps = [r["bbox/AP"] for r in records if "bbox/AP" in r]
    assert len(aps) == 2 and all(0.0 <= ap <= 100.0 for ap in aps)


def test_gpu_evaluation_agrees_with_cpu_evaluation_of_the_same_checkpoint(trained, tmp_path):
    work, env = trained
    results = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / f"dets_{device}.json"
        # Every detection kept (a briefly trained model scores low): the comparison sees them all.
        proc = kiln_cmd("test", str(work / "config.py"), str(work), "--device", device, "--out", str(out),
                        "--work-dir", str(tmp_path / device), "--cfg-options", "model.test_cfg.score_thr=0.0",
                        env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics = json.loads((tmp_path / device / "test_metrics.json").read_text())
        results[device] = (metrics["bbox/AP"], len(json.loads(out.read_text())))
    (ap_gpu, n_gpu), (ap_cpu, n_cpu) = results["cuda"], results["cpu"]
    assert n_gpu > 0
    # Different kernels, same model: AP within a point, detection counts within 5%.
    assert abs(ap_gpu - ap_cpu) <= 1.0, results
    assert abs(n_gpu - n_cpu) <= 0.05 * n_cpu + 1, results


def test_infer_on_the_gpu_writes_predictions(trained, tmp_path):
    work, env = trained
    out = tmp_path / "pred"
    proc = kiln_cmd("infer", str(work / "config.py"), str(work), "--dataset-images", "4", "--device", "cuda",
                    "--out-dir", str(out), "--score-thr", "0.05", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == 4 and all({"boxes", "scores", "labels"} <= set(p) for p in preds)
    assert len(list(out.glob("*.png"))) == 4
