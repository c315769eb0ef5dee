"""How far training has got, counted the way checkpoint files are named (1-based)."""

from __future__ import annotations

from typing import Any

__all__ = ["trained_so_far"]


def trained_so_far(runner: Any) -> tuple[str, int]:
    """``('epoch', n)`` or ``('iter', n)``: the epochs (iterations) the weights have been trained for.

    ``epoch_1.pth`` is saved after the first epoch: during that epoch's ``after_train_epoch`` stage
    (and the validation it runs) this is ``('epoch', 1)``, and after resuming from ``epoch_1.pth``
    too. Iteration-based runs count iterations (``iter_500.pth`` after 500).
    """
    if runner.by_epoch:
        length = runner.epoch_length
        finished = bool(length) and runner.inner_iter >= length  # the epoch ended; the counter moves next
        return "epoch", runner.epoch + int(finished)
    # Inside after_train_iter the loop has not counted the step just taken in ``iter`` yet
    # (``steps_done`` has).
    state = getattr(runner, "state", None)
    return "iter", max(runner.iter, state.steps_done if state is not None else 0)
