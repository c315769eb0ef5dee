"""The runner's checkpoint side: what a checkpoint holds and how a resume restores it.

Split from :mod:`kiln.engine.runner` (a mixin of :class:`~kiln.engine.Runner`): position in the
data stream, RNG states per rank, hook states, storage history, schedules, config text and meta.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import collect_rng_states_all_ranks, set_rng_states
from .data_position import is_resumable_loader
from .hooks.base import Hook

if TYPE_CHECKING:
    from .runner import Runner

__all__ = ["RunnerCheckpointMixin"]

logger = logging.getLogger("kiln.engine.runner")


class _ScheduleHolder:
    """What the checkpoint stores for the param schedules (kiln shapes and/or torch schedulers)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def state_dict(self) -> dict:
        r = self.runner
        state: dict[str, Any] = {}
        if r.schedule_set is not None:
            state["kiln"] = r.schedule_set.state_dict()
        state["torch"] = [s.state_dict() for s in r.torch_schedulers]
        return state

    def load_state_dict(self, state: Mapping) -> None:
        r = self.runner
        if r.schedule_set is not None and "kiln" in state:
            r.schedule_set.load_state_dict(state["kiln"])
        for s, st in zip(r.torch_schedulers, state.get("torch", [])):
            s.load_state_dict(st)


class RunnerCheckpointMixin:
    """Checkpoint save/resume methods of the Runner."""

    def save_checkpoint(
        self, name: str, save_optimizer: bool = True, meta: Mapping | None = None
    ) -> str | None:
        """Save everything needed to resume exactly; collective (all ranks call it), rank 0 writes."""
        self.flush_metrics()
        epoch, inner, it = self.state.position(self.epoch_length)
        rng = collect_rng_states_all_ranks()
        extra: dict[str, Any] = {
            "meta": {
                "epoch": epoch,
                "iter": it,
                "inner_iter": inner,
                "seed": self.seed,
                "world_size": self.world_size,
                "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                "kiln_version": _kiln_version(),
                "torch_version": str(torch.__version__),
                "config": _config_text(self.cfg),
                **dict(meta or {}),
            },
            "storage": self.storage.state_dict() if self.storage is not None else None,
            "hooks": self._hook_states(),
            **rng,
        }
        if self.train_dataloader is not None and is_resumable_loader(self.train_dataloader):
            extra["loader"] = self.train_dataloader.state_dict()
        self.call_hook("before_save_checkpoint", extra)
        if extra["storage"] is None:
            extra.pop("storage")
        if not save_optimizer:
            opt = self.checkpointer.checkpointables.pop("optimizer", None)
            try:
                path = self.checkpointer.save(name, **extra)
            finally:
                if opt is not None:
                    self.checkpointer.checkpointables["optimizer"] = opt
        else:
            path = self.checkpointer.save(name, **extra)
        return path

    def _hook_states(self) -> dict[str, Any]:
        states = {}
        for i, h in enumerate(self._hooks):
            if hasattr(h, "state_dict") and hasattr(h, "load_state_dict"):
                states[self._hook_state_key(h, i)] = h.state_dict()
        return states

    def _hook_state_key(self, hook: Hook, index: int) -> str:
        key = self._hook_keys.get(id(hook))
        if key:
            return key
        same = [h for h in self._hooks if type(h) is type(hook)]
        return f"{type(hook).__name__}.{same.index(hook)}"

    def load_checkpoint(self, path: str, strict_resume: bool = False) -> dict:
        """Load model weights only (``load_from``); returns the checkpoint's other entries."""
        extra = self.checkpointer.load(path, checkpointables=[])
        self._weights_loaded = True
        return extra

    def resume(self, path: str) -> None:
        """Restore model, optimizer, schedules, loader position, hooks, storage and RNGs from ``path``."""
        extra = self.checkpointer.load(path, strict_model=True)
        meta = extra.get("meta", {})
        self.state.restore(meta.get("epoch", 0), meta.get("iter", 0), meta.get("inner_iter", 0))
        if self.seed is not None and meta.get("seed") is not None and meta["seed"] != self.seed:
            logger.warning(
                "Resuming a run seeded %s with seed %s; the data order will differ.", meta["seed"], self.seed
            )
        if "storage" in extra and self.storage is not None:
            self.storage.load_state_dict(extra["storage"])
        loader = self.train_dataloader
        if "loader" in extra and loader is not None and is_resumable_loader(loader):
            loader.load_state_dict(extra["loader"])
        hook_states = extra.get("hooks", {})
        for i, h in enumerate(self._hooks):
            key = self._hook_state_key(h, i)
            if key in hook_states and hasattr(h, "load_state_dict"):
                h.load_state_dict(hook_states[key])
        rng = extra.get(f"rng_state_rank{self.rank}")
        if rng is not None:
            set_rng_states(rng)
        elif any(k.startswith("rng_state_rank") for k in extra):
            logger.warning(
                "Checkpoint has no RNG state for rank %d (saved with another world size).", self.rank
            )
        if meta.get("world_size", self.world_size) != self.world_size:
            logger.warning(
                "Resuming a %s-process run with %d processes: the data split will differ.",
                meta.get("world_size"),
                self.world_size,
            )
        self._resumed = True
        self.call_hook("after_load_checkpoint", extra)
        logger.info("Resumed from %s at epoch %d, iteration %d", path, self.epoch, self.iter)

    def _load_or_resume(self) -> None:
        if self._resumed:
            return
        resume = self.resume_from
        if resume:
            path = resume if isinstance(resume, str) else None
            if path is None:  # the work dir's last checkpoint; one that cannot be followed is an error
                from .checkpoint import find_resume_checkpoint

                path = find_resume_checkpoint(self.work_dir)
            if path:
                self.resume(path)
                return
            logger.info("resume=True but no checkpoint found in %s; starting from scratch.", self.work_dir)
        if self.load_from:
            self.load_checkpoint(self.load_from)


def _kiln_version() -> str:
    import kiln

    return kiln.__version__


def _config_text(cfg: Any) -> str:
    if cfg is None:
        return ""
    for attr in ("pretty_text", "dump"):
        fn = getattr(cfg, attr, None)
        if isinstance(fn, str):
            return fn
        if attr == "dump" and callable(fn):
            try:
                out = fn()
                if isinstance(out, str):
                    return out
            except Exception:  # a config that cannot dump still must not block a checkpoint
                pass
    try:
        return repr(copy.deepcopy(dict(cfg)))
    except Exception:
        return repr(cfg)
