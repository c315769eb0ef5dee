"""MMCV's checkpoint methods on kiln's MMCV runners: ``save_checkpoint``, ``load_checkpoint``, ``resume``.

A mixin of :class:`kiln.engine.mmcv_runner.BaseRunner`. The files are kiln's full checkpoints (model,
optimizer, schedules, loader position, RNG and hook states: an exact resume), written atomically;
MMCV's habits are kept: ``epoch_{n}.pth``/``iter_{n}.pth`` names, a ``latest.pth`` link, ``meta``
saved into each file, ``resume(checkpoint, resume_optimizer, map_location)`` and
``load_checkpoint(filename, map_location, strict, revise_keys)``. Plain MMCV checkpoints
(``state_dict``/``optimizer``/``meta``) load too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .checkpoint import IncompatibleKeys, format_incompatible_keys, load_checkpoint_file

__all__ = ["MMCVCheckpointMixin"]


def _is_kiln_checkpoint_name(x: Any) -> bool:
    """``save_checkpoint('epoch_3')`` (kiln: a name in work_dir) vs ``save_checkpoint(out_dir)`` (MMCV)."""
    return isinstance(x, str) and "/" not in x and os.sep not in x and not os.path.isdir(x)


class MMCVCheckpointMixin:
    """MMCV checkpoint signatures over kiln's checkpointing (see the module docstring)."""

    default_filename_tmpl = "epoch_{}.pth"

    def _checkpoint_meta(self, meta: Mapping | None) -> dict:
        out = {k: v for k, v in (self.meta or {}).items() if k not in ("epoch", "iter", "inner_iter")}
        out.update({k: v for k, v in dict(meta or {}).items() if k not in ("epoch", "iter", "inner_iter")})
        return out

    def save_checkpoint(  # type: ignore[override]
        self,
        out_dir: str,
        filename_tmpl: str | None = None,
        save_optimizer: bool = True,
        meta: Mapping | None = None,
        create_symlink: bool = True,
    ) -> str | None:
        """MMCV: save ``out_dir/filename_tmpl.format(n)`` (n = epochs or iterations done) and link
        ``latest.pth`` to it. kiln: ``save_checkpoint('epoch_3')`` (a bare name, as kiln's hooks call
        it) saves ``work_dir/epoch_3.pth``. Either way the file is a full kiln checkpoint (exact resume).
        """
        if filename_tmpl is None and _is_kiln_checkpoint_name(out_dir):
            path = super().save_checkpoint(
                out_dir, save_optimizer=save_optimizer, meta=self._checkpoint_meta(meta)
            )
        else:
            tmpl = filename_tmpl or self.default_filename_tmpl
            n = (self.epoch if self._unit == "epoch" else self.iter) + 1
            name = tmpl.format(n)
            name = name[:-4] if name.endswith(".pth") else name
            ckpt = self.checkpointer
            old_dir = ckpt.save_dir
            ckpt.save_dir = os.path.abspath(os.fspath(out_dir))
            if ckpt.save_to_disk:
                os.makedirs(ckpt.save_dir, exist_ok=True)
            try:
                path = super().save_checkpoint(
                    name, save_optimizer=save_optimizer, meta=self._checkpoint_meta(meta)
                )
            finally:
                ckpt.save_dir = old_dir
        if path is not None and create_symlink:
            _link_latest(path)
        return path

    def load_checkpoint(  # type: ignore[override]
        self,
        filename: str,
        map_location: Any = "cpu",
        strict: bool = False,
        revise_keys: Sequence[tuple[str, str]] = ((r"^module\.", ""),),
    ) -> dict:
        """Load model weights (MMCV signature); returns the checkpoint dict (``state_dict``, ``meta``, ...).

        ``revise_keys``: ``(pattern, replacement)`` regex substitutions applied to every key.
        ``strict``: missing/unexpected/shape-mismatched keys raise; otherwise they are skipped and
        listed in a warning. Files are read on the CPU and copied into the model wherever it lives,
        so ``map_location`` does not change the result.
        """
        ckpt = load_checkpoint_file(filename, allow_pickle=self.allow_pickle)
        state = ckpt.pop("model")
        for pattern, repl in revise_keys:
            state = {re.sub(pattern, repl, k): v for k, v in state.items()}
        model = self._raw_model
        own = model.state_dict()
        bad_shape = [
            (k, tuple(v.shape), tuple(own[k].shape))
            for k, v in state.items()
            if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
        ]
        for k, _, _ in bad_shape:
            state.pop(k)
        result = model.load_state_dict(state, strict=False)
        inc = IncompatibleKeys(list(result.missing_keys), list(result.unexpected_keys), bad_shape)
        table = format_incompatible_keys(inc, source=f"'{filename}'")
        if table and strict:
            raise RuntimeError(f"{table}\n(strict=True; pass strict=False to load what matches).")
        if table:
            self.logger.warning(table)
        self._weights_loaded = True
        return {"state_dict": state, **ckpt}

    def resume(  # type: ignore[override]
        self, checkpoint: str, resume_optimizer: bool = True, map_location: Any = "default"
    ) -> None:
        """Resume training from ``checkpoint`` (MMCV signature).

        Called before ``run()``, it loads the weights (and optimizer) at once and sets
        ``epoch``/``iter``/``meta``; when ``run()`` starts, everything else of an exact resume follows
        (loader position, RNG states, hook states, schedules, logged history), as ``kiln train
        --resume`` does. ``map_location`` does not change the result (see :meth:`load_checkpoint`).
        """
        self._resume_optimizer = bool(resume_optimizer)
        if self._in_run:
            self._resume_now(checkpoint)
            return
        keys = ["optimizer"] if resume_optimizer and "optimizer" in self.checkpointer.checkpointables else []
        extra = self.checkpointer.load(checkpoint, checkpointables=keys)
        meta = dict(extra.get("meta", {}))
        self.state.restore(
            int(meta.get("epoch", 0)), int(meta.get("iter", 0)), int(meta.get("inner_iter", 0))
        )
        self.meta = dict(self.meta or {})
        self.meta.update(meta)
        self.resume_from = checkpoint
        self._resumed = False  # the rest of the state is restored when run() starts
        self.logger.info("resumed epoch %d, iter %d", self.epoch, self.iter)

    def _resume_now(self, path: str) -> None:
        ckpt = self.checkpointer
        opt = None if self._resume_optimizer else ckpt.checkpointables.pop("optimizer", None)
        try:
            super().resume(path)
        finally:
            if opt is not None:
                ckpt.checkpointables["optimizer"] = opt


def _link_latest(path: str) -> None:
    """Point ``latest.pth`` next to ``path`` at it (a relative symlink; a copy where links fail)."""
    latest = os.path.join(os.path.dirname(path), "latest.pth")
    if os.path.abspath(latest) == os.path.abspath(path):
        return
    tmp = latest + ".tmp"
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(os.path.basename(path), tmp)
    except OSError:
        import shutil

        shutil.copyfile(path, tmp)
    os.replace(tmp, latest)
