"""Writers produce real output: console lines via logging, JSON lines, TensorBoard event files."""

import json
import logging
import os
import sys

import pytest
import torch

import kiln.engine.writers
from kiln.engine.events import EventStorage
from kiln.engine.writers import CommonMetricPrinter, JSONWriter, MLflowWriter, TensorboardXWriter, WandbWriter
from kiln.registry import WRITERS


def _run_iters(storage, start, stop):
    for i in range(start, stop):
        storage.iter = i
        storage.put_scalars(total_loss=float(i), loss_cls=torch.tensor(0.5 * i))
        storage.put_scalar("lr", 0.1, smoothing_hint=False)


def test_json_writer_writes_one_parsable_object_per_iteration(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JSONWriter(str(path), window=3)
    with EventStorage() as s:
        _run_iters(s, 0, 3)
        writer.write()
        _run_iters(s, 3, 5)
        writer.write()
    writer.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    # Each scalar's latest value is at the newest iteration, so each write emits one line.
    assert [r["iteration"] for r in rows] == [2, 4]
    assert rows[0] == {"iteration": 2, "total_loss": 1.0, "loss_cls": 0.5, "lr": 0.1}
    assert rows[1]["total_loss"] == 3.0  # median of iterations 2..4


def test_json_writer_groups_scalars_by_the_iteration_they_were_put_at(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JSONWriter(str(path))
    with EventStorage(start_iter=9) as s:
        s.put_scalar("loss", 1.0)
        s.put_scalar("bbox/AP", 40.0, smoothing_hint=False, cur_iter=7)
        writer.write()
        writer.write()  # nothing new: no duplicate lines
    writer.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"iteration": 7, "bbox/AP": 40.0}, {"iteration": 9, "loss": 1.0}]


def test_json_writer_writes_a_metric_put_later_at_an_already_written_iteration(tmp_path):
    # Validation after the last training iteration puts bbox/AP at the iteration whose losses were
    # written already; it must still reach the file.
    path = tmp_path / "metrics.jsonl"
    writer = JSONWriter(str(path))
    with EventStorage(start_iter=9) as s:
        s.put_scalar("loss", 1.0)
        writer.write()
        s.put_scalar("bbox/AP", 40.0, smoothing_hint=False)
        writer.write()
    writer.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"iteration": 9, "loss": 1.0}, {"iteration": 9, "bbox/AP": 40.0}]


def test_a_resumed_runs_writer_does_not_write_the_saved_runs_values_again(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with EventStorage() as saved:
        _run_iters(saved, 0, 4)
        saved.put_scalar("bbox/AP", 40.0, smoothing_hint=False, cur_iter=2)  # validation at iteration 2
        state = saved.state_dict()
    writer = JSONWriter(str(path))  # the resumed run's writer, appending to the same file
    with EventStorage() as s:
        s.load_state_dict(state)
        writer.write()  # nothing new since the checkpoint
        _run_iters(s, 4, 6)
        writer.write()
    writer.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [5] and "bbox/AP" not in rows[0]


def test_json_writer_appends_when_reopened_after_resume(tmp_path):
    path = tmp_path / "out" / "metrics.jsonl"
    for start in (0, 1):
        writer = JSONWriter(str(path))
        with EventStorage(start_iter=start) as s:
            s.put_scalar("loss", float(start))
            writer.write()
        writer.close()
    assert [json.loads(x)["iteration"] for x in path.read_text().splitlines()] == [0, 1]


def test_writers_are_built_from_config(tmp_path):
    writer = WRITERS.build(dict(type="JSONWriter", json_file=str(tmp_path / "m.jsonl")))
    assert isinstance(writer, JSONWriter)
    writer.close()
    assert {"CommonMetricPrinter", "JSONWriter", "TensorboardXWriter", "MLflowWriter", "WandbWriter"} <= set(
        WRITERS.keys()
    )


def test_tensorboard_writer_writes_readable_scalars_images_histograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorboardXWriter(str(tmp_path / "tb"), window=1)
    with EventStorage() as s:
        _run_iters(s, 0, 3)
        s.put_image("vis/sample", torch.rand(3, 6, 5))
        s.put_histogram("weights", torch.randn(100), bins=10)
        writer.write()
        assert s.vis_data == [] and s.histograms_data == []  # consumed
    writer.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"total_loss", "loss_cls", "lr"} <= set(tags["scalars"])
    assert [(e.step, e.value) for e in acc.Scalars("total_loss")] == [(2, 2.0)]
    assert tags["images"] == ["vis/sample"]
    img = acc.Images("vis/sample")[0]
    assert (img.width, img.height, img.step) == (5, 6, 2)
    hist = acc.Histograms("weights")[0]
    assert hist.histogram_value.num == 100


