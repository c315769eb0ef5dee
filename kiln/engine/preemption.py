"""Graceful preemption: SIGTERM/SIGINT end training at a step boundary with a checkpoint.

SLURM, Kubernetes and most schedulers send SIGTERM some seconds before they kill a job; a user
presses Ctrl-C (SIGINT). While :meth:`kiln.engine.Runner.train` runs, :class:`PreemptionGuard`
turns the first of these signals into a stop request: the current iteration finishes (its step
and its hooks), the runner writes a checkpoint at that iteration (atomically, like every save),
logs where it is and raises :class:`TrainingPreempted`, which exits the process with status
``128 + signal number`` (143 for SIGTERM, 130 for SIGINT) unless caught. ``--resume`` continues
from that checkpoint bit-identically. A second SIGINT (or SIGTERM) while the first is being
handled exits at once, as an impatient Ctrl-C expects.

Under distributed training every rank gets the signal, but not necessarily during the same
iteration; ranks agree on the iteration to stop at with a one-number all-reduce per iteration
on a CPU (gloo) group, so they all save the same position.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

__all__ = ["PreemptionGuard", "PreemptStop", "TrainingPreempted", "PREEMPTION_SIGNALS"]

logger = logging.getLogger("kiln.engine.runner")

#: the signals that preempt training
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingPreempted(SystemExit):
    """Training stopped on a signal after saving a checkpoint; exits with ``128 + signum``.

    Attributes:
        signum: the signal received.
        iteration: iterations completed (the checkpoint resumes from here).
        checkpoint: path of the checkpoint written (``None`` without a work_dir or off rank 0).
    """

    def __init__(self, signum: int, iteration: int, checkpoint: str | None) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)
        self.iteration = int(iteration)
        self.checkpoint = checkpoint

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        where = f"checkpoint {self.checkpoint}" if self.checkpoint else "no checkpoint (no work_dir)"
        return f"training stopped by {name} after iteration {self.iteration}; {where}"


class PreemptStop(Exception):
    """Raised by a training loop that stopped on a preemption signal; the runner saves and exits."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


class PreemptionGuard:
    """Context manager installing the preemption signal handlers around a training loop.

    Handlers are only installed in the main thread (Python delivers signals there); elsewhere
    the guard leaves the handlers alone and says so in the log. The previous handlers are restored
    on exit.

    Args:
        state: the runner's :class:`~kiln.engine.state.RunState` (its stop request ends the loop).
    """

    def __init__(self, state: Any) -> None:
        self.state = state
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._group: Any = None
        self._distributed = False

    # ------------------------------------------------------------------ context
    def __enter__(self) -> PreemptionGuard:
        from . import comm

        self._distributed = comm.get_world_size() > 1
        if self._distributed:
            self._group = comm._object_group()  # gloo even under NCCL: no GPU sync for one flag
        if threading.current_thread() is not threading.main_thread():
            logger.info("Training runs outside the main thread: SIGTERM/SIGINT are not turned into a "
                        "checkpoint-and-stop (signal handlers can only be set in the main thread).")
            return self
        for sig in PREEMPTION_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    # ------------------------------------------------------------------ signals
    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # second signal: exit now
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)  # default action of the restored handler
            return
        self.signum = signum
        logger.warning("Received %s: finishing iteration %d, then saving a checkpoint and stopping "
                       "(send it again to exit at once, without a checkpoint).",
                       signal.Signals(signum).name, self.state.iter + 1)

    def agreed_signal(self) -> int | None:
        """The signal all ranks stop on (the largest one any rank received), or ``None``.

        One all-reduce per call under distributed training; a plain attribute read otherwise.
        """
        if not self._distributed:
            return self.signum
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self.signum or 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        value = int(flag.item())
        if value and self.signum is None:
            self.signum = value
        return value or None
