"""MLflowWriter and WandbWriter against the real ``mlflow`` (mlflow-skinny) and ``wandb`` packages, offline.

A tiny Runner trains with kiln's JSONWriter next to the tracking writer; the metrics are then read back
from what the tracking package wrote (MLflow's local store through ``MlflowClient``; the W&B offline run
file ``run-<id>.wandb``, record by record) and must match ``metrics.jsonl`` step for step.

Both packages are pinned in requirements/ci.txt (extra ``tracking`` in pyproject.toml), so these tests
run in CI. Nothing here reaches the network: W&B runs offline, MLflow uses a local store with its
telemetry off, and each test fails after ``_TIMEOUT_S`` instead of hanging.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import wandb
from mlflow.exceptions import MlflowException
from PIL import Image
from wandb.proto import wandb_internal_pb2

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import MSEEvaluator, ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner  # noqa: E402
from kiln.engine.events import EventStorage  # noqa: E402
from kiln.engine.hooks import Hook  # noqa: E402
from kiln.engine.writers import MLflowWriter  # noqa: E402

_TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def _offline_and_bounded(monkeypatch):
    """No tracking server, telemetry or user settings leak in (or out); a test fails after _TIMEOUT_S."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.setenv(name, "")  # recorded, so what the test (or the writer) sets is undone after it
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("WANDB_SILENT", "true")

    def _timeout(signum, frame):
        raise TimeoutError(f"ran over {_TIMEOUT_S} s (blocked on the network or the W&B service?)")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


class _PutImages(Hook):
    """Puts a known C×H×W float image (values in [0, 1]) at the given iterations."""

    def __init__(self, iters):
        self.iters = set(iters)
        self.images = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        it = runner.storage.iter
        if it in self.iters:
            img = torch.zeros(3, 4, 5)
            img[0] = 1.0
            img[1, :2] = 0.5
            img[2] = it / 20
            runner.storage.put_image("sample", img)
            self.images[it] = img


def _train(tmp_path, writer_cfg, image_iters=()):
    """12 iterations (3 epochs of 4 batches), writes at 2, 5, 8, 11 and epoch ends, validation each epoch."""
    model = ToyRegressor()
    images = _PutImages(image_iters)
    runner = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=toy_batches(4),
        val_dataloader=toy_batches(2, seed=9),
        val_evaluator=MSEEvaluator(),
        max_epochs=3,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.05),
        default_hooks=dict(
            checkpoint=None,
            eval=dict(type="EvalHook", interval=1),
            logger=dict(
                type="LoggerHook",
                interval=3,
                writers=[dict(type="JSONWriter", json_file=str(tmp_path / "metrics.jsonl")), writer_cfg],
            ),
        ),
        custom_hooks=[images],
    )
    runner.train()
    return images.images


def _jsonl_by_iter(path):
    """``{iteration: {scalar: value}}`` from metrics.jsonl (lines of the same iteration merged)."""
    rows: dict[int, dict[str, float]] = defaultdict(dict)
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        rows[row.pop("iteration")].update(row)
    return dict(rows)


# --------------------------------------------------------------------------------------------- MLflow


def _mlflow_runs(store_dir, experiment="kiln"):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # to read a file store (the fixture undoes it)
    client = mlflow.MlflowClient(tracking_uri="file:" + str(store_dir))
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


def test_mlflow_writer_logs_every_metric_at_its_iteration_into_a_local_store(tmp_path):
    cfg = dict(type="MLflowWriter", log_dir=str(tmp_path), run_name="toy", params={"lr": 0.05, "depth": 2})
    _train(tmp_path, cfg)
    expected = _jsonl_by_iter(tmp_path / "metrics.jsonl")
    keys = set().union(*expected.values())
    assert {"loss_mse", "loss", "lr", "epoch", "time", "mse"} <= keys

    client, runs = _mlflow_runs(tmp_path / "mlruns")
    (run,) = runs
    assert run.info.run_name == "toy"
    assert run.info.status == "FINISHED" and run.info.end_time is not None  # close() ended the run
    assert run.data.params == {"lr": "0.05", "depth": "2"}
    assert run.data.tags["mlflow.source.type"] == "LOCAL"  # MLflow's own tags, as start_run sets them
    assert set(run.data.metrics) == keys
    for key in sorted(keys):
        want = [(it, row[key]) for it, row in sorted(expected.items()) if key in row]
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert got == want, key


def test_mlflow_writer_opts_in_to_the_file_store_unless_the_user_opted_out(tmp_path, monkeypatch):
    MLflowWriter(log_dir=str(tmp_path / "a")).close()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"  # MLflow 3.x refuses file stores without it

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    if hasattr(mlflow.environment_variables, "MLFLOW_ALLOW_FILE_STORE"):  # MLflow >= 3.13 (CI pins 3.17)
        with pytest.raises(MlflowException, match="MLFLOW_ALLOW_FILE_STORE"):
            MLflowWriter(log_dir=str(tmp_path / "b"))
    else:  # older MLflow has no such switch
        MLflowWriter(log_dir=str(tmp_path / "b")).close()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "false"


def test_mlflow_writer_runs_share_the_experiment_and_leave_the_callers_run_alone(tmp_path):
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # the script's own file store (undone by the fixture)
    own_uri = "file:" + str(tmp_path / "script_store")
    mlflow.set_tracking_uri(own_uri)
    try:
        with mlflow.start_run(run_name="script") as outer:  # a script that wraps training in its own run
            for name in ("first", "second"):
                w = MLflowWriter(log_dir=str(tmp_path), run_name=name)
                with EventStorage(start_iter=7) as s:
                    s.put_scalar("loss", 0.25)
                    w.write()
                w.close()
            assert mlflow.active_run().info.run_id == outer.info.run_id
            assert mlflow.get_tracking_uri() == own_uri
    finally:
        mlflow.set_tracking_uri(None)
    client, runs = _mlflow_runs(tmp_path / "mlruns")
    assert sorted(r.info.run_name for r in runs) == ["first", "second"]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "loss")] == [(7, 0.25)]


