"""Logger hooks: flush per-iteration metrics into the event storage and run writers periodically.

``LoggerHook(interval=50)`` writes a console line and ``metrics.jsonl``; ``TextLoggerHook``,
``JsonLoggerHook`` and ``TensorboardLoggerHook`` are the MMCV ``log_config`` names for one writer
each; ``PeriodicWriter(writers, period)`` is Detectron2's. Writers only exist on the main process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from kiln.registry import HOOKS, WRITERS

from .. import comm
from ..progress import trained_so_far
from .base import Hook, Priority
from .period import Every

__all__ = [
    "LoggerHook",
    "TextLoggerHook",
    "JsonLoggerHook",
    "TensorboardLoggerHook",
    "PeriodicWriter",
    "val_line_prefix",
]

logger = logging.getLogger(__name__)


def val_line_prefix(runner: Any, kind: str = "val") -> str:
    """MMEngine's ``Epoch(val) [1][8/8]`` (``Iter(val) [500][8/8]``): trained so far, val batches."""
    unit, n = trained_so_far(runner)
    loader = getattr(runner, f"{kind}_dataloader", None)
    try:
        batches = len(loader) if loader is not None else None
    except TypeError:
        batches = None
    prefix = f"{'Epoch' if unit == 'epoch' else 'Iter'}({kind}) [{n}]"
    return prefix + (f"[{batches}/{batches}]" if batches else "")


@HOOKS.register_module()
class LoggerHook(Hook):
    """Every ``interval`` iterations (and at the last one), put ``lr``/``epoch`` and write.

    Args:
        interval: iterations between writes.
        writers: writer objects or ``WRITERS`` configs; ``None`` means the console printer plus
            ``metrics.jsonl`` in the work dir. Created at ``before_run`` on the main process.
        ignore_last: skip the write at the end of an epoch that is not a multiple of ``interval``.
        json_file: the JSON-lines file of the default writers: a name in the work dir (default
            ``metrics.jsonl``; Detectron2-dialect runs say ``metrics.json``, Detectron2's name) or a path.
    """

    priority = Priority.BELOW_NORMAL

    def __init__(
        self,
        interval: int = 50,
        writers: Sequence[Any] | None = None,
        ignore_last: bool = False,
        window: int = 20,
        json_file: str = "metrics.jsonl",
    ) -> None:
        if int(interval) < 1:
            raise ValueError(f"{type(self).__name__}: interval must be >= 1, got {interval}.")
        self.interval = int(interval)
        self._writer_specs = list(writers) if writers is not None else None
        self.ignore_last = ignore_last
        self.window = window
        if not json_file:
            raise ValueError(f"{type(self).__name__}: json_file must name a file (default 'metrics.jsonl').")
        self.json_file = json_file
        self.writers: list[Any] = []

    def default_writers(self, runner: Any) -> list[Any]:
        """The writers used when none are given (subclasses pick one each)."""
        from ..writers import CommonMetricPrinter, JSONWriter

        out: list[Any] = [CommonMetricPrinter(runner.max_iters or None, window=self.window)]
        if runner.work_dir:
            out.append(JSONWriter(os.path.join(runner.work_dir, self.json_file), window=self.window))
        visualizer = getattr(runner, "visualizer", None)
        if visualizer is not None:  # the config's vis_backends get the scalars too (MMEngine does this)
            from ..writers import VisualizerWriter

            out.append(VisualizerWriter(visualizer, window=self.window))
        return out

    def before_run(self, runner: Any) -> None:
        """Create the writers (main process only)."""
        if not comm.is_main_process() or self.writers:
            return
        if self._writer_specs is None:
            self.writers = self.default_writers(runner)
        else:
            self.writers = [
                WRITERS.build(w, cfg_path="log_config.writers") if isinstance(w, dict) else w
                for w in self._writer_specs
            ]

    def _write(self, runner: Any) -> None:
        runner.flush_metrics()
        storage = runner.storage
        if storage is None:
            return
        ow = runner.optim_wrapper
        # From after_train_iter, storage.iter is the iteration just run (the loop steps it after).
        if ow is not None:
            storage.put_scalar("lr", ow.param_groups[0]["lr"], smoothing_hint=False)
        if runner.by_epoch:  # the epoch being trained, 1-based (epoch_1.pth is saved at its end)
            storage.put_scalar("epoch", runner.epoch + 1, smoothing_hint=False)
        for w in self.writers:
            w.write()

    @property
    def period(self) -> Every:
        """Every ``interval`` iterations, the last one and (unless ``ignore_last``) each epoch's last."""
        return Every(self.interval, by_epoch=False, last=True, epoch_end=not self.ignore_last)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Write (called at the due iterations only: see :attr:`period`)."""
        self._write(runner)

    def _prints_to_console(self) -> bool:
        from ..writers import CommonMetricPrinter

        return any(isinstance(w, CommonMetricPrinter) for w in self.writers)

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Log validation metrics."""
        # Only a hook that owns the console printer logs the line: with several logger hooks
        # (log_config=[TextLoggerHook, TensorboardLoggerHook]) it would otherwise appear once per hook.
        if metrics and comm.is_main_process() and self._prints_to_console():
            text = "  ".join(
                f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items()
            )
            logger.info("%s  %s", val_line_prefix(runner), text)
        from ..writers import CommonMetricPrinter

        for w in self.writers:
            if not isinstance(w, CommonMetricPrinter):  # the console line was printed already
                w.write()

    def after_run(self, runner: Any) -> None:
        """Write what is left to file writers (the console line was printed already) and close them."""
        from ..writers import CommonMetricPrinter

        runner.flush_metrics()
        for w in self.writers:
            try:
                if not isinstance(w, CommonMetricPrinter) and runner.storage is not None:
                    w.write()
            finally:
                w.close()
        self.writers = []


