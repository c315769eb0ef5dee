"""Event writers: read the current :class:`EventStorage` and write its metrics somewhere.

A logger hook calls ``write()`` every N iterations and ``close()`` at the end. Writers are built from
config through the ``WRITERS`` registry, e.g. ``WRITERS.build(dict(type='JSONWriter', json_file=p))``.
Only the main process should own writers (the runner decides; writers don't check ranks).
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import sys
import time
from collections import defaultdict
from typing import Any

import torch

from kiln.registry import WRITERS
from kiln.utils.lazy import require

from .events import EventStorage, get_event_storage

__all__ = [
    "EventWriter",
    "CommonMetricPrinter",
    "JSONWriter",
    "TensorboardXWriter",
    "MLflowWriter",
    "WandbWriter",
    "VisualizerWriter",
]

# Scalars the console line shows in fixed places instead of in the generic loss list.
_TIME_KEYS = ("time", "data_time")


class EventWriter:
    """Base class: ``write()`` reads :func:`get_event_storage` and writes; ``close()`` releases resources."""

    def write(self) -> None:
        """Write what is new in the current storage."""
        raise NotImplementedError(f"{type(self).__name__} must implement write().")

    def close(self) -> None:
        """Flush and release files/connections. Called once at the end of training."""


def _new_scalars_by_iter(
    storage: EventStorage, window: int, last_written: dict[str, int]
) -> dict[int, dict[str, float]]:
    """Group the scalars not written yet by iteration, and mark them written in ``last_written``.

    The high-water mark is kept per scalar, not per writer: a metric put at an iteration that was
    already written for other scalars (validation at the last iteration) is still written.
    """
    by_iter: dict[int, dict[str, float]] = defaultdict(dict)
    # Only scalars with new values are smoothed: a run logging per-class APs has ~100 names, most
    # of them unchanged at a given write.
    for k, (v, itr) in storage.latest_with_smoothing_hint(window, newer_than=last_written).items():
        by_iter[itr][k] = v
        last_written[k] = itr
    return by_iter


@WRITERS.register_module()
class CommonMetricPrinter(EventWriter):
    """One console line per write, through ``logging`` (logger ``kiln.engine.writers`` by default).

    Shows ETA, epoch (if the scalar ``epoch`` is put), iteration, every scalar whose name contains
    ``loss`` (median over ``window``), ``time``/``data_time`` (window mean and latest), ``lr`` and,
    on CUDA, the peak allocated memory.

    Args:
        max_iter: total iterations, for the ETA and the ``iter: 20/100`` display; ``None`` hides both.
        window: smoothing window in iterations.
        logger_name: logger to write through.
    """

    def __init__(self, max_iter: int | None = None, window: int = 20, logger_name: str = __name__) -> None:
        self.logger = logging.getLogger(logger_name)
        self._max_iter = max_iter
        self._window = window
        self._last_write: tuple[int, float] | None = None  # (iteration, wall time) of the previous write
        # (count, sum) of the `time` history at each write, oldest first: the mean over the last
        # ~1000 iterations is a difference of two running sums (reading the 1000 values themselves
        # costs ~50 us a write: they are scattered in memory).
        self._time_marks: collections.deque[tuple[int, float]] = collections.deque([(0, 0.0)])

    def _eta(self, storage: EventStorage) -> float | None:
        """Seconds left (also put as the scalar ``eta_seconds``), or ``None`` when unknown."""
        if self._max_iter is None:
            return None
        iteration = storage.iter
        remaining = self._max_iter - iteration - 1
        try:
            eta_seconds = self._mean_recent_time(storage.history("time")) * remaining
        except KeyError:
            # No timer hook: estimate from the wall time between two writes (noisier).
            eta_seconds = None
            now = time.perf_counter()
            if self._last_write is not None and iteration > self._last_write[0]:
                per_iter = (now - self._last_write[1]) / (iteration - self._last_write[0])
                eta_seconds = per_iter * remaining
            self._last_write = (iteration, now)
            if eta_seconds is None:
                return None
        storage.put_scalar("eta_seconds", eta_seconds, smoothing_hint=False)
        return eta_seconds

    def _mean_recent_time(self, h: Any, span: int = 1000) -> float:
        """Mean iteration time over the last ~``span`` iterations, at the granularity of writes.

        A mean, not Detectron2's median: the iterations that save checkpoints recur, so they belong
        in the estimate of the time left.
        """
        count, total = h.count(), h.global_sum()
        marks = self._time_marks
        if count < marks[-1][0]:  # the history was replaced (a resume): start over
            marks.clear()
            marks.append((0, 0.0))
        while len(marks) > 1 and count - marks[1][0] >= span:
            marks.popleft()
        marks.append((count, total))
        n0, s0 = marks[0]
        return (total - s0) / (count - n0) if count > n0 else h.latest()

    def write(self) -> None:
        """Log one line for the current iteration.

        ``eta_seconds`` is put into the storage at every write; the line itself is only built when
        the logger emits INFO records (as ``logging`` skips formatting a record nobody sees).
        """
        storage = get_event_storage()
        eta = self._eta(storage)
        if not self.logger.isEnabledFor(logging.INFO):
            return
        iteration = storage.iter
        hist = storage.histories()
        w = self._window

        def fmt_time(key: str) -> str | None:
            h = hist.get(key)
            if h is None:
                return None
            return f"{key}: {h.avg(w):.4f}  last_{key}: {h.latest():.4f}"

        parts: list[str] = []
        if eta is not None:
            parts.append(f"eta: {datetime.timedelta(seconds=int(max(eta, 0)))}")
        if "epoch" in hist:
            parts.append(f"epoch: {int(hist['epoch'].latest())}")
        # 1-based: after the iteration with index 19 has run, 20 of max_iter are done.
        parts.append(f"iter: {iteration + 1}" + (f"/{self._max_iter}" if self._max_iter else ""))
        # Training losses only: validation losses (``val/loss``, ValLossHook) have their own line.
        parts.extend(f"{k}: {h.median(w):.4g}" for k, h in hist.items() if "loss" in k and k[:4] != "val/")
        parts.extend(s for s in (fmt_time(k) for k in _TIME_KEYS) if s)
        if "lr" in hist:
            parts.append(f"lr: {hist['lr'].latest():.5g}")
        if torch.cuda.is_initialized():  # (is_available() costs microseconds a call; this is a flag)
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 1024 / 1024:.0f}M")
        # logger.info() without its stack walk to find the caller (a third of the cost of a line
        # written to a file): the record names this function, which is the caller.
        lg = self.logger
        frame = sys._getframe()
        lg.handle(lg.makeRecord(lg.name, logging.INFO, __file__, frame.f_lineno, "  ".join(parts), None, None,
                                func="write"))


def _open_append(path: str) -> Any:
    if "://" in path:
        import fsspec

        return fsspec.open(path, "a", encoding="utf-8").open()
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return open(path, "a", encoding="utf-8")


@WRITERS.register_module()
class JSONWriter(EventWriter):
    """Appends one JSON object per iteration to a JSON-lines file (``metrics.jsonl``).

    Each line is ``{"iteration": i, "<scalar>": value, ...}`` with the scalars put at that iteration
    since the previous write (smoothed over ``window`` where hinted). Read it back with::

        [json.loads(line) for line in open(path)]

    Args:
        json_file: output path (local, or an fsspec URL); opened in append mode so resumed runs continue it.
        window: smoothing window in iterations.
    """

    def __init__(self, json_file: str, window: int = 20) -> None:
        self._path = os.fspath(json_file)
        self._file = _open_append(self._path)
        self._window = window
        self._last_written: dict[str, int] = {}

    def write(self) -> None:
        """Append lines for iterations not yet written."""
        storage = get_event_storage()
        by_iter = _new_scalars_by_iter(storage, self._window, self._last_written)
        for itr in sorted(by_iter):
            self._file.write(json.dumps({"iteration": itr, **by_iter[itr]}, sort_keys=True) + "\n")
        # flush() is enough to survive a killed process (the data is in the OS page cache); an fsync
        # per write cost ~10 ms on a busy disk, i.e. up to 200 us per iteration at interval 50.
        self._file.flush()

    def close(self) -> None:
        """Flush to disk and close the file."""
        # flush (not fsync): lines survive a killed process; an fsync per write would cost milliseconds.
        self._file.flush()
        self._file.close()


@WRITERS.register_module()
class TensorboardXWriter(EventWriter):
    """Writes scalars, queued images and histograms to TensorBoard event files.

    Uses ``torch.utils.tensorboard.SummaryWriter`` (imported when the writer is created, not with kiln).

    Args:
        log_dir: directory for the event files.
        window: smoothing window in iterations.
        kwargs: passed to ``SummaryWriter`` (e.g. ``flush_secs``).
    """

    def __init__(self, log_dir: str, window: int = 20, **kwargs: Any) -> None:
        tb = require("torch.utils.tensorboard", "TensorboardXWriter (pip install tensorboard)")
        self._window = window
        self._writer = tb.SummaryWriter(os.fspath(log_dir), **kwargs)
        self._last_written: dict[str, int] = {}

    @property
    def log_dir(self) -> str:
        """The directory the event files go to."""
        return self._writer.log_dir

    def write(self) -> None:
        """Write new scalars, then every queued image and histogram (and clear the queues)."""
        storage = get_event_storage()
        by_iter = _new_scalars_by_iter(storage, self._window, self._last_written)
        for itr in sorted(by_iter):
            for k, v in by_iter[itr].items():
                self._writer.add_scalar(k, v, itr)
        if storage.vis_data:
            for name, img, itr in storage.vis_data:
                self._writer.add_image(name, img, itr)
            storage.clear_images()
        if storage.histograms_data:
            for params in storage.histograms_data:
                self._writer.add_histogram_raw(**params)
            storage.clear_histograms()
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


@WRITERS.register_module()
class MLflowWriter(EventWriter):
    """Logs scalars to an MLflow run; offline by default (a local ``file:`` tracking store).

    Needs the optional ``mlflow`` package: ``pip install mlflow-skinny`` is enough (the tracking client
    and the local store, without the server/UI dependencies of ``pip install mlflow``); kiln does not
    install it. Tested with mlflow-skinny 3.17 (pinned for CI), 3.1 and 2.22.

    The writer talks to its own run through an ``MlflowClient``, so the process-wide MLflow state is left
    alone: a ``mlflow.set_tracking_uri()`` or ``mlflow.start_run()`` of the calling script keeps working
    (the fluent API would raise "Run ... is already active"). ``run_id`` and ``client`` give access to the
    run, e.g. ``writer.client.log_artifact(writer.run_id, path)``.

    Each ``write()`` is one ``log_batch`` call with every new scalar at its iteration (MLflow's ``step``).
    Scalar and param names MLflow rejects (characters other than letters, digits, ``_ - . / space``, or
    longer than 250) would fail the whole batch; they are logged with those characters replaced by ``_``
    (a warning names each renamed key once), e.g. a per-class ``bbox/AP-bow_(weapon)``.

    MLflow 3.13+ refuses ``file:`` stores unless ``MLFLOW_ALLOW_FILE_STORE=true`` (the file store
    is in maintenance mode): for a ``file:`` URI the writer sets that variable when it is unset. For a
    database store pass e.g. ``tracking_uri='sqlite:///<dir>/mlflow.db'`` (needs SQLAlchemy, which
    ``mlflow`` installs and ``mlflow-skinny`` does not); for a server, its ``http(s)://`` URI.

    Args:
        tracking_uri: MLflow tracking URI; default ``file:<log_dir>/mlruns`` (no server needed).
        log_dir: where the default local store goes.
        experiment_name: MLflow experiment (created if missing).
        run_name: name of the run.
        params: hyper-parameters logged once at start (flat dict; values are logged as strings).
        tags: extra run tags (MLflow's own source/user tags are added).
        window: smoothing window in iterations.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        log_dir: str = ".",
        experiment_name: str = "kiln",
        run_name: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        window: int = 20,
    ) -> None:
        import re

        mlflow = require("mlflow", "MLflowWriter (pip install mlflow-skinny)")
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException

        self._metric_cls = Metric
        self._bad_chars = re.compile(r"[^\w./\- ]")
        self._names: dict[str, str] = {}
        uri = tracking_uri or "file:" + os.path.abspath(os.path.join(os.fspath(log_dir), "mlruns"))
        if uri.startswith("file:"):
            # MLflow >= 3.13 refuses file stores unless the user opts in; choosing one here is that choice.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._client = mlflow.MlflowClient(tracking_uri=uri)
        exp = self._client.get_experiment_by_name(experiment_name)
        if exp is not None:
            exp_id = exp.experiment_id
        else:
            try:
                exp_id = self._client.create_experiment(experiment_name)
            except MlflowException:  # created meanwhile by another process
                exp = self._client.get_experiment_by_name(experiment_name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        run_tags = {k: str(v) for k, v in (tags or {}).items()}
        try:
            from mlflow.tracking.context.registry import resolve_tags

            run_tags = resolve_tags(run_tags)  # mlflow.user, mlflow.source.* (what start_run adds)
        except Exception:  # an internal helper of MLflow; the run works without those tags
            pass
        self._run_id: str = self._client.create_run(exp_id, run_name=run_name, tags=run_tags).info.run_id
        if params:
            self._client.log_batch(
                self._run_id, params=[Param(self._name(k), str(v)) for k, v in params.items()]
            )
        self._window = window
        self._last_written: dict[str, int] = {}

    @property
    def run_id(self) -> str:
        """The MLflow run this writer logs to."""
        return self._run_id

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` bound to the writer's tracking URI."""
        return self._client

    def _name(self, key: str) -> str:
        """``key`` as a name MLflow accepts (cached; a renamed key is reported once)."""
        name = self._names.get(key)
        if name is None:
            import posixpath

            name = self._bad_chars.sub("_", key)[:250]
            norm = posixpath.normpath(name)
            if norm != name or norm in (".", "") or norm.startswith(("..", "/")):
                # MLflow stores names as paths: "a//b", "a/./b", "/a" must not resolve to other names.
                name = name.replace("/", "_").replace(".", "_") or "_"
            if name != key:
                logging.getLogger(__name__).warning(
                    "MLflowWriter: '%s' is logged as '%s' (a name MLflow accepts).", key, name
                )
            self._names[key] = name
        return name

    def write(self) -> None:
        """Log scalars put since the previous write, all iterations in one ``log_batch`` call."""
        storage = get_event_storage()
        by_iter = _new_scalars_by_iter(storage, self._window, self._last_written)
        if not by_iter:
            return
        now = int(time.time() * 1000)
        metrics = [
            self._metric_cls(self._name(k), float(v), now, int(itr))
            for itr in sorted(by_iter)
            for k, v in by_iter[itr].items()
        ]
        self._client.log_batch(self._run_id, metrics=metrics)

    def close(self) -> None:
        """Mark the run FINISHED."""
        self._client.set_terminated(self._run_id)


@WRITERS.register_module()
class WandbWriter(EventWriter):
    """Logs scalars and queued images to Weights & Biases; ``mode='offline'`` by default (no network).

    Needs the optional ``wandb`` package (``pip install wandb``); kiln does not install it. Tested against
    wandb 0.31 (pinned for CI) and 0.28, offline. An offline run goes to
    ``<log_dir>/wandb/offline-run-*``; upload it later with ``wandb sync <that dir>``.

    Each iteration becomes one history row at ``step=iteration``, its scalars and the images put at that
    iteration together: W&B drops data logged at a step lower than one already logged, so scalars and
    images are sent in iteration order. Images (``storage.put_image``, C×H×W float in [0, 1] or uint8) are
    converted to uint8 H×W×C, since ``wandb.Image`` casts arrays to uint8 without scaling.

    ``close()`` finishes the run. The W&B service completes the run file a few milliseconds after that
    (at the latest when the process exits); ``wandb.teardown()`` waits for it.

    Args:
        project: W&B project.
        name: run name.
        log_dir: where the run directory goes (W&B's ``dir``; created if missing).
        mode: ``'offline'``, ``'online'`` or ``'disabled'``.
        config: the run's config, logged once.
        window: smoothing window in iterations.
        kwargs: more ``wandb.init`` arguments (``entity``, ``group``, ``tags``, ``settings``, ...).
    """

    def __init__(
        self,
        project: str = "kiln",
        name: str | None = None,
        log_dir: str | None = None,
        mode: str = "offline",
        config: dict[str, Any] | None = None,
        window: int = 20,
        **kwargs: Any,
    ) -> None:
        self._wandb = require("wandb", "WandbWriter")
        if log_dir is not None:
            log_dir = os.fspath(log_dir)
            os.makedirs(log_dir, exist_ok=True)  # W&B warns (git root missing) when dir does not exist
        self._run = self._wandb.init(
            project=project, name=name, dir=log_dir, mode=mode, config=config, **kwargs
        )
        self._window = window
        self._last_written: dict[str, int] = {}

    @property
    def run(self) -> Any:
        """The ``wandb`` run."""
        return self._run

    def _image(self, img: torch.Tensor) -> Any:
        if img.dtype != torch.uint8:
            img = (img.float() * 255).round_().clamp_(0, 255).to(torch.uint8)
        return self._wandb.Image(img.permute(1, 2, 0).numpy())

    def write(self) -> None:
        """Log scalars put since the previous write, and queued images, one row per iteration in order."""
        storage = get_event_storage()
        rows: dict[int, dict[str, Any]] = _new_scalars_by_iter(storage, self._window, self._last_written)
        if storage.vis_data:
            for name, img, itr in storage.vis_data:
                rows.setdefault(itr, {})[name] = self._image(img)
            storage.clear_images()
        for itr in sorted(rows):
            self._run.log(rows[itr], step=int(itr))

    def close(self) -> None:
        """Finish the W&B run."""
        self._run.finish()


# MMEngine's logger hook sends every logged scalar to `runner.visualizer.add_scalars`, so a config with
# vis_backends=[dict(type='TensorboardVisBackend')] gets its loss curves there; this writer is that bridge.
class VisualizerWriter(EventWriter):
    """Writes the scalars put since the last write to ``visualizer.add_scalars``, one call per iteration.

    The step is the number of iterations done (MMEngine's ``runner.iter + 1`` for training lines;
    validation metrics put after iteration N land at step N, as MMEngine records them).

    Args:
        visualizer: anything with ``add_scalars(dict, step=...)`` and ``close()`` (``runner.visualizer``).
        window: smoothing window in iterations (as the other writers).
    """

    def __init__(self, visualizer: Any, window: int = 20) -> None:
        if not hasattr(visualizer, "add_scalars"):
            raise TypeError("VisualizerWriter needs a visualizer with add_scalars, got "
                            f"{type(visualizer).__name__}.")
        self._visualizer = visualizer
        self._window = window
        self._last_written: dict[str, int] = {}

    def write(self) -> None:
        """Send each iteration's new scalars (smoothed where hinted) as one ``add_scalars`` call."""
        by_iter: dict[int, dict[str, float]] = {}
        latest = get_event_storage().latest_with_smoothing_hint(self._window, newer_than=self._last_written)
        for name, (value, itr) in latest.items():
            by_iter.setdefault(itr, {})[name] = value
            self._last_written[name] = itr
        for itr in sorted(by_iter):
            self._visualizer.add_scalars(by_iter[itr], step=itr + 1)

    def close(self) -> None:
        """Close the visualizer's backends (flush event files, finish runs)."""
        self._visualizer.close()
