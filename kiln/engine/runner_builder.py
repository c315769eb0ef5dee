"""``Runner.from_cfg``: read a run config (seed-001 / MMDetection v2 schema, or MMEngine's) once,
build every object, and hand the runner plain objects.

Keys read (seed-001): ``model`` (+ top-level ``train_cfg``/``test_cfg``), ``data`` (``imgs_per_gpu``
or ``samples_per_gpu``, ``workers_per_gpu``, ``train``/``val``/``test``), ``evaluation``,
``optimizer``, ``optimizer_config``, ``fp16``, ``lr_config``, ``momentum_config``,
``checkpoint_config``, ``log_config``, ``custom_hooks``, ``total_epochs`` or ``runner``,
``workflow``, ``load_from``, ``resume_from``, ``work_dir``, ``seed``, ``custom_imports``.
MMEngine spellings: ``optim_wrapper``, ``param_scheduler``, ``default_hooks``,
``train_cfg=dict(by_epoch=True, max_epochs=12, val_interval=1)`` (told apart from a detector's
``train_cfg`` by its keys), ``train_dataloader``/``val_dataloader``/``test_dataloader``.

``workflow`` follows MMCV: ``('val', n)`` phases compute validation *losses* (a
:class:`~kiln.engine.hooks.ValLossHook` on ``data.val`` with the training pipeline); the evaluator
(EvalHook) comes from ``evaluation=`` / ``val_evaluator=`` only.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from typing import Any

from kiln.registry import DATASETS, MODELS, import_modules

from .optim import build_optim_wrapper, build_optim_wrapper_from_mm
from .schedulers import schedulers_from_lr_config

__all__ = [
    "build_runner_from_cfg",
    "build_model_from_cfg",
    "resolve_training_length",
    "parse_workflow",
    "workflow_val_phases",
]

logger = logging.getLogger(__name__)

_LOOP_KEYS = {"max_epochs", "max_iters", "val_interval", "val_begin", "by_epoch"}


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        value = cfg.get(key, default)
    except AttributeError:
        value = getattr(cfg, key, default)
    return default if value is None else value


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj) if isinstance(obj, list) else tuple(_plain(v) for v in obj)
    return obj


def _is_loop_cfg(train_cfg: Any) -> bool:
    return isinstance(train_cfg, Mapping) and (
        bool(_LOOP_KEYS & set(train_cfg)) or str(train_cfg.get("type", "")).endswith("Loop")
    )


def build_model_from_cfg(cfg: Any) -> Any:
    """``kiln.models.build_detector(cfg.model, train_cfg=..., test_cfg=...)``, or ``MODELS.build``.

    Top-level ``train_cfg``/``test_cfg`` (seed-001 layout) are passed to the detector builder;
    an MMEngine loop ``train_cfg`` is not a model setting and is left out.
    """
    model_cfg = _get(cfg, "model")
    if model_cfg is None:
        raise KeyError("The config has no 'model' entry; add model=dict(type='...', ...).")
    train_cfg = _get(cfg, "train_cfg")
    if _is_loop_cfg(train_cfg):
        train_cfg = None
    test_cfg = _get(cfg, "test_cfg")
    try:
        from kiln.models import build_detector
    except ImportError:
        build_detector = None
    if build_detector is not None:
        return build_detector(_plain(model_cfg), train_cfg=train_cfg, test_cfg=test_cfg)
    model_cfg = _plain(model_cfg)
    extra = {k: v for k, v in (("train_cfg", train_cfg), ("test_cfg", test_cfg)) if v is not None}
    return MODELS.build(model_cfg, default_args=extra or None, cfg_path="model")


def resolve_training_length(cfg: Any) -> tuple[str, int, int]:
    """``('epoch'|'iter', length, val_interval)`` from ``runner``, ``total_epochs`` or loop ``train_cfg``."""
    runner_cfg = _get(cfg, "runner")
    train_cfg = _get(cfg, "train_cfg")
    total_epochs = _get(cfg, "total_epochs")
    val_interval = 1
    if runner_cfg is not None:
        kind = str(runner_cfg.get("type", "EpochBasedRunner"))
        if "Iter" in kind:
            if "max_iters" not in runner_cfg:
                raise KeyError(f"runner=dict(type='{kind}') needs max_iters=...")
            return "iter", int(runner_cfg["max_iters"]), val_interval
        epochs = runner_cfg.get("max_epochs", total_epochs)
        if epochs is None:
            raise KeyError(f"runner=dict(type='{kind}') needs max_epochs=... (or total_epochs=...).")
        if total_epochs is not None and int(total_epochs) != int(epochs):
            raise ValueError(
                f"total_epochs={total_epochs} and runner.max_epochs={epochs} disagree; keep one of them."
            )
        return "epoch", int(epochs), val_interval
    if _is_loop_cfg(train_cfg):
        val_interval = int(train_cfg.get("val_interval", 1))
        if (
            "max_iters" in train_cfg
            or "Iter" in str(train_cfg.get("type", ""))
            or train_cfg.get("by_epoch") is False
        ):
            return "iter", int(train_cfg["max_iters"]), val_interval
        return "epoch", int(train_cfg["max_epochs"]), val_interval
    if total_epochs is not None:
        return "epoch", int(total_epochs), val_interval
    raise KeyError(
        "The config does not say how long to train: add total_epochs=12, or "
        "runner=dict(type='EpochBasedRunner', max_epochs=12) / dict(type='IterBasedRunner', max_iters=90000)."
    )


def _build_dataset(ds_cfg: Any, test_mode: bool, where: str) -> Any:
    from kiln.data import build_dataset

    ds_cfg = _plain(ds_cfg)
    default_args = None
    cls = (
        DATASETS.get(ds_cfg.get("type"))
        if isinstance(ds_cfg, Mapping) and isinstance(ds_cfg.get("type"), str)
        else None
    )
    if test_mode and cls is not None and "test_mode" in inspect.signature(cls).parameters:
        default_args = {"test_mode": True}
    return build_dataset(ds_cfg, default_args, cfg_path=where)


def _build_loaders(cfg: Any, kind: str, seed: int | None) -> dict[str, Any]:
    from kiln.data import build_dataloader

    out: dict[str, Any] = {}
    data = _get(cfg, "data")
    runner_type = "IterBasedRunner" if kind == "iter" else "EpochBasedRunner"
    if data is not None:
        per_gpu = data.get("samples_per_gpu", data.get("imgs_per_gpu", 2))
        workers = data.get("workers_per_gpu", 2)
        if data.get("train") is not None:
            ds = _build_dataset(data["train"], False, "data.train")
            out["train_dataset"] = ds
            out["train_dataloader"] = build_dataloader(
                ds, samples_per_gpu=per_gpu, workers_per_gpu=workers, seed=seed, runner_type=runner_type
            )
        for split in ("val", "test"):
            sub = data.get(split)
            if sub is None:
                continue
            sub = dict(_plain(sub))
            bs = sub.pop("samples_per_gpu", 1)
            ds = _build_dataset(sub, True, f"data.{split}")
            out[f"{split}_dataset"] = ds
            out[f"{split}_dataloader"] = build_dataloader(
                ds, samples_per_gpu=bs, workers_per_gpu=workers, shuffle=False
            )
    for split in ("train", "val", "test"):
        loader_cfg = _get(cfg, f"{split}_dataloader")
        if loader_cfg is None:
            continue
        loader_cfg = dict(_plain(loader_cfg))
        ds = _build_dataset(loader_cfg.pop("dataset"), split != "train", f"{split}_dataloader.dataset")
        out[f"{split}_dataset"] = ds
        out[f"{split}_dataloader"] = build_dataloader(
            ds,
            samples_per_gpu=loader_cfg.pop("batch_size", 1),
            workers_per_gpu=loader_cfg.pop("num_workers", 0),
            shuffle=split == "train",
            seed=seed,
            runner_type=runner_type,
        )
    return out


def _build_evaluator(cfg: Any, eval_cfg: Any, dataset: Any, work_dir: str | None) -> Any:
    from kiln.evaluation import build_evaluator

    return build_evaluator(_plain(eval_cfg) if eval_cfg is not None else None, dataset, output_dir=work_dir)


def _optim_wrapper_cfg(cfg: Any, model: Any) -> Any:
    ow = _get(cfg, "optim_wrapper")
    if ow is not None:
        return build_optim_wrapper(model, _plain(ow))
    opt = _get(cfg, "optimizer")
    if opt is None:
        return None
    oc = dict(_plain(_get(cfg, "optimizer_config", {})))
    fp16 = _get(cfg, "fp16")
    if fp16 is not None:
        oc.setdefault("type", "Fp16OptimizerHook")
        oc.setdefault("loss_scale", dict(fp16).get("loss_scale", "dynamic"))
    return build_optim_wrapper_from_mm(model, _plain(opt), oc)


def _schedulers(cfg: Any) -> list[Any]:
    ps = _get(cfg, "param_scheduler")
    if ps is not None:
        return [_plain(ps)] if isinstance(ps, Mapping) else list(_plain(ps))
    out: list[Any] = []
    out += schedulers_from_lr_config(_plain(_get(cfg, "lr_config")), "lr")
    mc = _get(cfg, "momentum_config")
    if mc:
        out += schedulers_from_lr_config(_plain(mc), "momentum")
    return out


def _hooks(cfg: Any, has_val: bool, kind: str, val_interval: int) -> tuple[dict, list]:
    default_hooks: dict[str, Any] = {}
    custom: list[Any] = []
    if _get(cfg, "default_hooks") is not None:
        default_hooks.update(
            {k: (dict(v) if v is not None else None) for k, v in _plain(_get(cfg, "default_hooks")).items()}
        )
    ck = _get(cfg, "checkpoint_config")
    if ck is not None:
        ck = dict(_plain(ck))
        ck.pop("type", None)
        default_hooks["checkpoint"] = dict(type="CheckpointHook", **ck)
    elif "checkpoint" not in default_hooks:
        default_hooks["checkpoint"] = dict(type="CheckpointHook", interval=1 if kind == "epoch" else -1)
    log = _get(cfg, "log_config")
    if log is not None:
        log = dict(_plain(log))
        interval = log.pop("interval", 50)
        hooks = log.pop("hooks", [dict(type="TextLoggerHook")])
        default_hooks["logger"] = None
        for h in hooks:
            h = dict(h)
            h.setdefault("interval", interval)
            custom.append(h)
    ev = _get(cfg, "evaluation")
    if has_val:
        hook_cfg: dict[str, Any] = {"type": "EvalHook", "interval": val_interval}
        if ev is not None:
            ev = dict(_plain(ev))
            for key in ("interval", "start", "save_best", "rule", "by_epoch"):
                if key in ev:
                    hook_cfg[key] = ev[key]
        default_hooks["eval"] = hook_cfg
    for h in _plain(_get(cfg, "custom_hooks", [])):
        custom.append(dict(h))
    return default_hooks, custom


_WORKFLOW_EXAMPLE = "workflow=[('train', 1)] or workflow=[('train', 2), ('val', 1)]"


def parse_workflow(cfg: Any) -> list[tuple[str, int]]:
    """The config's ``workflow`` as checked ``(mode, n)`` pairs (``[]`` when absent).

    ``mode`` is ``'train'`` or ``'val'`` and ``n`` a positive int: epochs, or iterations for an
    ``IterBasedRunner``. A bad entry is named in the error.
    """
    workflow = _get(cfg, "workflow")
    if workflow is None:
        return []
    if not isinstance(workflow, (list, tuple)):
        raise TypeError(
            f"workflow={workflow!r}: expected a list of (mode, n) phases, e.g. {_WORKFLOW_EXAMPLE}."
        )
    out: list[tuple[str, int]] = []
    for i, entry in enumerate(workflow):
        ok = isinstance(entry, (list, tuple)) and len(entry) == 2
        mode, n = entry if ok else (None, None)
        if not ok or mode not in ("train", "val") or isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                f"workflow[{i}] = {entry!r} is not a valid phase: each entry is (mode, n) with mode 'train' "
                f"or 'val' and n a positive int (epochs; iterations with an IterBasedRunner), e.g. "
                f"{_WORKFLOW_EXAMPLE}."
            )
        out.append((str(mode), int(n)))
    if out and not any(mode == "train" for mode, _ in out):
        raise ValueError(f"workflow={list(workflow)!r} has no ('train', n) phase; e.g. {_WORKFLOW_EXAMPLE}.")
    return out


def workflow_val_phases(workflow: list[tuple[str, int]]) -> list[tuple[int, int, int]]:
    """``(interval, offset, length)`` of each ``('val', n)`` phase (for :class:`.hooks.ValLossHook`).

    The workflow repeats: ``interval`` is one cycle's training epochs (iterations), ``offset`` how
    many of them precede the phase, ``length`` its ``n``. ``[('train', 2), ('val', 1)]`` -> ``[(2, 2, 1)]``.
    """
    cycle = sum(n for mode, n in workflow if mode == "train")
    phases: list[tuple[int, int, int]] = []
    done = 0
    for i, (mode, n) in enumerate(workflow):
        if mode == "train":
            done += n
        elif done == 0:
            raise ValueError(
                f"workflow[{i}] = ('val', {n}) comes before any ('train', n) phase; kiln runs a val phase "
                f"after the training it follows: write e.g. workflow=[('train', 1), ('val', {n})]."
            )
        else:
            phases.append((cycle, done, n))
    return phases


def _val_loss_loader(cfg: Any) -> Any:
    """The loader of the workflow's val phases: ``data.val`` with ``data.train``'s pipeline, not test mode.

    As MMDetection's ``tools/train.py`` builds it: the samples carry ground truth (losses need it) and
    look like training samples; the batch size is the training one (``samples_per_gpu``).
    """
    from kiln.data import build_dataloader

    data = _get(cfg, "data")
    val = data.get("val") if data is not None else None
    if val is None:
        raise ValueError(
            f"workflow={_get(cfg, 'workflow')!r} has a ('val', n) phase, which computes validation losses "
            f"on data.val, but the config has no data.val; add data=dict(val=dict(type=..., ...)) or drop "
            f"the ('val', n) phase (evaluation=dict(interval=1, ...) runs the evaluator)."
        )
    val = dict(_plain(val))
    val.pop("samples_per_gpu", None)
    val.pop("workers_per_gpu", None)
    train = data.get("train")
    if isinstance(train, Mapping) and "pipeline" in val:
        pipeline = train.get("pipeline")
        if pipeline is None and isinstance(train.get("dataset"), Mapping):
            pipeline = train["dataset"].get("pipeline")  # a wrapper (RepeatDataset, ...)
        if pipeline is not None:
            val["pipeline"] = _plain(pipeline)
    ds = _build_dataset(val, False, "data.val")
    per_gpu = data.get("samples_per_gpu", data.get("imgs_per_gpu", 2))
    return build_dataloader(
        ds, samples_per_gpu=per_gpu, workers_per_gpu=data.get("workers_per_gpu", 2), shuffle=False
    )


def build_runner_from_cfg(runner_cls: type, cfg: Any) -> Any:
    """Build ``runner_cls`` from ``cfg`` (a :class:`kiln.config.Config` or a plain dict)."""
    ci = _get(cfg, "custom_imports")
    if ci:
        import_modules(ci.get("imports", []), ci.get("allow_failed_imports", False))
    work_dir = _get(cfg, "work_dir")
    if work_dir is None:
        filename = _get(cfg, "filename")
        if filename:
            work_dir = os.path.join("work_dirs", os.path.splitext(os.path.basename(filename))[0])
    seed = _get(cfg, "seed")
    kind, length, val_interval = resolve_training_length(cfg)
    val_phases = workflow_val_phases(parse_workflow(cfg))
    data = _get(cfg, "data")
    if val_phases and (data is None or data.get("val") is None):
        _val_loss_loader(cfg)  # raises the error naming workflow and data.val
    model = build_model_from_cfg(cfg)
    loaders = _build_loaders(cfg, kind, seed)
    evaluation = _get(cfg, "evaluation")
    val_evaluator = test_evaluator = None
    # EvalHook (the evaluator) comes from evaluation= / val_evaluator=; workflow ('val', n) phases
    # are validation-loss passes (ValLossHook), added below.
    has_val = "val_dataloader" in loaders and (
        evaluation is not None or _get(cfg, "val_evaluator") is not None
    )
    if has_val:
        val_evaluator = _build_evaluator(
            cfg, _get(cfg, "val_evaluator", evaluation), loaders["val_dataset"], work_dir
        )
    if "test_dataloader" in loaders:
        test_cfg = _get(cfg, "test_evaluator", evaluation)
        if test_cfg is None:
            test_cfg = _get(cfg, "val_evaluator")
        test_evaluator = _build_evaluator(cfg, test_cfg, loaders["test_dataset"], work_dir)
    optim_wrapper = _optim_wrapper_cfg(cfg, model)
    default_hooks, custom_hooks = _hooks(cfg, has_val, kind, val_interval)
    if val_phases:
        from .hooks.val_loss import ValLossHook

        loader = _val_loss_loader(cfg)
        for j, (interval, offset, n) in enumerate(val_phases):
            key = "val_loss" if j == 0 else f"val_loss_{j}"
            if key not in default_hooks:  # default_hooks=dict(val_loss=None) removes it
                default_hooks[key] = ValLossHook(
                    interval=interval, length=n, offset=offset, dataloader=loader
                )
    resume = _get(cfg, "resume_from") or _get(cfg, "resume", False)
    if resume == "auto":
        resume = True
    length_kw = {"max_epochs": length} if kind == "epoch" else {"max_iters": length}
    train_loader = loaders.get("train_dataloader")
    return runner_cls(
        model,
        work_dir=work_dir,
        train_dataloader=train_loader,
        val_dataloader=loaders.get("val_dataloader") if has_val else None,
        test_dataloader=loaders.get("test_dataloader"),
        optim_wrapper=optim_wrapper,
        param_scheduler=_schedulers(cfg) or None,
        val_interval=val_interval,
        val_evaluator=val_evaluator,
        test_evaluator=test_evaluator,
        default_hooks=default_hooks,
        custom_hooks=custom_hooks,
        load_from=_get(cfg, "load_from"),
        resume=resume,
        seed=seed,
        cfg=cfg,
        find_unused_parameters=bool(_get(cfg, "find_unused_parameters", False)),
        device=_get(cfg, "device"),
        env_cfg=_plain(_get(cfg, "env_cfg")),
        sync_bn=_get(cfg, "sync_bn"),
        channels_last=bool(_get(cfg, "channels_last", False)),
        **(length_kw if train_loader is not None else {}),
    )
