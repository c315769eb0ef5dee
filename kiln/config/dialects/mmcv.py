"""MMCV 1.x / MMDetection 1.x-2.x run configs -> the canonical (MMEngine-spelled) run schema.

A pure dict -> dict translation. What maps to what:

=============================================  =====================================================
MMCV / MMDetection 2.x key                     canonical key
=============================================  =====================================================
top-level ``train_cfg``/``test_cfg`` (v1)      ``model.train_cfg`` / ``model.test_cfg``
``data`` (``samples_per_gpu``/``imgs_per_gpu``,  ``train_dataloader``/``val_dataloader``/
``workers_per_gpu``, ``train``/``val``/``test``)  ``test_dataloader`` = ``dict(batch_size, num_workers,
                                               dataset)`` (val/test: their own ``samples_per_gpu``, 1)
``total_epochs`` / ``runner``                  ``train_cfg=dict(type='EpochBasedTrainLoop'|
                                               'IterBasedTrainLoop', max_epochs|max_iters)``
``optimizer`` + ``optimizer_config`` + ``fp16``  ``optim_wrapper`` (``clip_grad``, ``accumulative_counts``,
                                               ``AmpOptimWrapper`` + ``loss_scale``)
``lr_config`` / ``momentum_config``            ``param_scheduler`` (see :mod:`.mmcv_schedules`)
``checkpoint_config``                          ``default_hooks.checkpoint``
``log_config``                                 ``default_hooks.logger=None`` + its hooks in ``custom_hooks``
``evaluation``                                 ``val_evaluator`` (metric keys) + ``default_hooks.eval``
                                               (``interval``, ``start``, ``save_best``, ``rule``,
                                               ``by_epoch``) + ``train_cfg.val_interval``
``workflow`` ``('val', n)`` phases             ``default_hooks.val_loss[_k]`` = ``ValLossHook`` on
                                               ``data.val`` with the training pipeline
``resume_from``                                ``resume`` (the checkpoint path)
``seed`` / ``deterministic``                   ``randomness.seed`` / ``randomness.deterministic``
``cudnn_benchmark``                            ``env_cfg.cudnn_benchmark``
``gpu_ids``                                    one GPU, the first: nothing (kiln's default device);
                                               others refused (use ``device``/``--device``)
``dist_params``                                ``backend`` nccl/gloo: nothing (kiln picks nccl on CUDA,
                                               gloo on CPU); others refused
=============================================  =====================================================

Canonical keys already present pass through; a dialect key and its canonical counterpart given
together (``optimizer`` and ``optim_wrapper``, ...) is an error, never a silent choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .canonical import CANONICAL_KEYS, is_eval_loop_cfg, is_loop_cfg, suggest
from .mmcv_schedules import lr_config_to_param_scheduler
from .values import as_int, as_mapping, as_mapping_list

__all__ = [
    "MMCV_KEYS",
    "is_mmcv",
    "mmcv_to_canonical",
    "parse_workflow",
    "workflow_val_phases",
]

#: top-level keys this dialect translates
MMCV_KEYS = frozenset({
    "data", "optimizer", "optimizer_config", "fp16", "lr_config", "momentum_config",
    "checkpoint_config", "log_config", "evaluation", "total_epochs", "runner", "workflow",
    "resume_from", "seed", "deterministic", "gpu_ids", "dist_params", "cudnn_benchmark",
})
# evaluation= keys that configure the hook, not the metric (MMDetection's EvalHook arguments)
_EVAL_HOOK_KEYS = ("interval", "start", "save_best", "rule", "by_epoch")
# evaluation= keys about how results are gathered across ranks: kiln always gathers them itself
_EVAL_GATHER_KEYS = ("gpu_collect", "tmpdir")
_EVAL_UNSUPPORTED = ("greater_keys", "less_keys", "broadcast_bn_buffer", "out_dir", "dynamic_intervals")
_OPTIMIZER_HOOKS = {"OptimizerHook", "Fp16OptimizerHook", "GradientCumulativeOptimizerHook",
                    "GradientCumulativeFp16OptimizerHook"}
_WORKFLOW_EXAMPLE = "workflow=[('train', 1)] or workflow=[('train', 2), ('val', 1)]"


def is_mmcv(cfg: Mapping[str, Any]) -> bool:
    """True when ``cfg`` uses any MMCV/MMDetection 2.x run key (incl. a detector's top-level train_cfg)."""
    if any(cfg.get(k) is not None for k in MMCV_KEYS):
        return True
    train_cfg, test_cfg = cfg.get("train_cfg"), cfg.get("test_cfg")
    return (train_cfg is not None and not is_loop_cfg(train_cfg)) or (
        test_cfg is not None and not is_eval_loop_cfg(test_cfg)
    )


def _given(cfg: Mapping[str, Any], key: str) -> bool:
    return cfg.get(key) is not None


def _conflict(cfg: Mapping[str, Any], old: str, new: str, hint: str = "") -> None:
    if _given(cfg, old) and _given(cfg, new):
        raise ValueError(
            f"The config gives both {old} (MMCV 1.x) and {new} (MMEngine); they say the same thing, "
            f"keep one.{hint}"
        )


def _check_keys(value: Mapping[str, Any], allowed: tuple[str, ...] | frozenset, where: str) -> None:
    extra = sorted(k for k in value if k not in allowed)
    if extra:
        raise KeyError(
            f"{where} has keys kiln does not understand: {extra}.{suggest(extra[0], allowed)} "
            f"Supported: {', '.join(sorted(allowed))}."
        )


# --------------------------------------------------------------------------------------- model
def _model(cfg: Mapping[str, Any]) -> Any:
    model = cfg.get("model")
    for key, is_loop in (("train_cfg", is_loop_cfg), ("test_cfg", is_eval_loop_cfg)):
        top = cfg.get(key)
        if top is None or is_loop(top):
            continue
        if not isinstance(model, Mapping):
            raise KeyError(f"The config has a detector {key} at the top level but no model=dict(...).")
        model = dict(model)
        nested = model.get(key)
        if nested is not None and nested != top:
            raise ValueError(
                f"{key} is given both at the top level of the config and inside model (model.{key}); they "
                f"differ. Keep one: the top-level {key}=... (MMDetection v1 layout) or model.{key} (v2)."
            )
        model[key] = top
    return model


# ---------------------------------------------------------------------------------------- data
def _loaders(cfg: Mapping[str, Any]) -> dict[str, Any]:
    data = cfg.get("data")
    if data is None:
        return {}
    data = as_mapping(data, "data", "dict(samples_per_gpu=2, workers_per_gpu=2, train=..., val=...)")
    allowed = ("samples_per_gpu", "imgs_per_gpu", "workers_per_gpu", "train", "val", "test",
               "train_dataloader", "val_dataloader", "test_dataloader", "persistent_workers")
    _check_keys(data, allowed, "data")
    if data.get("persistent_workers"):
        raise ValueError("data.persistent_workers=True: kiln's loaders start their workers per epoch; "
                         "drop the key.")
    per_gpu_key = "data.samples_per_gpu" if "samples_per_gpu" in data else "data.imgs_per_gpu"
    per_gpu = as_int(data.get("samples_per_gpu", data.get("imgs_per_gpu", 2)), per_gpu_key, 1)
    workers = as_int(data.get("workers_per_gpu", 2), "data.workers_per_gpu", 0)
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        ds = data.get(split)
        # MMDetection 2.2x: data.train_dataloader=dict(samples_per_gpu=..., workers_per_gpu=...)
        over = dict(as_mapping(data.get(f"{split}_dataloader") or {}, f"data.{split}_dataloader"))
        _check_keys(over, ("samples_per_gpu", "workers_per_gpu"), f"data.{split}_dataloader")
        for key, least in (("samples_per_gpu", 1), ("workers_per_gpu", 0)):
            if key in over:
                over[key] = as_int(over[key], f"data.{split}_dataloader.{key}", least)
        if ds is None:
            continue
        _conflict(cfg, "data", f"{split}_dataloader",
                  f" (data.{split} and {split}_dataloader both define the {split} loader)")
        ds = dict(ds) if isinstance(ds, Mapping) else ds
        bs = per_gpu
        if split != "train":
            bs = ds.pop("samples_per_gpu", 1) if isinstance(ds, dict) else 1
            bs = as_int(bs, f"data.{split}.samples_per_gpu", 1)
        bs = over.get("samples_per_gpu", bs)
        out[f"{split}_dataloader"] = dict(
            batch_size=bs, num_workers=over.get("workers_per_gpu", workers), dataset=ds
        )
    return out


# ------------------------------------------------------------------------------- training length
def _train_loop(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    runner, total_epochs = cfg.get("runner"), cfg.get("total_epochs")
    if runner is None and total_epochs is None:
        return None
    if _given(cfg, "train_cfg") and is_loop_cfg(cfg["train_cfg"]):
        raise ValueError(
            "The config gives the training length twice: total_epochs/runner (MMCV 1.x) and a loop "
            "train_cfg (MMEngine); keep one."
        )
    if total_epochs is not None:
        total_epochs = as_int(total_epochs, "total_epochs", 1)
    if runner is not None:
        runner = as_mapping(runner, "runner", "dict(type='EpochBasedRunner', max_epochs=12)")
        _check_keys(runner, ("type", "max_epochs", "max_iters"), "runner")
        kind = _runner_kind(runner, total_epochs)
        if "Iter" in kind:
            if "max_iters" not in runner:
                raise KeyError(f"runner=dict(type='{kind}') needs max_iters=...")
            if "max_epochs" in runner or total_epochs is not None:
                raise ValueError(f"runner=dict(type='{kind}') trains by iterations (runner.max_iters); "
                                 f"drop {'runner.max_epochs' if 'max_epochs' in runner else 'total_epochs'}.")
            iters = as_int(runner["max_iters"], "runner.max_iters", 1)
            return dict(type="IterBasedTrainLoop", max_iters=iters)
        epochs = runner.get("max_epochs", total_epochs)
        if epochs is None:
            raise KeyError(f"runner=dict(type='{kind}') needs max_epochs=... (or total_epochs=...).")
        epochs = as_int(epochs, "runner.max_epochs" if "max_epochs" in runner else "total_epochs", 1)
        if total_epochs is not None and total_epochs != epochs:
            raise ValueError(
                f"total_epochs={total_epochs} and runner.max_epochs={epochs} disagree; keep one of them."
            )
        return dict(type="EpochBasedTrainLoop", max_epochs=epochs)
    return dict(type="EpochBasedTrainLoop", max_epochs=total_epochs)


def _runner_kind(runner: Mapping[str, Any], total_epochs: int | None) -> str:
    """The runner type, given or implied: ``runner.max_iters`` without a type means iteration-based
    (MMCV would ignore it and train by epochs); an epoch-based runner with max_iters is refused."""
    if "type" in runner:
        kind = str(runner["type"])
        if "Iter" not in kind and "max_iters" in runner:
            raise ValueError(f"runner=dict(type='{kind}', max_iters=...): an epoch-based runner trains for "
                             f"max_epochs; use type='IterBasedRunner' to train by iterations, or max_epochs.")
        return kind
    if "max_iters" in runner and "max_epochs" in runner:
        raise ValueError("runner gives both max_iters and max_epochs; keep one (type='IterBasedRunner' with "
                         "max_iters, or type='EpochBasedRunner' with max_epochs).")
    if "max_iters" in runner:
        if total_epochs is not None:
            raise ValueError(f"runner.max_iters={runner['max_iters']!r} with total_epochs={total_epochs}: "
                             f"the config trains by epochs. To train by iterations write "
                             f"runner=dict(type='IterBasedRunner', max_iters=N) and drop total_epochs.")
        return "IterBasedRunner"
    return "EpochBasedRunner"


# ------------------------------------------------------------------------------ optimization
def _optim_wrapper(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    optimizer = cfg.get("optimizer")
    oc = dict(as_mapping(cfg.get("optimizer_config") or {}, "optimizer_config", "dict(grad_clip=None)"))
    fp16 = cfg.get("fp16")
    if optimizer is None:
        if oc or fp16:
            raise KeyError("optimizer_config/fp16 are given but optimizer=dict(type=..., lr=...) is not.")
        return None
    _conflict(cfg, "optimizer", "optim_wrapper")
    optimizer = as_mapping(optimizer, "optimizer", "dict(type='SGD', lr=0.02, momentum=0.9)")
    _check_keys(oc, ("type", "grad_clip", "cumulative_iters", "detect_anomalous_params", "loss_scale"),
                "optimizer_config")
    wrapper: dict[str, Any] = {"optimizer": dict(optimizer)}
    kind = str(oc.pop("type", "OptimizerHook"))
    if kind not in _OPTIMIZER_HOOKS:
        raise ValueError(f"optimizer_config.type={kind!r}: kiln maps {', '.join(sorted(_OPTIMIZER_HOOKS))}."
                         f"{suggest(kind, _OPTIMIZER_HOOKS)}")
    grad_clip = oc.pop("grad_clip", None)
    if grad_clip:
        wrapper["clip_grad"] = dict(grad_clip)
    if "cumulative_iters" in oc:
        wrapper["accumulative_counts"] = oc.pop("cumulative_iters")
    if oc.pop("detect_anomalous_params", False):
        raise ValueError("optimizer_config.detect_anomalous_params=True is not supported; under DDP set "
                         "find_unused_parameters=True to find parameters without gradients.")
    amp = "Fp16" in kind or fp16 is not None
    if fp16 is not None:
        _check_keys(fp16, ("loss_scale",), "fp16")
    if amp:
        wrapper["type"] = "AmpOptimWrapper"
        wrapper["loss_scale"] = oc.pop("loss_scale", (fp16 or {}).get("loss_scale", "dynamic"))
    if "loss_scale" in oc:
        raise ValueError("optimizer_config.loss_scale is only used with type='Fp16OptimizerHook' "
                         "(or fp16=...).")
    return wrapper


def _param_scheduler(cfg: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    if not (_given(cfg, "lr_config") or _given(cfg, "momentum_config")):
        return None
    _conflict(cfg, "lr_config", "param_scheduler")
    _conflict(cfg, "momentum_config", "param_scheduler")
    out = lr_config_to_param_scheduler(cfg.get("lr_config"), "lr")
    out += lr_config_to_param_scheduler(cfg.get("momentum_config"), "momentum")
    return out


# ------------------------------------------------------------------------------------- hooks
def _hooks(cfg: Mapping[str, Any], out: dict[str, Any]) -> None:
    default_hooks = dict(out.get("default_hooks") or {})
    custom: list[Any] = []
    ck = cfg.get("checkpoint_config")
    if ck is not None:
        if "checkpoint" in default_hooks:
            raise ValueError("The config gives both checkpoint_config (MMCV 1.x) and "
                             "default_hooks.checkpoint (MMEngine); keep one.")
        ck = dict(as_mapping(ck, "checkpoint_config", "dict(interval=1)"))
        if "interval" in ck:
            ck["interval"] = as_int(ck["interval"], "checkpoint_config.interval")
        ck.pop("type", None)  # MMCV: type='CheckpointHook' is the only kind
        default_hooks["checkpoint"] = dict(type="CheckpointHook", **ck)
    log = cfg.get("log_config")
    if log is not None:
        if default_hooks.get("logger") is not None:
            raise ValueError("The config gives both log_config (MMCV 1.x) and default_hooks.logger "
                             "(MMEngine); keep one.")
        log = dict(as_mapping(log, "log_config", "dict(interval=50, hooks=[dict(type='TextLoggerHook')])"))
        _check_keys(log, ("interval", "hooks"), "log_config")
        interval = as_int(log.get("interval", 50), "log_config.interval", 1)
        default_hooks["logger"] = None  # the log_config hooks below replace the default logger
        for h in as_mapping_list(log.get("hooks", [dict(type="TextLoggerHook")]), "log_config.hooks"):
            h = dict(h)
            h.setdefault("interval", interval)
            custom.append(h)
    ev = cfg.get("evaluation")
    if ev is not None:
        _conflict(cfg, "evaluation", "val_evaluator")
        ev = dict(as_mapping(ev, "evaluation", "dict(interval=1, metric='bbox')"))
        if "interval" in ev:
            ev["interval"] = as_int(ev["interval"], "evaluation.interval", 1)
        bad = [k for k in _EVAL_UNSUPPORTED if k in ev]
        if bad:
            raise ValueError(f"evaluation: {bad} are not supported by kiln's EvalHook; it takes "
                             f"{', '.join(_EVAL_HOOK_KEYS)}.")
        hook = {"type": "EvalHook"}
        hook.update({k: ev.pop(k) for k in _EVAL_HOOK_KEYS if k in ev})
        for k in _EVAL_GATHER_KEYS:
            ev.pop(k, None)
        if len(hook) > 1:
            default_hooks["eval"] = hook
        out["val_evaluator"] = ev
        loop = out.get("train_cfg")
        if loop is not None and "interval" in hook:
            by_epoch = hook.get("by_epoch", True)
            if by_epoch == (loop.get("type") == "EpochBasedTrainLoop"):
                loop["val_interval"] = hook["interval"]
    if default_hooks:
        out["default_hooks"] = default_hooks
    if custom or out.get("custom_hooks"):
        out["custom_hooks"] = custom + [dict(h) for h in out.get("custom_hooks") or []]


# ---------------------------------------------------------------------------------- workflow
def parse_workflow(workflow: Any) -> list[tuple[str, int]]:
    """``workflow`` as checked ``(mode, n)`` pairs (``[]`` when absent).

    ``mode`` is ``'train'`` or ``'val'`` and ``n`` a positive int: epochs, or iterations for an
    ``IterBasedRunner``. A bad entry is named in the error.
    """
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
    """``(interval, offset, length)`` of each ``('val', n)`` phase (for ``ValLossHook``).

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


def _val_loss_hooks(cfg: Mapping[str, Any], out: dict[str, Any]) -> None:
    """``('val', n)`` phases -> ValLossHooks on ``data.val`` with ``data.train``'s pipeline.

    As MMDetection's ``tools/train.py`` builds that loader: the samples carry ground truth (losses
    need it) and look like training samples; the batch size is the training one. All phases share
    one loader config (the builder builds equal loader configs once, so they share the val stream).
    """
    phases = workflow_val_phases(parse_workflow(cfg.get("workflow")))
    if not phases:
        return
    data = cfg.get("data")
    val = data.get("val") if isinstance(data, Mapping) else None
    if val is None:
        raise ValueError(
            f"workflow={cfg.get('workflow')!r} has a ('val', n) phase, which computes validation losses "
            f"on data.val, but the config has no data.val; add data=dict(val=dict(type=..., ...)) or drop "
            f"the ('val', n) phase (evaluation=dict(interval=1, ...) runs the evaluator)."
        )
    val = dict(val)
    val.pop("samples_per_gpu", None)
    val.pop("workers_per_gpu", None)
    train = data.get("train")
    if isinstance(train, Mapping) and "pipeline" in val:
        pipeline = train.get("pipeline")
        if pipeline is None and isinstance(train.get("dataset"), Mapping):
            pipeline = train["dataset"].get("pipeline")  # a wrapper (RepeatDataset, ...)
        if pipeline is not None:
            val["pipeline"] = pipeline
    loader = dict(
        batch_size=data.get("samples_per_gpu", data.get("imgs_per_gpu", 2)),
        num_workers=data.get("workers_per_gpu", 2),
        dataset=val,
        sampler=dict(type="DefaultSampler", shuffle=False),
    )
    default_hooks = dict(out.get("default_hooks") or {})
    for j, (interval, offset, n) in enumerate(phases):
        key = "val_loss" if j == 0 else f"val_loss_{j}"
        if key not in default_hooks:  # default_hooks=dict(val_loss=None) removes it
            default_hooks[key] = dict(type="ValLossHook", interval=interval, length=n, offset=offset,
                                      dataloader=loader)
    out["default_hooks"] = default_hooks


# ----------------------------------------------------------------------------------- runtime
def _runtime(cfg: Mapping[str, Any], out: dict[str, Any]) -> None:
    randomness = dict(out.get("randomness") or {})
    for old in ("seed", "deterministic"):
        if _given(cfg, old):
            if old in randomness and randomness[old] != cfg[old]:
                raise ValueError(f"{old}={cfg[old]!r} and randomness.{old}={randomness[old]!r} disagree; "
                                 f"keep one.")
            randomness[old] = cfg[old]
    if randomness:
        out["randomness"] = randomness
    if _given(cfg, "cudnn_benchmark"):
        env = dict(out.get("env_cfg") or {})
        if "cudnn_benchmark" in env and env["cudnn_benchmark"] != cfg["cudnn_benchmark"]:
            # MMEngine reads only env_cfg; MMDetection 3.x's SSD configs still carry a 2.x top-level
            # cudnn_benchmark=True that has no effect there. Follow MMEngine, and say so.
            import logging

            logging.getLogger(__name__).warning(
                "cudnn_benchmark=%r (top level) disagrees with env_cfg.cudnn_benchmark=%r; MMEngine reads "
                "only env_cfg, so %r applies. Remove the top-level key to silence this.",
                cfg["cudnn_benchmark"], env["cudnn_benchmark"], env["cudnn_benchmark"])
        else:
            env["cudnn_benchmark"] = bool(cfg["cudnn_benchmark"])
        out["env_cfg"] = env
    gpu_ids = cfg.get("gpu_ids")
    if gpu_ids is not None and list(gpu_ids) not in ([], [0]):
        raise ValueError(
            f"gpu_ids={list(gpu_ids)!r}: kiln places a single-process run with device=... (or --device "
            f"cuda:K) and a multi-GPU run with --num-gpus N / torchrun; drop gpu_ids."
        )
    dist = cfg.get("dist_params")
    if dist is not None:
        _check_keys(dist, ("backend", "port"), "dist_params")
        if dist.get("backend", "nccl") not in ("nccl", "gloo"):
            raise ValueError(f"dist_params.backend={dist['backend']!r}: kiln uses nccl (CUDA) or gloo (CPU).")
    resume_from = cfg.get("resume_from")
    if resume_from is not None:
        resume = out.get("resume")
        if resume not in (None, False, True, "auto") and resume != resume_from:
            raise ValueError(f"resume_from={resume_from!r} and resume={resume!r} disagree; keep one.")
        out["resume"] = resume_from


def mmcv_to_canonical(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Translate an MMCV 1.x / MMDetection 1.x-2.x run config (a plain dict) into the canonical schema.

    Canonical keys already in ``cfg`` are kept; keys of neither schema are left out of the result
    (config variables such as ``data_root`` or ``train_pipeline`` were already used when the file was
    read) unless they look like a misspelt key, which is an error naming the key and the likely one.
    """
    out: dict[str, Any] = {k: v for k, v in cfg.items() if k in CANONICAL_KEYS and v is not None}
    out.pop("train_cfg", None)
    out.pop("test_cfg", None)
    for key in ("train_cfg", "val_cfg", "test_cfg"):
        value = cfg.get(key)
        if value is not None and (is_loop_cfg(value) if key == "train_cfg" else is_eval_loop_cfg(value)):
            out[key] = dict(value)
    if "model" in cfg:
        out["model"] = _model(cfg)
    out.update(_loaders(cfg))
    loop = _train_loop(cfg)
    if loop is not None:
        out["train_cfg"] = loop
    wrapper = _optim_wrapper(cfg)
    if wrapper is not None:
        out["optim_wrapper"] = wrapper
    schedulers = _param_scheduler(cfg)
    if schedulers is not None:
        out["param_scheduler"] = schedulers
    _hooks(cfg, out)
    _val_loss_hooks(cfg, out)
    _runtime(cfg, out)
    return out
