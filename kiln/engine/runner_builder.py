"""``Runner.from_cfg``: translate a run config to the canonical schema, then build every object once.

The builder reads only the canonical (MMEngine-spelled) keys, :data:`kiln.config.dialects.CANONICAL_KEYS`:
``model``, ``train_dataloader``/``val_dataloader``/``test_dataloader`` (MMEngine dataloader dicts, read
by :func:`kiln.data.build_dataloader_from_cfg`), ``train_cfg``/``val_cfg``/``test_cfg`` loops,
``optim_wrapper``, ``param_scheduler``, ``default_hooks``, ``custom_hooks``,
``val_evaluator``/``test_evaluator``, ``env_cfg``, ``randomness``, ``device``, ``sync_bn``,
``channels_last``, ``load_from``, ``resume``, ``work_dir``, ``frozen_modules``, ``runner_type``,
``custom_imports``, ``find_unused_parameters``, ``visualizer`` (built into ``runner.visualizer``),
``auto_scale_lr`` (``log_level``/``launcher`` are read by the entry point; ``tta_model``/``tta_pipeline``
by ``kiln test --tta``). Every build also checks each head's ``num_classes`` against each dataset.
MMCV/MMDetection 2.x and Detectron2 configs are translated first by
:func:`kiln.config.dialects.to_canonical`; a dialect key that reaches :func:`build_runner_from_canonical`
is an error. Everything a config can say is applied here, so ``kiln train``, ``Runner.from_cfg`` and
a script calling this builder behave the same.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from typing import Any

from kiln.config.dialects import check_canonical, plain, to_canonical
from kiln.config.dialects.mmcv import parse_workflow, workflow_val_phases
from kiln.registry import DATASETS, MODELS, RUNNERS, import_modules

from .optim import build_optim_wrapper

__all__ = [
    "build_runner_from_cfg",
    "build_runner_from_canonical",
    "build_model_from_cfg",
    "parse_workflow",
    "workflow_val_phases",
]

logger = logging.getLogger(__name__)

_LENGTH_HELP = (
    "add train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=12) (or type='IterBasedTrainLoop', "
    "max_iters=90000); in MMCV configs total_epochs=12, or runner=dict(type='EpochBasedRunner', "
    "max_epochs=12) / dict(type='IterBasedRunner', max_iters=90000)."
)


def build_model_from_cfg(model_cfg: Any) -> Any:
    """``kiln.models.build_detector(model_cfg)`` (detector train/test settings live in ``model``)."""
    if model_cfg is None:
        raise KeyError("The config has no 'model' entry; add model=dict(type='...', ...).")
    try:
        from kiln.models import build_detector
    except ImportError:  # kiln.models needs torchvision; plain models still build
        return MODELS.build(plain(model_cfg), cfg_path="model")
    return build_detector(plain(model_cfg))


def _loop_kind(train_cfg: Mapping[str, Any] | None) -> str | None:
    """``'epoch'`` or ``'iter'`` for an MMEngine train loop config (``None``: no training loop)."""
    if train_cfg is None:
        return None
    kind = str(train_cfg.get("type", ""))
    if "Iter" in kind or train_cfg.get("by_epoch") is False or (
        "max_iters" in train_cfg and "max_epochs" not in train_cfg
    ):
        return "iter"
    return "epoch"


def _build_dataset(ds_cfg: Any, test_mode: bool, where: str) -> Any:
    from kiln.data import build_dataset

    ds_cfg = plain(ds_cfg)
    default_args = None
    cls = (
        DATASETS.get(ds_cfg.get("type"))
        if isinstance(ds_cfg, Mapping) and isinstance(ds_cfg.get("type"), str)
        else None
    )
    if test_mode and cls is not None and "test_mode" in inspect.signature(cls).parameters:
        default_args = {"test_mode": True}
    return build_dataset(ds_cfg, default_args, cfg_path=where)


class _LoaderFactory:
    """Builds canonical loader configs; equal configs give the same loader (one shared data stream)."""

    def __init__(self, kind: str | None, seed: int | None) -> None:
        self.kind, self.seed = kind, seed
        self._built: list[tuple[Any, tuple[Any, Any]]] = []

    def build(self, loader_cfg: Mapping[str, Any], where: str, test_mode: bool, shuffle: bool) -> tuple:
        """``(dataset, loader)`` for an MMEngine dataloader dict (``kiln.data.build_dataloader_from_cfg``
        reads and checks every key); ``shuffle`` marks the training loader."""
        from kiln.data import build_dataloader_from_cfg

        loader_cfg = plain(loader_cfg)
        key = (loader_cfg, test_mode, shuffle)
        for cfg, built in self._built:
            if cfg == key:
                return built
        if "dataset" not in loader_cfg:
            raise KeyError(f"{where} has no 'dataset'; write {where}=dict(batch_size=2, num_workers=2, "
                           f"dataset=dict(type=..., ...)).")
        ds = _build_dataset(loader_cfg["dataset"], test_mode, f"{where}.dataset")
        grouping = None if "batch_sampler" in loader_cfg else (shuffle and hasattr(ds, "flag"))
        loader = build_dataloader_from_cfg(
            loader_cfg, ds, training=shuffle, infinite=shuffle and self.kind == "iter", seed=self.seed,
            where=where,
            # 3.x configs say batch_sampler=AspectRatioBatchSampler when they group; 2.x-translated and
            # kiln loader dicts group as MMDetection 2.x's GroupSampler did (datasets with a `flag`).
            aspect_ratio_grouping=grouping,
        )
        self._built.append((key, (ds, loader)))
        return ds, loader


def _hooks(
    cfg: Mapping[str, Any], has_val: bool, kind: str | None, loaders: _LoaderFactory
) -> tuple[dict, list]:
    default_hooks: dict[str, Any] = {}
    for key, value in plain(cfg.get("default_hooks") or {}).items():
        default_hooks[key] = dict(value) if isinstance(value, Mapping) else value
    if "checkpoint" not in default_hooks:
        default_hooks["checkpoint"] = dict(type="CheckpointHook", interval=1 if kind != "iter" else -1)
    eval_cfg = default_hooks.pop("eval", None)
    if has_val:
        val_interval = int((cfg.get("train_cfg") or {}).get("val_interval", 1))
        hook_cfg: dict[str, Any] = {"type": "EvalHook", "interval": val_interval}
        hook_cfg.update(eval_cfg or {})
        default_hooks["eval"] = hook_cfg
    elif isinstance(eval_cfg, Mapping) and len(eval_cfg) > 1:
        logger.warning("default_hooks.eval=%r: the config has no val_dataloader with a val_evaluator, so "
                       "nothing is evaluated during training.", eval_cfg)
    for key, value in list(default_hooks.items()):
        # Hooks that read their own data (ValLossHook) get their loader built here.
        if isinstance(value, Mapping) and isinstance(value.get("dataloader"), Mapping):
            value = dict(value)
            _, value["dataloader"] = loaders.build(
                value["dataloader"], f"default_hooks.{key}.dataloader", test_mode=False, shuffle=False
            )
            default_hooks[key] = value  # the runner builds it (and honours its priority)
    custom = [dict(h) if isinstance(h, Mapping) else h for h in plain(cfg.get("custom_hooks") or [])]
    return default_hooks, custom


def _loop_kwargs(runner_cls: type, train_cfg: Any, val_cfg: Any, test_cfg: Any) -> dict[str, Any]:
    """The training-length arguments of ``runner_cls``.

    MMEngine spelling (``train_cfg=``/``val_cfg=``/``test_cfg=`` loop configs) when the runner takes
    it; otherwise the older ``max_epochs=``/``max_iters=``/``val_interval=`` (one adapter, dropped once
    every runner takes loop configs).
    """
    params = inspect.signature(runner_cls.__init__).parameters
    if "train_cfg" in params:
        return {k: v for k, v in (("train_cfg", train_cfg), ("val_cfg", val_cfg), ("test_cfg", test_cfg))
                if v is not None}
    for key, value in (("val_cfg", val_cfg), ("test_cfg", test_cfg)):
        if value and str(value.get("type", "Loop")) not in ("ValLoop", "TestLoop", "Loop"):
            raise ValueError(f"{key}={value!r}: {runner_cls.__name__} runs the standard val/test loop only.")
    if train_cfg is None:
        return {}
    kind = _loop_kind(train_cfg)
    length_key = "max_iters" if kind == "iter" else "max_epochs"
    if length_key not in train_cfg:
        raise KeyError(f"train_cfg={dict(train_cfg)!r} has no {length_key}; {_LENGTH_HELP}")
    extra = sorted(set(train_cfg) - {"type", "by_epoch", "max_epochs", "max_iters", "val_interval",
                                     "val_begin"})
    if extra:
        raise KeyError(f"train_cfg has keys {runner_cls.__name__} does not take: {extra}.")
    if train_cfg.get("val_begin", 1) != 1:
        raise ValueError("train_cfg.val_begin: set the first evaluation with default_hooks.eval.start.")
    return {length_key: int(train_cfg[length_key]), "val_interval": int(train_cfg.get("val_interval", 1))}


def _placement_kwargs(runner_cls: type, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``device``/``env_cfg``/``sync_bn``/``channels_last``/``visualizer`` for ``runner_cls``, when set.

    A runner without one of these arguments still honours what needs no placement code: ``device``
    ``'cpu'`` (where it trains anyway) and ``env_cfg.cudnn_benchmark`` (set here); anything else is
    an error rather than a run in the wrong place.
    """
    params = inspect.signature(runner_cls.__init__).parameters
    out: dict[str, Any] = {}
    for key in ("device", "env_cfg", "sync_bn", "channels_last", "visualizer"):
        value = cfg.get(key)
        if value is None or value is False:
            continue
        if key == "visualizer" and key in params:
            out[key] = _visualizer(cfg, cfg.get("work_dir"))
        elif key in params:
            out[key] = plain(value)
        elif key == "device" and str(value) == "cpu":
            continue
        elif key == "env_cfg" and set(value) <= {"cudnn_benchmark"}:
            import torch

            if not (cfg.get("randomness") or {}).get("deterministic"):
                torch.backends.cudnn.benchmark = bool(value.get("cudnn_benchmark", False))
        else:
            raise ValueError(f"{key}={value!r}: {runner_cls.__name__} cannot honour it (it takes no {key} "
                             f"argument).")
    return out