def test_common_metric_printer_logs_eta_iter_losses_time_lr(caplog):
    printer = CommonMetricPrinter(max_iter=100, window=20)
    with EventStorage() as s, caplog.at_level(logging.INFO, logger="kiln.engine.writers"):
        for i in range(20):
            s.iter = i
            s.put_scalars(total_loss=0.5, loss_cls=0.25, time=0.2, data_time=0.01)
            s.put_scalar("lr", 0.02, smoothing_hint=False)
            s.put_scalar("epoch", 1, smoothing_hint=False)
        printer.write()
        assert s.latest()["eta_seconds"][0] == pytest.approx(0.2 * 80)
    record = caplog.records[-1]
    assert (record.name, record.funcName, record.levelno) == ("kiln.engine.writers", "write", logging.INFO)
    assert os.path.samefile(record.pathname, kiln.engine.writers.__file__) and record.lineno > 0
    line = record.getMessage()
    for part in ("eta: 0:00:16", "epoch: 1", "iter: 20/100", "total_loss: 0.5", "loss_cls: 0.25",
                 "time: 0.2000", "data_time: 0.0100", "lr: 0.02"):
        assert part in line, (part, line)


def test_common_metric_printer_builds_no_line_the_logger_would_drop(monkeypatch):
    from kiln.engine.events import HistoryBuffer

    def boom(self, window):
        raise AssertionError("the line was formatted although nothing emits it")

    printer = CommonMetricPrinter(max_iter=100, logger_name="kiln.test.quiet_printer")
    logging.getLogger("kiln.test.quiet_printer").setLevel(logging.WARNING)
    monkeypatch.setattr(HistoryBuffer, "median", boom)
    with EventStorage() as s:
        for i in range(10):
            s.iter = i
            s.put_scalars(loss_cls=0.25, time=0.2)
        printer.write()  # would raise if it smoothed the losses for the line
        assert s.latest()["eta_seconds"][0] == pytest.approx(0.2 * 90)  # still put for the JSON file
        logging.getLogger("kiln.test.quiet_printer").setLevel(logging.INFO)
        with pytest.raises(AssertionError, match="formatted"):
            printer.write()


def test_eta_uses_the_mean_iteration_time_so_recurring_slow_iterations_count():
    # 9 iterations of 0.1 s and one of 1.1 s (a checkpoint save): the median would say 0.1 s/iter.
    printer = CommonMetricPrinter(max_iter=20)  # 10 iterations left after iteration 9
    with EventStorage() as s:
        for i in range(10):
            s.iter = i
            s.put_scalar("time", 1.1 if i == 4 else 0.1)
        printer.write()
        assert s.latest()["eta_seconds"][0] == pytest.approx(0.2 * 10)  # mean 0.2 s (median: 0.1)


def test_eta_follows_the_recent_iteration_time_not_the_whole_run():
    # 1000 slow iterations (1 s), then 1500 fast ones (0.1 s), a line every 50: the estimate at the
    # end uses the last ~1000 iterations only.
    printer = CommonMetricPrinter(max_iter=3500)
    with EventStorage() as s:
        for i in range(2500):
            s.iter = i
            s.put_scalar("time", 1.0 if i < 1000 else 0.1)
            if (i + 1) % 50 == 0:
                printer.write()
        assert s.latest()["eta_seconds"][0] == pytest.approx(0.1 * 1000)
        h = s.history("eta_seconds")
        first = h.values()[0][0]
        assert first == pytest.approx(1.0 * (3500 - 50))  # the first line: the mean of all so far


def test_common_metric_printer_estimates_eta_without_timer(caplog):
    printer = CommonMetricPrinter(max_iter=10)
    with EventStorage() as s, caplog.at_level(logging.INFO, logger="kiln.engine.writers"):
        s.put_scalar("loss", 1.0)
        printer.write()
        assert "eta" not in caplog.records[-1].getMessage()  # one point: no rate yet
        s.iter = 4
        s.put_scalar("loss", 1.0)
        printer.write()
        assert caplog.records[-1].getMessage().startswith("eta: 0:00:00  iter: 5/10")


# MLflowWriter/WandbWriter with the real packages: tests/engine/test_writers_tracking.py. Here only the
# message when the package is missing; `sys.modules[name] = None` makes its import fail, so these run
# whether or not the package is installed.


def test_mlflow_writer_without_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match=r"MLflowWriter.* needs the optional package 'mlflow'.*pip install"):
        MLflowWriter(log_dir=str(tmp_path))
    assert not (tmp_path / "mlruns").exists()


def test_wandb_writer_without_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"WandbWriter needs the optional package 'wandb'.*pip install"):
        WandbWriter(log_dir=str(tmp_path))
