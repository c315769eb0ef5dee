"""Config dialects translated at the edge into one canonical run schema.

kiln reads configs written for MMEngine/MMDetection 3.x (the canonical schema), MMCV 1.x /
MMDetection 1.x-2.x, and Detectron2. Each dialect has one pure translator here, and
:func:`to_canonical` detects which apply (by their keys) and runs them; the runner builder then reads
only :data:`~.canonical.CANONICAL_KEYS`.

* :mod:`.mmcv` - ``data``, ``optimizer``/``optimizer_config``/``fp16``, ``lr_config``,
  ``checkpoint_config``, ``log_config``, ``evaluation``, ``total_epochs``/``runner``, ``workflow``, ...
* :mod:`.mmcv_schedules` - ``lr_config``/``momentum_config`` policies -> ``param_scheduler``.
* :mod:`.mmdet_v1_heads` - MMDetection v1 anchor-head keys -> ``anchor_generator``/``bbox_coder``.
* :mod:`.detectron2` - a Detectron2 ``CfgNode`` -> the canonical schema (:mod:`.d2_model`
  with :mod:`.d2_backbone` and :mod:`.d2_heads`, :mod:`.d2_data`, :mod:`.d2_solver`; refusals in
  :mod:`.d2_check`).

Example::

    >>> from kiln.config import Config
    >>> from kiln.config.dialects import to_canonical
    >>> canonical = to_canonical(Config.fromfile('retinanet_r101_fpn_1x.py'))  # doctest: +SKIP
    >>> canonical['train_cfg']  # doctest: +SKIP
    {'type': 'EpochBasedTrainLoop', 'max_epochs': 12, 'val_interval': 1}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .canonical import CANONICAL_KEYS, check_canonical, suggest
from .mmcv import MMCV_KEYS, is_mmcv, mmcv_to_canonical
from .mmdet_v1_heads import translate_model
from .mmengine_runtime import RUNTIME_KEYS, runtime_to_canonical

__all__ = ["CANONICAL_KEYS", "to_canonical", "detect_dialects", "check_canonical", "plain"]


# Config variables look like any other top-level name; these are only refused when they are close
# to a schema key (a misspelling), so a helper variable such as `data_root` passes.
_KNOWN = CANONICAL_KEYS | MMCV_KEYS | RUNTIME_KEYS
# Variables MMDetection's configs define at the top level (read by their own dicts, not by a runner);
# never mistaken for misspelt schema keys.
_MMENGINE_OTHER = {
    "model_wrapper_cfg", "backend_args", "file_client_args", "metainfo", "experiment_name", "vis_backends",
    "data_root", "dataset_type", "train_pipeline", "val_pipeline", "test_pipeline", "img_norm_cfg",
    "img_scale", "classes", "norm_cfg",
}


def plain(obj: Any) -> Any:
    """Config/ConfigDict/CfgNode -> plain dicts and lists (tuples kept), recursively."""
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    return obj


def _is_detectron2(cfg: Any) -> bool:
    keys = [k for k in cfg if isinstance(k, str)] if isinstance(cfg, Mapping) else []
    return bool(keys) and all(k == k.upper() for k in keys) and "MODEL" in keys


def detect_dialects(cfg: Any) -> list[str]:
    """Names of the dialects ``cfg`` uses: ``'detectron2'``, ``'mmcv'``, ``'mmdet_v1_heads'`` (or ``[]``)."""
    if _is_detectron2(cfg):
        return ["detectron2"]
    out = []
    if is_mmcv(cfg):
        out.append("mmcv")
    model = cfg.get("model")
    if model is not None and plain(model) != translate_model(plain(model)):
        out.append("mmdet_v1_heads")
    return out


def _leftovers(cfg: Mapping[str, Any]) -> None:
    """Refuse top-level keys that look like misspelt schema keys."""
    unknown = [k for k in cfg if k not in _KNOWN | _MMENGINE_OTHER and not str(k).startswith("_")]
    for key in unknown:
        hint = suggest(str(key), _KNOWN)
        if hint:
            raise KeyError(f"Config key {key!r} is not a run-config key kiln knows.{hint}")


def to_canonical(cfg: Any) -> dict[str, Any]:
    """Translate a run config of any supported dialect into the canonical schema (a new plain dict).

    ``cfg`` is a :class:`~kiln.config.Config`, a plain dict, or a merged Detectron2 ``CfgNode``. Config
    variables (``data_root``, ``train_pipeline``, ...) are left out of the result; a key that looks like
    a misspelt schema key is an error with a suggestion. The result passes :func:`check_canonical`.
    """
    if _is_detectron2(cfg):
        from .detectron2 import d2_to_canonical

        return d2_to_canonical(cfg)
    d = plain(cfg)
    _leftovers(d)
    if is_mmcv(d):
        d = mmcv_to_canonical(d)
    else:
        d = {k: v for k, v in d.items() if k in CANONICAL_KEYS and v is not None}
    runtime_to_canonical(plain(cfg), d)
    if d.get("model") is not None:
        d["model"] = translate_model(d["model"])
    wrapper = plain(cfg).get("model_wrapper_cfg") if isinstance(cfg, Mapping) else None
    if wrapper:
        _model_wrapper(wrapper, d)
    check_canonical(d)
    return d


def _model_wrapper(wrapper: Mapping[str, Any], out: dict[str, Any]) -> None:
    """MMEngine ``model_wrapper_cfg=dict(type='MMDistributedDataParallel', find_unused_parameters=...)``."""
    extra = sorted(set(wrapper) - {"type", "find_unused_parameters"})
    kind = str(wrapper.get("type", "MMDistributedDataParallel"))
    if extra or kind not in ("MMDistributedDataParallel", "DistributedDataParallel"):
        raise ValueError(f"model_wrapper_cfg={dict(wrapper)!r}: kiln wraps with DistributedDataParallel and "
                         f"takes only find_unused_parameters; write find_unused_parameters=True instead.")
    if "find_unused_parameters" in wrapper:
        if out.get("find_unused_parameters") not in (None, wrapper["find_unused_parameters"]):
            raise ValueError("find_unused_parameters and model_wrapper_cfg.find_unused_parameters disagree.")
        out["find_unused_parameters"] = bool(wrapper["find_unused_parameters"])