def _seed(randomness: Mapping[str, Any]) -> int | None:
    """Seed python/numpy/torch as ``default_setup`` does (``seed + rank``); return the seed."""
    allowed = {"seed", "deterministic", "diff_rank_seed"}
    extra = sorted(set(randomness) - allowed)
    if extra:
        raise KeyError(f"randomness has keys kiln does not take: {extra}; it reads {sorted(allowed)}.")
    seed = randomness.get("seed")
    if seed is None or int(seed) < 0:
        if randomness.get("deterministic"):
            raise ValueError("randomness.deterministic=True needs a seed: set randomness.seed.")
        return None
    from kiln.utils import set_random_seed

    from . import comm

    rank = comm.get_rank() if randomness.get("diff_rank_seed", True) else 0
    set_random_seed(int(seed) + rank, deterministic=bool(randomness.get("deterministic", False)))
    return int(seed)


def _check_classes(model: Any, built: Mapping[str, Any]) -> None:
    """The class-count check every dialect gets: each head's ``num_classes`` against each dataset's
    classes (MMDetection 2.x's ``NumClassCheckHook`` check, run once at build time)."""
    try:
        from kiln.models import check_model_dataset_classes, num_classes_of
    except ImportError:  # kiln.models needs torchvision; plain models have no detection heads
        return
    if not num_classes_of(model):
        return  # no classifying head (RPN-only, a custom model): nothing to compare
    for split in ("train", "val", "test"):
        ds = built.get(f"{split}_dataset")
        if ds is not None:
            where = f"{split}_dataloader.dataset (data.{split} in 2.x configs)"
            check_model_dataset_classes(model, ds, where=where)


