"""The canonical run schema: the MMEngine-spelled keys :func:`kiln.engine.Runner.from_cfg` builds from.

Every dialect translator produces a dict with only these top-level keys; the builder refuses any other
(:func:`check_canonical`), so a dialect key can never be silently ignored on the way in.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "CANONICAL_KEYS",
    "LOOP_KEYS",
    "is_loop_cfg",
    "is_eval_loop_cfg",
    "check_canonical",
    "suggest",
    "FREEZE_GROUPS",
]

#: top-level keys of the canonical run schema (what the builder reads)
CANONICAL_KEYS = frozenset({
    "model",
    "train_dataloader", "val_dataloader", "test_dataloader",
    "train_cfg", "val_cfg", "test_cfg",
    "optim_wrapper", "param_scheduler",
    "default_hooks", "custom_hooks",
    "val_evaluator", "test_evaluator",
    "env_cfg", "randomness", "device", "sync_bn", "channels_last",
    "load_from", "resume", "work_dir",
    "frozen_modules", "runner_type", "custom_imports",
    "log_level", "launcher", "find_unused_parameters",
    "visualizer", "auto_scale_lr", "tta_model", "tta_pipeline",
})

#: Short names accepted in ``frozen_modules`` (and ``kiln gen-fewshot-configs --freeze``) -> module
#: paths in kiln's detectors.
FREEZE_GROUPS = {
    "backbone": ["backbone"],
    "neck": ["neck"],
    "rpn": ["rpn_head"],
    "roi_feat": ["roi_head.bbox_head.shared_fcs"],
}

#: keys that make a top-level ``train_cfg`` a loop config (MMEngine) rather than a detector's
LOOP_KEYS = frozenset({"max_epochs", "max_iters", "val_interval", "val_begin", "by_epoch"})

def is_loop_cfg(train_cfg: Any) -> bool:
    """True for an MMEngine loop config: ``dict(type='EpochBasedTrainLoop', ...)``, ``dict(by_epoch=...)``."""
    return isinstance(train_cfg, Mapping) and (
        bool(LOOP_KEYS & set(train_cfg)) or str(train_cfg.get("type", "")).endswith("Loop")
    )


def suggest(key: str, known: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest known key, or ``''``."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_canonical(cfg: Mapping[str, Any], where: str = "config") -> None:
    """Raise ``KeyError`` naming every top-level key of ``cfg`` outside :data:`CANONICAL_KEYS`.

    The builder calls this: a dialect key reaching it means the config was not translated
    (:func:`kiln.config.dialects.to_canonical` does that).
    """
    extra = sorted(k for k in cfg if k not in CANONICAL_KEYS)
    if extra:
        hints = "".join(suggest(k, CANONICAL_KEYS) for k in extra[:1])
        raise KeyError(
            f"{where} has keys outside the canonical run schema: {extra}.{hints} The builder reads only "
            f"{', '.join(sorted(CANONICAL_KEYS))}; translate MMCV/MMDetection 2.x or Detectron2 configs "
            f"with kiln.config.dialects.to_canonical(cfg) first (Runner.from_cfg does)."
        )
    train_cfg = cfg.get("train_cfg")
    if train_cfg is not None and not is_loop_cfg(train_cfg):
        raise KeyError(
            f"{where}: train_cfg={dict(train_cfg)!r} is not a loop config (MMEngine: "
            f"dict(type='EpochBasedTrainLoop', max_epochs=12)); a detector's train_cfg belongs in "
            f"model.train_cfg (to_canonical moves the MMDetection 1.x layout there)."
        )
    for key in ("val_cfg", "test_cfg"):
        value = cfg.get(key)
        if value is not None and not is_eval_loop_cfg(value):
            raise KeyError(
                f"{where}: {key}={dict(value) if isinstance(value, Mapping) else value!r} is not a loop "
                f"config (MMEngine: {key}=dict(type='{'Val' if key == 'val_cfg' else 'Test'}Loop')); a "
                f"detector's test settings belong in model.test_cfg."
            )


def is_eval_loop_cfg(cfg: Any) -> bool:
    """True for an MMEngine ``val_cfg``/``test_cfg``: ``dict()``, ``dict(type='ValLoop')``, ``fp16=...``."""
    return isinstance(cfg, Mapping) and set(cfg) <= {"type", "fp16"} and (
        "type" not in cfg or str(cfg["type"]).endswith("Loop")
    )