def test_mlflow_writer_renames_keys_mlflow_rejects_instead_of_failing_the_batch(tmp_path, caplog):
    w = MLflowWriter(log_dir=str(tmp_path), params={"optim(type)": "SGD"})
    with caplog.at_level(logging.WARNING, logger="kiln.engine.writers"):
        for it in (3, 4):
            with EventStorage(start_iter=it) as s:
                s.put_scalar("bbox/AP-bow_(weapon)", 40.0 + it, smoothing_hint=False)
                s.put_scalar("acc@1", 0.5, smoothing_hint=False)
                s.put_scalar("bbox/APs", float("nan"), smoothing_hint=False)  # COCO's "no small objects"
                w.write()
    w.close()
    client, (run,) = _mlflow_runs(tmp_path / "mlruns")
    assert set(run.data.metrics) == {"bbox/AP-bow__weapon_", "acc_1", "bbox/APs"}
    assert run.data.params == {"optim_type_": "SGD"}
    history = client.get_metric_history(run.info.run_id, "bbox/AP-bow__weapon_")
    assert [(m.step, m.value) for m in history] == [(3, 43.0), (4, 44.0)]
    assert math.isnan(client.get_metric_history(run.info.run_id, "bbox/APs")[0].value)
    renamed = [r.getMessage() for r in caplog.records if "MLflow accepts" in r.getMessage()]
    assert len(renamed) == 3  # once per renamed key, not once per write


# ----------------------------------------------------------------------------------------------- W&B


def _wandb_records(path):
    """The protobuf records of a W&B run file: a 7-byte header, then LevelDB-log framed records."""
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the tail of a block too short for a record header is zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # FULL
            yield wandb_internal_pb2.Record.FromString(payload)
        elif kind == 2:  # FIRST
            pending = payload
        elif kind == 3:  # MIDDLE
            pending += payload
        elif kind == 4:  # LAST
            yield wandb_internal_pb2.Record.FromString(pending + payload)


def _wandb_offline_run(log_dir):
    """The run directory, the records and ``{step: history row}`` of the one offline run in ``log_dir``."""
    (run_dir,) = glob.glob(os.path.join(log_dir, "wandb", "offline-run-*"))
    (run_file,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    records = list(_wandb_records(run_file))
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {".".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            history[row["_step"]] = row
    return run_dir, records, history


def test_wandb_writer_logs_every_metric_and_image_at_its_iteration_offline(tmp_path):
    cfg = dict(type="WandbWriter", log_dir=str(tmp_path / "wb"), name="toy", config={"lr": 0.05, "depth": 2})
    # Iteration 1's image is written at iteration 2 (after that iteration's scalars, were they sent first,
    # W&B would drop it); iteration 7's is put before the write of its own iteration.
    images = _train(tmp_path, cfg, image_iters=(1, 7))
    assert wandb.run is None  # close() finished the run
    # finish() returns before the W&B service has written the last records; teardown waits for them.
    wandb.teardown()
    expected = _jsonl_by_iter(tmp_path / "metrics.jsonl")

    run_dir, records, history = _wandb_offline_run(tmp_path / "wb")
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds.count("run") == 1 and kinds[-1] == "exit"
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "toy" and run.project == "kiln"
    assert {u.key: json.loads(u.value_json) for u in run.config.update if u.key != "_wandb"} == {
        "lr": 0.05,
        "depth": 2,
    }

    scalars = {}
    for step, row in history.items():
        scalars[step] = {k: v for k, v in row.items() if not k.startswith(("_", "sample"))}
    assert scalars.pop(1) == {}  # iteration 1 has an image and no scalars
    assert scalars == expected  # the same steps, keys and values as metrics.jsonl

    # One PNG per put_image, in the row of the iteration it was put at, [0, 1] scaled to 0..255.
    assert sorted(step for step, row in history.items() if "sample._type" in row) == [1, 7]
    for it, img in images.items():
        row = history[it]
        assert row["sample._type"] == "image-file" and (row["sample.width"], row["sample.height"]) == (5, 4)
        png = np.asarray(Image.open(os.path.join(run_dir, "files", row["sample.path"])).convert("RGB"))
        np.testing.assert_array_equal(png, (img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())


def test_wandb_writer_in_a_script_the_run_is_complete_when_the_process_exits(tmp_path):
    # What a training script does: write, close, exit. A child process owns its own W&B service.
    script = textwrap.dedent(
        f"""
        import wandb
        from kiln.engine.events import EventStorage
        from kiln.engine.writers import WandbWriter

        w = WandbWriter(log_dir={str(tmp_path)!r}, name="script")
        for it in (3, 5):
            with EventStorage(start_iter=it) as s:
                s.put_scalar("loss", it / 10)
                w.write()
        w.close()
        assert wandb.run is None
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env["WANDB_SILENT"] = "true"
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=45
    )
    assert proc.returncode == 0, proc.stderr
    _, records, history = _wandb_offline_run(tmp_path)
    assert {step: row["loss"] for step, row in history.items()} == {3: 0.3, 5: 0.5}
    assert records[-1].WhichOneof("record_type") == "exit"