@HOOKS.register_module()
class TextLoggerHook(LoggerHook):
    """MMCV's ``TextLoggerHook``: the console line (and, with a work dir, ``metrics.jsonl``)."""

    def __init__(
        self,
        interval: int = 50,
        by_epoch: bool = True,
        ignore_last: bool = True,
        interval_exp_name: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(interval=interval, ignore_last=ignore_last, **kwargs)


@HOOKS.register_module()
class JsonLoggerHook(LoggerHook):
    """Only ``metrics.jsonl`` (one JSON object per write) in the work dir, or ``json_file``."""

    def __init__(self, interval: int = 50, json_file: str | None = None, **kwargs: Any) -> None:
        super().__init__(interval=interval, json_file=json_file or "metrics.jsonl", **kwargs)

    def default_writers(self, runner: Any) -> list[Any]:
        """A JSON-lines writer."""
        from ..writers import JSONWriter

        if not runner.work_dir and not os.path.isabs(self.json_file):
            raise ValueError("JsonLoggerHook needs a work_dir or an absolute json_file= to write to.")
        return [JSONWriter(os.path.join(runner.work_dir or "", self.json_file), window=self.window)]


@HOOKS.register_module()
class TensorboardLoggerHook(LoggerHook):
    """TensorBoard event files in ``log_dir`` (default ``<work_dir>/tf_logs``)."""

    def __init__(
        self,
        interval: int = 50,
        log_dir: str | None = None,
        by_epoch: bool = True,
        ignore_last: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(interval=interval, ignore_last=ignore_last, **kwargs)
        self.log_dir = log_dir

    def default_writers(self, runner: Any) -> list[Any]:
        """A TensorBoard writer."""
        from ..writers import TensorboardXWriter

        log_dir = self.log_dir or (os.path.join(runner.work_dir, "tf_logs") if runner.work_dir else None)
        if log_dir is None:
            raise ValueError("TensorboardLoggerHook needs a work_dir or log_dir= to write event files to.")
        return [TensorboardXWriter(log_dir, window=self.window)]


@HOOKS.register_module()
class PeriodicWriter(LoggerHook):
    """Detectron2's ``PeriodicWriter(writers, period=20)``: run ``writers`` every ``period`` iterations."""

    priority = Priority.LOWEST

    def __init__(self, writers: Sequence[Any], period: int = 20) -> None:
        super().__init__(interval=period, writers=writers)
