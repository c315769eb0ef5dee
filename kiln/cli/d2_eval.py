"""Evaluating saved checkpoints from ``kiln train``: DeFRCN's (FsDet's) ``--eval-only [--eval-iter N]``,
``--eval-all [--start-iter A] [--end-iter B]`` and ``--eval-during-train``.

Results go where Detectron2 puts them: ``WORK_DIR/inference/`` (``coco_instances_results.json`` from the
COCO evaluator, ``res_final.json`` for ``--eval-only``, ``all_res.json`` with every checkpoint's metrics
and the best one for the other two modes). A Detectron2 yaml with ``TEST.AUG.ENABLED`` is evaluated a
second time with test-time augmentation, reported with a ``_TTA`` suffix (Detectron2's
``test_with_TTA`` through :meth:`kiln.engine.DefaultTrainer.test_with_TTA`: ``TEST.AUG.MIN_SIZES``,
``MAX_SIZE``, ``FLIP``; detections in ``inference_TTA/``).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import time
from typing import Any

from .common import user_errors
from .errors import CLIError

__all__ = ["CheckpointEvaluator", "wants_tta", "checkpoint_hook", "checkpoint_for_iteration", "evaluate_all",
           "evaluate_during_train"]

logger = logging.getLogger("kiln.cli")

# The metric --eval-all ranks checkpoints by, first one present (FsDet ranks by bbox AP).
_RANK_KEYS = ("bbox/AP", "coco/bbox_mAP", "bbox_mAP", "pascal_voc/mAP", "mAP", "AP50")


def wants_tta(d2_node: Any) -> Any:
    """The Detectron2 config when it asks for test-time augmentation (``TEST.AUG.ENABLED``), else ``None``."""
    return d2_node if d2_node is not None and d2_node.TEST.AUG.ENABLED else None


def checkpoint_hook(cfg: Any) -> Any:
    """The run's :class:`~kiln.engine.hooks.CheckpointHook` as its config builds it (file names)."""
    from kiln.engine.hooks import CheckpointHook
    from kiln.registry import HOOKS

    spec = (cfg.get("default_hooks") or {}).get("checkpoint")
    if not spec:
        return CheckpointHook()
    return HOOKS.build(dict(spec), cfg_path="default_hooks.checkpoint")


def checkpoint_for_iteration(cfg: Any, n: int) -> str:
    """The checkpoint of ``WORK_DIR`` saved after ``n`` iterations (``--eval-iter N``)."""
    path = os.path.join(cfg.work_dir, checkpoint_hook(cfg).file_name(n))
    if not os.path.isfile(path):
        pattern = os.path.join(glob.escape(cfg.work_dir), "*.pth")
        present = sorted(os.path.basename(p) for p in glob.glob(pattern))
        raise CLIError(f"--eval-iter {n}: {path} does not exist; checkpoints in {cfg.work_dir}: "
                       f"{', '.join(present) or 'none'}")
    return path


class CheckpointEvaluator:
    """Evaluates checkpoints of one config on its test set, writing under ``WORK_DIR/inference``."""

    def __init__(self, cfg: Any, device: Any = None, tta: Any = None) -> None:
        """``tta``: the Detectron2 ``CfgNode`` whose ``TEST.AUG`` to evaluate with as well (or ``None``)."""
        from .test import run_device

        self.cfg = cfg
        self.device = run_device(None, cfg) if device is None else run_device(str(device), cfg)
        self.tta = None
        if tta is not None:
            self.tta = tta.clone()
            self.tta.defrost()
            self.tta.OUTPUT_DIR = cfg.work_dir  # inference_TTA/ next to inference/
            self.tta.MODEL.DEVICE = str(self.device)
            self.tta.MODEL.WEIGHTS = ""
            self.tta.freeze()
        self.output_dir = os.path.join(cfg.work_dir, "inference")

    def evaluate(self, checkpoint: str, results_name: str | None = None) -> dict[str, float]:
        """Metrics of ``checkpoint`` (plus ``<key>_TTA`` ones with TTA); ``results_name``: also save them
        as JSON in the inference folder."""
        from .test import evaluate_checkpoint

        logger.info("Evaluating %s", checkpoint)
        metrics = {k: float(v) for k, v in evaluate_checkpoint(
            self.cfg, checkpoint, device=self.device, output_dir=self.output_dir).items()}
        if self.tta is not None:
            metrics.update(self._evaluate_tta(checkpoint))
        if results_name:
            write_json(os.path.join(self.output_dir, results_name), metrics)
        return metrics


    def _evaluate_tta(self, checkpoint: str) -> dict[str, float]:
        from kiln.engine.trainer import DefaultTrainer
        from kiln.model_zoo import load_weights

        with user_errors("cannot evaluate with TEST.AUG"):
            model = DefaultTrainer.build_model(self.tta)
            load_weights(model, checkpoint)
            per_set = DefaultTrainer.test_with_TTA(self.tta, model)
        if len(per_set) == 1:
            return {k: float(v) for k, v in next(iter(per_set.values())).items()}
        return {f"{name}/{k}": float(v) for name, m in per_set.items() for k, v in m.items()}


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as JSON (NaN as null, which JSON has)."""
    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return None if isinstance(x, float) and math.isnan(x) else x

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(clean(obj), f, indent=2)


class _Ranking:
    """Every evaluated checkpoint's metrics and the best one, saved as ``inference/all_res.json``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.all: dict[str, Any] = {}
        self.best_file: str | None = None
        self.best_res: dict[str, float] | None = None

    def add(self, ckpt: str, metrics: dict[str, float]) -> None:
        key = next((k for k in _RANK_KEYS if k in metrics), next(iter(metrics), None))
        value = metrics.get(key) if key else None
        best = self.best_res.get(key) if (self.best_res and key) else None
        if self.best_res is None or (value is not None and not math.isnan(value)
                                     and (best is None or math.isnan(best) or value > best)):
            self.best_file, self.best_res = ckpt, metrics
        self.all[ckpt] = metrics
        write_json(self.path, {**self.all, "best_file": self.best_file, "best_res": self.best_res})
        print(f"{ckpt}: {metrics}")
        print(f"best so far: {self.best_file}")