def _auto_scale_lr(cfg: Mapping[str, Any], optim_wrapper: Any) -> Any:
    """MMEngine's ``auto_scale_lr=dict(enable=True, base_batch_size=16)``: the optimizer's ``lr`` times
    (total batch size of this run) / ``base_batch_size`` (the linear scaling rule)."""
    scale = plain(cfg.get("auto_scale_lr"))
    if not scale:
        return optim_wrapper
    if not isinstance(scale, Mapping):
        raise TypeError(f"auto_scale_lr must be a dict, e.g. dict(enable=True, base_batch_size=16); got "
                        f"{scale!r}.")
    extra = sorted(set(scale) - {"enable", "base_batch_size"})
    if extra:
        raise KeyError(f"auto_scale_lr has keys kiln does not understand: {extra}; it reads enable, "
                       f"base_batch_size.")
    if not scale.get("enable", False):
        return optim_wrapper
    base = scale.get("base_batch_size")
    if not isinstance(base, int) or base < 1:
        raise ValueError(f"auto_scale_lr.base_batch_size={base!r}: give the total batch size the config's lr "
                         f"was set for (an int, e.g. 16 for 8 GPUs x 2 images).")
    loader = cfg.get("train_dataloader")
    if loader is None or optim_wrapper is None:
        raise ValueError("auto_scale_lr.enable=True needs a train_dataloader (its batch_size) and an "
                         "optim_wrapper (its optimizer.lr).")
    from . import comm

    batch = int(loader.get("batch_size", 1)) * comm.get_world_size()
    ow = dict(plain(optim_wrapper))
    optimizer = dict(ow.get("optimizer") or {})
    if "lr" not in optimizer:
        raise KeyError("auto_scale_lr.enable=True: optim_wrapper.optimizer has no lr to scale.")
    ratio = batch / base
    optimizer["lr"] = optimizer["lr"] * ratio
    ow["optimizer"] = optimizer
    logger.info("auto_scale_lr: total batch %d / base_batch_size %d -> lr x %.4g = %.6g", batch, base, ratio,
                optimizer["lr"])
    return ow


