"""CheckpointHook: periodic, last and best checkpoints, pruning, weights-only publishing."""

from __future__ import annotations

import hashlib
import logging
import math
import os
from typing import Any

import torch

from kiln.registry import HOOKS

from .. import comm
from ..checkpoint import PeriodicCheckpointer, atomic_torch_save
from .base import Hook, Priority
from .period import Every

__all__ = ["CheckpointHook", "BestCheckpointKeeper", "publish_checkpoint", "infer_rule"]

logger = logging.getLogger(__name__)

_GREATER = ("acc", "top", "ap", "ar@", "auc", "precision", "recall", "f1", "map", "miou", "iou", "psnr",
            "ssim")
_LESS = ("loss", "err", "error", "fid", "mse", "mae")


def infer_rule(key: str) -> str:
    """'greater' for accuracy-like metric names (AP, acc, ...), 'less' for loss-like ones."""
    low = key.lower().split("/")[-1]
    if any(t in low for t in _LESS):
        return "less"
    if any(t in low for t in _GREATER):
        return "greater"
    raise ValueError(f"Cannot tell whether a larger '{key}' is better; pass rule='greater' or rule='less'.")


class BestCheckpointKeeper:
    """Track the best value of a metric and save ``best_<metric>_<epoch|iter>_<n>.pth`` when it improves.

    Args:
        save_best: metric key, or ``'auto'`` for the first metric the evaluator returns.
        rule: ``'greater'``, ``'less'`` or ``None`` (inferred from the name).
    """

    def __init__(self, save_best: str, rule: str | None = None) -> None:
        if rule not in (None, "greater", "less"):
            raise ValueError(f"rule must be 'greater', 'less' or None, got {rule!r}.")
        self.key = save_best
        self.rule = rule
        self.best_score: float | None = None
        self.best_path: str | None = None

    def update(self, runner: Any, metrics: dict | None) -> str | None:
        """Save a best checkpoint if ``metrics`` improved on the best so far; returns its path."""
        if not metrics:
            return None
        key = self.key
        if key == "auto":
            key = next(iter(metrics))
            self.key = key
        if key not in metrics:
            raise KeyError(
                f"save_best='{key}' is not among the evaluation metrics {sorted(metrics)}; "
                f"use one of those or 'auto'."
            )
        if self.rule is None:
            self.rule = infer_rule(key)
        score = float(metrics[key])
        if math.isnan(score):
            return None
        better = self.best_score is None or (
            score > self.best_score if self.rule == "greater" else score < self.best_score
        )
        if not better:
            return None
        self.best_score = score
        unit, n = ("epoch", runner.epoch + 1) if runner.by_epoch else ("iter", runner.iter + 1)
        name = f"best_{key.replace('/', '_')}_{unit}_{n}"
        old = self.best_path
        path = runner.save_checkpoint(name, meta={"best_score": score, "best_metric": key})
        if path is not None:
            self.best_path = path
            if old and old != path and os.path.exists(old):
                os.remove(old)
            logger.info("New best %s = %.4f; saved %s", key, score, path)
        return path

    def state_dict(self) -> dict:
        """Best score, metric key, rule and file."""
        return {
            "key": self.key,
            "rule": self.rule,
            "best_score": self.best_score,
            "best_path": self.best_path,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.key = state.get("key", self.key)
        self.rule = state.get("rule", self.rule)
        self.best_score = state.get("best_score")
        self.best_path = state.get("best_path")


def publish_checkpoint(src: str, dst_dir: str | None = None, name: str | None = None) -> str:
    """Write a weights-only copy of checkpoint ``src`` named ``<name>-<sha256[:8]>.pth``.

    Optimizer, schedules, RNG and hook states are dropped; only ``model`` (and ``meta`` without the
    config) remains, for sharing or the model zoo. Returns the new path.
    """
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    meta = {k: v for k, v in dict(ckpt.get("meta", {})).items() if k != "config"}
    out = {"model": ckpt["model"], "meta": meta}
    dst_dir = dst_dir or os.path.dirname(os.path.abspath(src))
    base = name or os.path.splitext(os.path.basename(src))[0]
    tmp = os.path.join(dst_dir, f"{base}.publish.tmp.pth")
    atomic_torch_save(out, tmp)
    with open(tmp, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:8]
    final = os.path.join(dst_dir, f"{base}-{digest}.pth")
    os.replace(tmp, final)
    return final


class _RunnerCheckpoints:
    """What :class:`PeriodicCheckpointer` saves through: the runner's full checkpoints."""

    def __init__(self, save_optimizer: bool) -> None:
        self.save_optimizer = save_optimizer
        self.runner: Any = None

    def save(self, name: str, **meta: Any) -> str | None:
        return self.runner.save_checkpoint(name, save_optimizer=self.save_optimizer, meta=meta or None)

    def get_checkpoint_file(self) -> str:
        return self.runner.checkpointer.get_checkpoint_file()


@HOOKS.register_module(name=["CheckpointHook", "PeriodicCheckpointerHook"])
class CheckpointHook(Hook):
    """Save checkpoints every ``interval`` epochs/iterations, at the end, and on a new best metric.

    Args:
        interval: epochs (``by_epoch``) or iterations between saves; ``-1`` saves only the last one.
        by_epoch: count epochs; default follows the runner (epoch- or iteration-based).
        save_optimizer: include optimizer/scheduler state (needed to resume).
        max_keep_ckpts: keep only the newest N periodic checkpoints (``-1``: keep all).
        save_last: always save after the last epoch/iteration.
        save_best: metric key or ``'auto'``: keep the checkpoint with the best validation value.
        rule: ``'greater'``/``'less'`` for ``save_best`` (inferred from the name when ``None``).
        publish: after training, also write a weights-only ``<name>-<sha8>.pth`` of the last one.
        filename_tmpl: periodic file names, ``tmpl.format(n)`` (``'iter_{}.pth'``; default
            ``iter_<n>``/``epoch_<n>``).
        final_filename: also save the end of training under this name (Detectron2's ``model_final.pth``),
            which ``last_checkpoint`` then names. Periodic saves are not rotated into it.
        zero_based: ``n`` in ``filename_tmpl`` is the zero-based index of the last iteration (epoch) run,
            as Detectron2 names ``model_0004999.pth`` after 5000 iterations, instead of the count run
            (MMCV's ``iter_5000.pth``). Default: zero-based exactly when ``final_filename`` is given,
            i.e. for Detectron2's layout (``filename_tmpl='model_{:07d}.pth'``,
            ``final_filename='model_final.pth'``).
    """

    priority = Priority.VERY_LOW

    def __init__(
        self,
        interval: int = -1,
        by_epoch: bool | None = None,
        save_optimizer: bool = True,
        max_keep_ckpts: int = -1,
        save_last: bool = True,
        save_best: str | None = None,
        rule: str | None = None,
        publish: bool = False,
        out_dir: str | None = None,
        filename_tmpl: str | None = None,
        final_filename: str | None = None,
        zero_based: bool | None = None,
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - {"sync_buffer", "create_symlink", "file_client_args", "meta"}
        if unknown:
            raise TypeError(f"CheckpointHook got unknown arguments {sorted(unknown)}.")
        if int(interval) == 0 or int(interval) < -1:
            raise ValueError(f"CheckpointHook: interval must be >= 1 or -1 (only the last), got {interval}.")
        self.interval = int(interval)
        self.by_epoch = by_epoch
        self.save_optimizer = save_optimizer
        self.max_keep_ckpts = int(max_keep_ckpts)
        self.save_last = save_last
        self.best = BestCheckpointKeeper(save_best, rule) if save_best else None
        self.publish = publish
        if filename_tmpl is not None:
            try:
                filename_tmpl.format(1)
            except (IndexError, KeyError, ValueError) as exc:
                raise ValueError(
                    f"CheckpointHook: filename_tmpl={filename_tmpl!r} cannot be formatted with the "
                    f"iteration number ({exc}); write one positional field, e.g. 'iter_{{}}.pth' or "
                    f"'model_{{:07d}}.pth'."
                ) from None
        self.filename_tmpl = filename_tmpl
        if final_filename is not None and (not final_filename or "/" in final_filename):
            raise ValueError(f"CheckpointHook: final_filename={final_filename!r} must be a file name in the "
                             f"work_dir, e.g. 'model_final.pth'.")
        self.final_filename = final_filename
        self.zero_based = final_filename is not None if zero_based is None else bool(zero_based)
        if out_dir is not None:
            logger.warning("CheckpointHook(out_dir=...) is ignored: checkpoints go to the runner's work_dir.")
        # The one periodic saver: names come from here, rotation (max_keep_ckpts) from it.
        self._target = _RunnerCheckpoints(save_optimizer)
        self.saver = PeriodicCheckpointer(
            self._target, max_to_keep=self.max_keep_ckpts if self.max_keep_ckpts > 0 else None
        )
        self.last_path: str | None = None
        self._best_state: dict | None = None  # restored before EvalHook handed over save_best

    @property
    def period(self) -> Every:
        """Every ``interval`` epochs/iterations (``-1``: none) and, with ``save_last``, the last one."""
        n = None if self.interval < 0 else self.interval
        return Every(n, by_epoch=self.by_epoch, last=self.save_last or self.final_filename is not None)

    @property
    def kept(self) -> list[str]:
        """The periodic checkpoints kept so far (oldest first)."""
        return self.saver.recent

    def before_train(self, runner: Any) -> None:
        """Refuse to run without a work_dir."""
        self._target.runner = runner
        if not runner.work_dir:
            raise ValueError("CheckpointHook needs the runner's work_dir to save into; set work_dir.")

    def file_name(self, n: int, unit: str = "iter") -> str:
        """The periodic file written after ``n`` iterations (epochs) ran: ``iter_5000.pth``,
        ``model_0004999.pth``."""
        index = n - 1 if self.zero_based else n
        name = self.filename_tmpl.format(index) if self.filename_tmpl else f"{unit}_{index}"
        return name if name.endswith(".pth") else name + ".pth"

    def count_of(self, file_name: str, unit: str = "iter") -> int | None:
        """Inverse of :meth:`file_name`: the iterations (epochs) run when ``file_name`` was saved, or
        ``None`` when it is not one of this hook's periodic names (``model_final.pth``, a best one)."""
        import re

        tmpl = self.filename_tmpl or f"{unit}_{{}}"
        if not tmpl.endswith(".pth"):
            tmpl += ".pth"
        head, _, rest = tmpl.partition("{")
        tail = rest.partition("}")[2]
        m = re.fullmatch(re.escape(head) + r"(\d+)" + re.escape(tail), os.path.basename(file_name))
        if m is None:
            return None
        return int(m.group(1)) + (1 if self.zero_based else 0)

    def _save(self, runner: Any, unit: str, n: int, last: bool) -> None:
        """Save after ``n`` iterations/epochs; ``last``: this is the end of training."""
        self._target.runner = runner
        # Called at the due periods and at the last one: a last one off the period is saved under the
        # periodic name only when no final name takes its place (Detectron2 writes model_final alone).
        periodic = self.interval > 0 and n % self.interval == 0
        if periodic or (last and self.save_last and self.final_filename is None):
            path = self.saver.save_rotating(self.file_name(n, unit)[:-4])
            if path is not None:  # (None: not the main process)
                self.last_path = path
        if last and self.final_filename is not None:
            name = self.final_filename
            path = self.saver.save(name[:-4] if name.endswith(".pth") else name)
            if path is not None:
                self.last_path = path

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: dict | None = None
    ) -> None:
        """Iteration-based saving (called at the due iterations only)."""
        n = runner.iter + 1
        self._save(runner, "iter", n, last=bool(runner.max_iters) and n >= runner.max_iters)

    def after_train_epoch(self, runner: Any) -> None:
        """Epoch-based saving (called after the due epochs only)."""
        n = runner.epoch + 1
        self._save(runner, "epoch", n, last=runner.max_epochs is not None and n >= runner.max_epochs)

    def keep_best(self, save_best: str, rule: str | None = None) -> None:
        """Also keep the best checkpoint by ``save_best`` (for ``EvalHook(save_best=...)``)."""
        if self.best is not None:
            if (self.best.key, self.best.rule) != (save_best, rule) and save_best != "auto":
                raise ValueError(
                    f"save_best is set twice: CheckpointHook(save_best={self.best.key!r}) and "
                    f"EvalHook(save_best={save_best!r}); keep one of them."
                )
            return
        self.best = BestCheckpointKeeper(save_best, rule)
        if self._best_state is not None:  # a resume came first
            self.best.load_state_dict(self._best_state)

    def after_val_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        """Keep the best checkpoint by the validation metric (during training only)."""
        if self.best is not None and runner.train_loop is not None and runner.storage is not None:
            self.best.update(runner, metrics)

    def after_train(self, runner: Any) -> None:
        """Publish a weights-only copy of the last checkpoint if asked."""
        if self.publish and self.last_path and comm.is_main_process():
            path = publish_checkpoint(self.last_path)
            logger.info("Published weights-only checkpoint %s", path)

    def state_dict(self) -> dict:
        """Kept files and best-metric state, so pruning and best tracking survive a resume."""
        return {"kept": list(self.saver.recent), "best": self.best.state_dict() if self.best else None}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.saver.load_state_dict({"recent": state.get("kept", [])})
        self._best_state = state.get("best")
        if self.best is not None and self._best_state:
            self.best.load_state_dict(self._best_state)
