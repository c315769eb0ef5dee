"""Run a model over a data loader and feed an evaluator: :func:`inference_on_dataset`."""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .evaluator import DatasetEvaluator, DatasetEvaluators

__all__ = ["inference_on_dataset", "inference_context"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def inference_context(model: Any) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if hasattr(model, "train"):
            model.train(was_training)


def _as_evaluator(evaluator: DatasetEvaluator | Sequence[DatasetEvaluator] | None) -> DatasetEvaluator:
    if evaluator is None:
        return DatasetEvaluators([])  # measure speed only
    if isinstance(evaluator, DatasetEvaluator):
        return evaluator
    if isinstance(evaluator, (list, tuple)):
        return DatasetEvaluators(evaluator)
    raise TypeError(
        f"inference_on_dataset: evaluator must be a DatasetEvaluator, a list of them or None, "
        f"got {type(evaluator).__name__}."
    )


def _progress(loader: Iterable, total: int | None, enabled: bool) -> Iterable:
    if not enabled:
        return loader
    from tqdm import tqdm

    return tqdm(loader, total=total, desc="inference", unit="batch", leave=False, dynamic_ncols=True)


def inference_on_dataset(
    model: Any,
    data_loader: Iterable,
    evaluator: DatasetEvaluator | Sequence[DatasetEvaluator] | None,
    *,
    num_warmup: int = 5,
    progress: bool | None = None,
    log_period: int = 0,
    log_every_s: float | None = 5.0,
) -> dict[str, float]:
    """Run ``model`` on every batch of ``data_loader`` and return ``evaluator.evaluate()``.

    The model runs in eval mode under ``torch.no_grad()`` and gets its previous mode back at
    the end. Each batch and its outputs go to ``evaluator.process``; in a distributed run each
    rank sees its shard and the evaluator gathers (kiln's evaluators do).

    Args:
        model: a callable taking a batch (list of per-image dicts) and returning a list of
            per-image prediction dicts.
        data_loader: an iterable of batches; ``len()`` is used for the progress bar if it has one.
        evaluator: a :class:`DatasetEvaluator`, a list of them, or ``None`` (speed only).
        num_warmup: batches excluded from the timing (first calls are slow: allocator, cudnn).
        progress: show a tqdm progress bar; default: on the main process when stderr is a terminal
            (redirected output gets the periodic ``log_every_s`` lines instead).
        log_period: also log progress every ``log_period`` batches (0: never).
        log_every_s: log ``Inference done i/N`` with the data-loading, model and evaluator time per
            batch and an ETA every this many seconds, as Detectron2 does (after twice ``num_warmup``
            batches); ``None`` turns it off.

    Returns:
        The evaluator's metrics. Timing (total and per-image model time, warm-up excluded) is
        logged and kept on ``inference_on_dataset.last_timing``.
    """
    import torch

    from kiln.utils.dist import get_dist_info

    rank, world_size = get_dist_info()
    evaluator = _as_evaluator(evaluator)
    evaluator.reset()
    try:
        total = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        total = None
    if progress is None:  # a redrawn bar only in a terminal; redirected output gets the periodic log lines
        from kiln.utils.progress import stderr_is_terminal

        progress = rank == 0 and stderr_is_terminal()
    num_warmup = max(0, min(num_warmup, (total - 1) if total else num_warmup))

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    n_batches = n_images = timed_images = 0
    compute_time = data_time = eval_time = 0.0
    logger.info("Start inference on %s batches", total if total is not None else "?")
    start = time.perf_counter()
    timed_start = last_log = start
    with inference_context(model), torch.no_grad():
        t_data = time.perf_counter()
        for batch in _progress(data_loader, total, bool(progress)):
            if n_batches == num_warmup:
                # Restart the clocks after warm-up so the reported speed is the steady state.
                timed_start = time.perf_counter()
                compute_time = data_time = eval_time = 0.0
                timed_images = 0
            t0 = time.perf_counter()
            data_time += t0 - t_data
            outputs = model(batch)
            sync()
            t1 = time.perf_counter()
            compute_time += t1 - t0
            evaluator.process(batch, outputs)
            eval_time += time.perf_counter() - t1
            n_batches += 1
            n_images += len(batch)
            timed_images += len(batch)
            if log_period and n_batches % log_period == 0:
                logger.info("Inference done %d/%s batches", n_batches, total if total else "?")
            now = time.perf_counter()
            timed_iters = n_batches - min(num_warmup, n_batches)
            per_iter = (now - timed_start) / timed_iters if timed_iters else now - start
            # As Detectron2: progress every log_every_s seconds once past twice the warm-up (or when
            # batches are slow), with the per-stage times and an ETA.
            if (log_every_s is not None and now - last_log >= log_every_s
                    and (n_batches >= 2 * num_warmup or per_iter > 5)):
                last_log = now
                k = max(timed_iters, 1)
                eta = datetime.timedelta(seconds=int(per_iter * (total - n_batches))) if total else "?"
                logger.info(
                    "Inference done %d/%s. Dataloading: %.4f s/iter. Inference: %.4f s/iter. "
                    "Eval: %.4f s/iter. Total: %.4f s/iter. ETA=%s", n_batches,
                    total if total is not None else "?", data_time / k, compute_time / k, eval_time / k,
                    per_iter, eta)
            t_data = time.perf_counter()
    wall = time.perf_counter() - start
    timed_wall = time.perf_counter() - timed_start
    if n_batches <= num_warmup:  # too few batches to exclude a warm-up: report them all
        timed_wall, timed_images = wall, n_images
    timing = {
        "total_time": wall,
        "images": n_images,
        "time_per_image": timed_wall / max(timed_images, 1),
        "model_time_per_image": compute_time / max(timed_images, 1),
        "num_warmup_batches": min(num_warmup, n_batches),
    }
    inference_on_dataset.last_timing = timing  # type: ignore[attr-defined]
    logger.info(
        "Inference on %d images took %s (%.4f s/img; model %.4f s/img; %d warm-up batches excluded, "
        "world size %d)",
        n_images, str(datetime.timedelta(seconds=int(wall))), timing["time_per_image"],
        timing["model_time_per_image"], timing["num_warmup_batches"], world_size,
    )
    results = evaluator.evaluate()
    # An evaluator may return None on non-main ranks; callers get a dict either way.
    return results if results is not None else {}
