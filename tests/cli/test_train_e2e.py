"""The real `kiln` command in subprocesses on tiny generated data: train → test → infer → plot."""

from __future__ import annotations

import json

import pytest

CFG = "kiln::shapes/retinanet_r18_fpn_shapes.py"
TINY = ["data.train.num_images=8", "data.train.image_size=64", "data.val.num_images=2",
        "data.val.image_size=64", "data.test.num_images=2", "data.test.image_size=64",
        "data.samples_per_gpu=4", "data.workers_per_gpu=0", "total_epochs=1", "log_config.interval=1"]

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run (2 iterations + validation) shared by the tests of this module."""

    root = tmp_path_factory.mktemp("e2e")
    env = {"KILN_DATA": str(root / "data")}
    work = root / "work"
    proc = _run("train", CFG, "--work-dir", str(work), "--cfg-options", *TINY, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, env, proc

def _run(*args, env, cwd=None):
    import os
    import subprocess
    import sys

    full = dict(os.environ, OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, env=full,
                          timeout=900, cwd=cwd)

def test_train_leaves_log_metrics_events_checkpoint_and_config(trained):
    work, _, _ = trained
    assert (work / "epoch_1.pth").is_file()
    assert (work / "last_checkpoint").read_text().strip().endswith("epoch_1.pth")
    assert "Environment" in (work / "log.txt").read_text()
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("bbox/AP" in r for r in records)
    assert list((work / "tf_logs").rglob("events.out.tfevents.*"))
    from kiln.config import Config

    # the dumped config is the canonical one the run was built from (total_epochs=1 -> train_cfg)
    assert Config.fromfile(str(work / "config.py")).train_cfg.max_epochs == 1

def test_test_command_evaluates_checkpoint_and_writes_metrics_and_detections(trained, tmp_path):
    work, env, _ = trained
    out = tmp_path / "dets.json"
    proc = _run("test", str(work / "config.py"), str(work / "epoch_1.pth"), "--out", str(out),
                "--show-dir", str(tmp_path / "show"), "--show-score-thr", "0.0", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bbox/AP:" in proc.stdout
    # redirected output: log lines, not a redrawn tqdm bar (text mode turns its \r into newlines)
    assert "%|" not in proc.stderr
    metrics = json.loads((work / "test_metrics.json").read_text())
    assert "bbox/AP" in metrics and metrics["checkpoint"].endswith("epoch_1.pth")
    assert isinstance(json.loads(out.read_text()), list)
    assert len(list((tmp_path / "show").glob("*.png"))) == 2

def test_testing_a_run_dir_writes_the_results_into_that_run(trained, tmp_path):
    """`kiln test CFG RUN_DIR` with the packaged config (whose work_dir is ./work_dirs/<name>): the results
    belong to the run evaluated, not to a new directory named after the config."""
    work, env, _ = trained
    (work / "test_metrics.json").unlink(missing_ok=True)
    proc = _run("test", CFG, str(work), "--cfg-options", *TINY, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((work / "test_metrics.json").read_text())["checkpoint"].endswith("epoch_1.pth")
    assert not (tmp_path / "work_dirs").exists()


def test_infer_writes_pngs_and_json_for_given_images(trained, tmp_path):
    work, env, _ = trained
    data = list((work.parent / "data").glob("shapes-val-*/images/*.jpg"))
    proc = _run("infer", str(work / "config.py"), str(work / "epoch_1.pth"), str(data[0]),
                "--out-dir", str(tmp_path / "pred"), "--score-thr", "0.0", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(preds) == 1 and preds[0]["file_name"] == str(data[0])
    assert set(preds[0]) >= {"boxes", "scores", "labels", "label_names"}
    assert (tmp_path / "pred" / (data[0].stem + ".png")).is_file()

def test_plot_draws_loss_and_lr_curves(trained, tmp_path):
    work, env, _ = trained
    out = tmp_path / "curve.png"
    proc = _run("plot", str(work / "metrics.jsonl"), "--keys", "loss", "lr", "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

def test_plot_unknown_key_exits_2_listing_present_keys(trained, tmp_path):
    work, env, _ = trained
    proc = _run("plot", str(work / "metrics.jsonl"), "--keys", "los", env=env)
    assert proc.returncode == 2 and "loss" in proc.stderr and "Traceback" not in proc.stderr

def test_resume_continues_from_last_checkpoint(trained, tmp_path):
    work, env, _ = trained
    proc = _run("train", CFG, "--work-dir", str(work), "--resume", "--cfg-options", *TINY[:-2],
                "total_epochs=2", "log_config.interval=1", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "epoch_2.pth").is_file()
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iteration"] for r in records if "loss" in r]
    assert iters == sorted(set(iters)) and max(iters) == 3  # iterations 2, 3 continue 0, 1

def test_bad_config_value_in_train_exits_2_naming_the_key(tmp_path):
    proc = _run("train", CFG, "--work-dir", str(tmp_path / "w"), "--cfg-options",
                "model.bbox_head.type=RetinaHed", env={"KILN_DATA": str(tmp_path / "d")})
    assert proc.returncode == 2
    assert "RetinaHed" in proc.stderr and "RetinaHead" in proc.stderr and "Traceback" not in proc.stderr