def _visualizer(cfg: Mapping[str, Any], work_dir: str | None) -> Any:
    """The object the top-level ``visualizer`` key describes (``None`` without one)."""
    vis = cfg.get("visualizer")
    if vis is None:
        return None
    from kiln.visualization import build_visualizer

    return build_visualizer(plain(vis), work_dir)


def build_runner_from_canonical(cfg: Mapping[str, Any], runner_cls: type | None = None,
                                source_cfg: Any = None) -> Any:
    """Build a runner from a canonical run config (see the module doc for the keys).

    ``runner_cls`` defaults to ``RUNNERS.get(cfg.runner_type or 'Runner')``; a ``runner_type`` in
    the config wins over the class ``from_cfg`` was called on. ``source_cfg`` (the config as written)
    is given to the runner for its checkpoints.

    Raises:
        KeyError: a key outside the canonical schema (translate with ``to_canonical`` first).
    """
    check_canonical(cfg)
    ci = cfg.get("custom_imports")
    if ci:
        import_modules(ci.get("imports", []), ci.get("allow_failed_imports", False))
    if cfg.get("runner_type") is not None:
        runner_cls = RUNNERS.get(cfg["runner_type"])
    elif runner_cls is None:
        runner_cls = RUNNERS.get("Runner")
    work_dir = cfg.get("work_dir")
    seed = _seed(plain(cfg.get("randomness") or {}))
    train_cfg = plain(cfg.get("train_cfg"))
    kind = _loop_kind(train_cfg)
    if cfg.get("train_dataloader") is not None and train_cfg is None:
        raise KeyError(f"The config does not say how long to train: {_LENGTH_HELP}")
    model = build_model_from_cfg(cfg.get("model"))
    loaders = _LoaderFactory(kind, seed)
    built: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        loader_cfg = cfg.get(f"{split}_dataloader")
        if loader_cfg is not None:
            built[f"{split}_dataset"], built[f"{split}_dataloader"] = loaders.build(
                loader_cfg, f"{split}_dataloader", test_mode=split != "train", shuffle=split == "train"
            )
    _check_classes(model, built)
    has_val = "val_dataloader" in built and cfg.get("val_evaluator") is not None
    val_evaluator = test_evaluator = None
    if has_val or "test_dataloader" in built:
        from kiln.evaluation import build_evaluator
    if has_val:
        val_evaluator = build_evaluator(
            plain(cfg["val_evaluator"]), built["val_dataset"], output_dir=work_dir
        )
    if "test_dataloader" in built:
        test_cfg = cfg.get("test_evaluator", cfg.get("val_evaluator"))
        test_evaluator = build_evaluator(plain(test_cfg), built["test_dataset"], output_dir=work_dir)
    ow = _auto_scale_lr(cfg, cfg.get("optim_wrapper"))
    optim_wrapper = build_optim_wrapper(model, plain(ow)) if ow is not None else None
    frozen = cfg.get("frozen_modules")
    if frozen:
        from kiln.models.freeze import freeze_modules

        # After the optimizer is built (frozen parameters get no gradient, so every torch optimizer
        # skips them and they stay as loaded) and before the runner wraps the model for DDP (which
        # then leaves them out of gradient synchronisation).
        names = freeze_modules(model, list(frozen))
        logging.getLogger("kiln").info("Froze %d parameters in %s", len(names), list(frozen))
    default_hooks, custom_hooks = _hooks(cfg, has_val, kind, loaders)
    ps = cfg.get("param_scheduler")
    param_scheduler = ([plain(ps)] if isinstance(ps, Mapping) else list(plain(ps))) if ps else None
    resume = cfg.get("resume", False)
    if resume == "auto":
        resume = True
    train_loader = built.get("train_dataloader")
    runner = runner_cls(
        model,
        work_dir=work_dir,
        train_dataloader=train_loader,
        val_dataloader=built.get("val_dataloader") if has_val else None,
        test_dataloader=built.get("test_dataloader"),
        optim_wrapper=optim_wrapper,
        param_scheduler=param_scheduler,
        val_evaluator=val_evaluator,
        test_evaluator=test_evaluator,
        default_hooks=default_hooks,
        custom_hooks=custom_hooks,
        load_from=cfg.get("load_from"),
        resume=resume,
        seed=seed,
        cfg=source_cfg if source_cfg is not None else cfg,
        find_unused_parameters=bool(cfg.get("find_unused_parameters", False)),
        **_loop_kwargs(runner_cls, train_cfg if train_loader is not None else None,
                       plain(cfg.get("val_cfg")), plain(cfg.get("test_cfg"))),
        **_placement_kwargs(runner_cls, cfg),
    )
    visualizer = getattr(runner, "visualizer", None)
    if visualizer is not None:
        from . import comm

        if comm.is_main_process():
            visualizer.add_config(source_cfg if source_cfg is not None else cfg)
    return runner


def build_runner_from_cfg(runner_cls: type, cfg: Any) -> Any:
    """Build ``runner_cls`` from ``cfg`` in any supported dialect (a :class:`kiln.config.Config` or a dict).

    The config is translated by :func:`kiln.config.dialects.to_canonical`; without ``work_dir`` a
    config read from a file works in ``work_dirs/<file stem>`` (MMDetection's default).
    """
    canonical = to_canonical(cfg)
    if canonical.get("work_dir") is None:
        filename = getattr(cfg, "filename", None)
        if filename:
            canonical["work_dir"] = os.path.join("work_dirs", os.path.splitext(os.path.basename(filename))[0])
    return build_runner_from_canonical(canonical, runner_cls, source_cfg=cfg)