def _saved_checkpoints(cfg: Any) -> tuple[list[tuple[int, str]], str | None]:
    """(iterations run, path) of the periodic checkpoints in order, and the final one if saved."""
    hook = checkpoint_hook(cfg)
    unit = "epoch" if (cfg.get("train_cfg") or {}).get("type", "").startswith("Epoch") else "iter"
    numbered = []
    for path in glob.glob(os.path.join(glob.escape(cfg.work_dir), "*.pth")):
        n = hook.count_of(path, unit)
        if n is not None:
            numbered.append((n, path))
    final = os.path.join(cfg.work_dir, hook.final_filename) if hook.final_filename else None
    return sorted(numbered), (final if final and os.path.isfile(final) else None)


def evaluate_all(evaluator: CheckpointEvaluator, cfg: Any, start_iter: int = -1, end_iter: int = -1) -> Any:
    """``--eval-all``: every saved checkpoint in iteration order, those saved before ``start_iter`` skipped;
    with ``end_iter``, none after it (and not the final one), as FsDet's ``test_net.py`` does."""
    numbered, final = _saved_checkpoints(cfg)
    chosen = [p for n, p in numbered if n >= start_iter and (end_iter == -1 or n <= end_iter)]
    if final and end_iter == -1:
        chosen.append(final)
    if not chosen:
        have = [os.path.basename(p) for _, p in numbered] + ([os.path.basename(final)] if final else [])
        bounded = start_iter != -1 or end_iter != -1
        window = f" between iterations {start_iter} and {end_iter}" if bounded else ""
        raise CLIError(f"--eval-all: no checkpoint{window} in {cfg.work_dir} (checkpoints there: "
                       f"{', '.join(have) or 'none'}); train first or point --work-dir/OUTPUT_DIR at the run")
    ranking = _Ranking(os.path.join(evaluator.output_dir, "all_res.json"))
    for path in chosen:
        ranking.add(path, evaluator.evaluate(path))
    return ranking


def evaluate_during_train(evaluator: CheckpointEvaluator, cfg: Any, poll_seconds: float = 10.0,
                          clock: Any = time) -> Any:
    """``--eval-during-train``: evaluate each checkpoint ``WORK_DIR/last_checkpoint`` names, as it appears,
    until the training's last one (the final file, or the one saved at ``max_iters``/``max_epochs``)."""
    from kiln.engine.checkpoint import find_resume_checkpoint

    hook = checkpoint_hook(cfg)
    train_cfg = cfg.get("train_cfg") or {}
    unit = "epoch" if "max_epochs" in train_cfg else "iter"
    total = train_cfg.get("max_epochs" if unit == "epoch" else "max_iters")
    ranking = _Ranking(os.path.join(evaluator.output_dir, "all_res.json"))
    seen = None
    logger.info("Waiting for checkpoints in %s (every %.0f s)", cfg.work_dir, poll_seconds)
    while True:
        try:
            current = find_resume_checkpoint(cfg.work_dir) if os.path.isdir(cfg.work_dir) else None
        except FileNotFoundError:  # a checkpoint being written: its pointer follows it
            current = None
        if current and current != seen:
            seen = current
            ranking.add(current, evaluator.evaluate(current))
            if hook.final_filename is not None:  # the end is the final file (after the last periodic one)
                if os.path.basename(current) == hook.final_filename:
                    return ranking
            else:
                n = hook.count_of(current, unit)
                if n is not None and total is not None and n >= int(total):
                    return ranking
        clock.sleep(poll_seconds)
