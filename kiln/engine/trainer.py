"""Detectron2's trainer API as a thin facade over the kiln :class:`~kiln.engine.Runner`.

``TrainerBase.train(start_iter, max_iter)`` runs ``before_step / run_step / after_step`` with
hooks, exactly as Detectron2 does, but the loop, run state, hook dispatch, event storage,
checkpoints and exact resume are the runner's, and ``SimpleTrainer.run_step`` fetches a batch and
calls the runner's training step (:func:`kiln.engine.train_step.make_train_step`: forward, loss
parsing, backward and update through the runner's optimizer wrapper). ``AMPTrainer`` is the same
step with an :class:`~kiln.engine.optim.AmpOptimWrapper` holding its grad scaler. A subclass that
overrides ``run_step`` (Detectron2 style) still runs inside the same loop. kiln hooks
(``CheckpointHook``, ``EvalHook``, writers) and Detectron2-style ``HookBase`` hooks work side by side.

Example (the seed's custom loader)::

    class TextTrainer(DefaultTrainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return build_train_loader(DatasetCatalog.get('text_train'), mapper=BoundaryMapper(cfg),
                                      total_batch_size=cfg.SOLVER.IMS_PER_BATCH, infinite=True)

    trainer = TextTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import MODELS
from kiln.utils import cfg_get

from . import comm
from .data_position import is_resumable_loader, open_loader_at
from .device import module_device, resolve_device
from .hooks.base import Hook, HookBase
from .loops import StepLoop
from .optim import AmpOptimWrapper, OptimWrapper, check_fp16_support
from .runner import Runner

__all__ = ["TrainerBase", "SimpleTrainer", "AMPTrainer", "DefaultTrainer", "HookBase"]

logger = logging.getLogger(__name__)


class TrainerBase:
    """A loop of ``run_step`` with hooks; subclasses implement :meth:`run_step`.

    Attributes:
        iter: the current iteration (the runner's). ``start_iter`` / ``max_iter`` as given to train.
        storage: the :class:`EventStorage` open during training.
        runner: the kiln runner doing the work (created on first use).
    """

    def __init__(self) -> None:
        self._hooks: list[Hook] = []
        self.start_iter = 0
        self.max_iter = 0
        self.runner: Runner | None = None

    # -- the runner underneath ---------------------------------------------------------------
    def _model_for_runner(self) -> nn.Module | None:
        return getattr(self, "model", None)

    def _optimizer_for_runner(self) -> Any:
        return getattr(self, "optimizer", None)

    def _get_runner(self) -> Runner:
        if self.runner is None:
            self.runner = Runner(
                self._model_for_runner(),
                work_dir=getattr(self, "output_dir", None),
                optim_wrapper=self._optimizer_for_runner(),
                param_scheduler=getattr(self, "scheduler", None),
                default_hooks={
                    k: None for k in ("timer", "logger", "param_scheduler", "checkpoint", "sampler_seed")
                },
                seed=getattr(self, "seed", None),
                cfg=getattr(self, "cfg", None),
                # Detectron2's trainers run the model where the user (or build_model) put it.
                device=module_device(self._model_for_runner()),
            )
            self.runner.train_dataloader = getattr(self, "data_loader", None)
            for h in self._hooks:
                self.runner.register_hook(h)
        return self.runner

    @property
    def iter(self) -> int:
        """The current iteration."""
        return self.runner.iter if self.runner is not None else self.start_iter

    @iter.setter
    def iter(self, value: int) -> None:
        # Detectron2 loops count iterations only: the position in the stream is the iteration.
        self._get_runner().state.restore(0, int(value), int(value))

    @property
    def storage(self) -> Any:
        """The event storage of the current run."""
        return self.runner.storage if self.runner is not None else None

    # -- Detectron2 API --------------------------------------------------------------------------
    def register_hooks(self, hooks: Iterable[Hook | None]) -> None:
        """Register hooks (``None`` skipped). ``HookBase`` hooks get ``self.trainer`` (a weak proxy).

        Detectron2 hooks run in registration order; kiln hooks run by their priority.
        """
        for h in hooks:
            if h is None:
                continue
            if not isinstance(h, Hook):
                raise TypeError(f"register_hooks: {h!r} is not a HookBase/Hook instance.")
            if isinstance(h, HookBase):
                h.trainer = weakref.proxy(self)
                # Detectron2 order is registration order: give them increasing priorities.
                if type(h).priority == Hook.priority:
                    h.priority = 50
            self._hooks.append(h)
            if self.runner is not None:
                self.runner.register_hook(h)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter .. max_iter - 1`` (resumed state wins over ``start_iter``)."""
        runner = self._get_runner()
        self.max_iter = int(max_iter)
        if not runner.resumed:
            self.iter = int(start_iter)
        self.start_iter = runner.iter
        runner.train_loop = StepLoop(runner, self.run_step, self.max_iter, getattr(self, "data_loader", None))
        logger.info("Starting training from iteration %d", runner.iter)
        runner.train()

    def run_step(self) -> dict | None:
        """One iteration; return a dict of scalars to log (or put them in ``self.storage`` yourself)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Detectron2 compatibility: the iteration (everything else is in the runner's checkpoint)."""
        return {"iteration": self.iter}

    def load_state_dict(self, state: dict) -> None:
        """Detectron2 compatibility."""
        self.iter = int(state["iteration"])


class SimpleTrainer(TrainerBase):
    """Each iteration: fetch a batch, then the runner's training step (forward, backward, update).

    Losses follow the kiln model contract: keys containing ``loss`` are summed (``total_loss`` is
    logged with each term and ``data_time``). The optimizer is wrapped in the runner's
    :class:`~kiln.engine.optim.OptimWrapper`, which leaves the gradients at ``None`` after each
    update, so they are clear before every forward (``zero_grad_before_forward`` either way).
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer | OptimWrapper,
        gather_metric_period: int = 1,
        zero_grad_before_forward: bool = False,
    ) -> None:
        super().__init__()
        if gather_metric_period != 1:
            # Detectron2 gathers metrics across ranks every N iterations to save communication; kiln
            # buffers every iteration's metrics and reduces them in one all_reduce per log flush.
            raise ValueError(
                f"gather_metric_period={gather_metric_period!r}: kiln already gathers metrics across ranks "
                f"once per log flush (one all_reduce for all buffered iterations, logged at their own "
                f"iterations), so a gather period has nothing to save; leave it at 1 (the default)."
            )
        model.train()
        self.model = model
        self.data_loader = data_loader
        self.optimizer = optimizer.optimizer if isinstance(optimizer, OptimWrapper) else optimizer
        self._optim_wrapper = optimizer if isinstance(optimizer, OptimWrapper) else None
        self.zero_grad_before_forward = zero_grad_before_forward
        self._data_iter: Any = None
        self._step: Any = None
        self.last_batch: Any = None  # the batch of the current iteration

    def _optimizer_for_runner(self) -> Any:
        return self._optim_wrapper if self._optim_wrapper is not None else self.optimizer

    @property
    def _data_loader_iter(self) -> Any:
        # Created on first use so that a resume can position a kiln infinite loader first (no replay);
        # other loaders start afresh, as in Detectron2.
        if self._data_iter is None:
            loader = self.data_loader
            if is_resumable_loader(loader) and getattr(loader, "infinite", False):
                self._data_iter = open_loader_at(loader, 0, self.iter)
            else:
                self._data_iter = iter(loader)
        return self._data_iter

    def train_step(self, data: Any) -> dict:
        """The runner's optimization step on ``data`` (its log variables)."""
        if self._step is None:
            self._step = self._get_runner().make_train_step()
        return self._step(data)

    def run_step(self) -> dict:
        """Fetch a batch, then :meth:`train_step`; return the metrics to log."""
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        self.last_batch = data  # hooks drawing this iteration's inputs read it (VIS_PERIOD)
        return _d2_metrics(self.train_step(data), data_time)


def _takes_cfg(arch: Any) -> bool:
    """Whether a registered model class is built from the whole config (``__init__(self, cfg)``)."""
    import inspect

    try:
        params = list(inspect.signature(arch).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "cfg"


def build_model_from_d2_cfg(cfg: Any) -> nn.Module:
    """kiln's detector for a Detectron2 ``CfgNode``, translated as ``kiln train x.yaml`` translates it."""
    from kiln.cli.d2_config import add_fewshot_defaults
    from kiln.config import get_default_cfg
    from kiln.config.dialects.detectron2 import d2_to_canonical

    from .runner_builder import build_model_from_cfg

    # The translator reads the project keys `kiln train` layers on get_cfg() (MODEL.BACKBONE.FREEZE, ...);
    # a user's own get_cfg() node may lack them: those are filled in (the user's keys, their project's
    # own extra ones included, stay as they are).
    full = cfg.clone()
    full.defrost()
    _fill_missing(full, add_fewshot_defaults(get_default_cfg()))
    model_cfg = dict(d2_to_canonical(full)["model"])
    # Detectron2 loaders give unnormalized images in INPUT.FORMAT; the model normalizes them.
    model_cfg["pixel_mean"] = [float(v) for v in cfg_get(cfg, "MODEL.PIXEL_MEAN")]
    model_cfg["pixel_std"] = [float(v) for v in cfg_get(cfg, "MODEL.PIXEL_STD")]
    return build_model_from_cfg(model_cfg)


def _fill_missing(dst: Any, src: Any) -> None:
    """Copy into CfgNode ``dst`` the keys of ``src`` it lacks (recursively)."""
    from kiln.config import CfgNode

    for key, value in src.items():
        if key not in dst:
            allowed = dst.is_new_allowed()
            dst.set_new_allowed(True)
            dst[key] = value.clone() if isinstance(value, CfgNode) else value
            dst.set_new_allowed(allowed)
        elif isinstance(value, CfgNode) and isinstance(dst[key], CfgNode):
            _fill_missing(dst[key], value)


def _d2_metrics(log_vars: Any, data_time: float) -> Any:
    """Detectron2's names: the total loss is ``total_loss``; ``data_time`` as measured by run_step."""
    log_vars["total_loss"] = log_vars.pop("loss")
    if hasattr(log_vars, "total_key"):
        log_vars.total_key = "total_loss"
    log_vars["data_time"] = data_time
    return log_vars


class AMPTrainer(SimpleTrainer):
    """:class:`SimpleTrainer` with autocast: fp16 + ``GradScaler`` (CUDA or CPU), or bf16.

    The step is the runner's, through an :class:`~kiln.engine.optim.AmpOptimWrapper` that uses
    ``grad_scaler`` (so the scaler is saved in the runner's checkpoints with the optimizer).
    float16 on CPU needs a torch with CPU float16 autocast and ``GradScaler('cpu')`` (checked here;
    otherwise pass ``precision=torch.bfloat16``). ``log_grad_scaler=True`` logs the scale each
    step's loss was multiplied by as ``[metric]grad_scaler``, as Detectron2 does.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        gather_metric_period: int = 1,
        zero_grad_before_forward: bool = False,
        grad_scaler: Any = None,
        precision: torch.dtype = torch.float16,
        log_grad_scaler: bool = False,
    ) -> None:
        super().__init__(model, data_loader, optimizer, gather_metric_period, zero_grad_before_forward)
        params = [p for p in model.parameters()]
        self.device_type = params[0].device.type if params else "cpu"
        if precision not in (torch.float16, torch.bfloat16):
            raise ValueError(f"AMPTrainer: precision must be torch.float16 or bfloat16, got {precision}.")
        if precision is torch.float16:
            if self.device_type not in ("cuda", "cpu"):
                raise ValueError(
                    f"AMPTrainer: float16 runs on CUDA or CPU, the model is on {self.device_type}; "
                    f"pass precision=torch.bfloat16."
                )
            check_fp16_support(self.device_type, "AMPTrainer")
        self.precision = precision
        if grad_scaler is None and precision is torch.float16:
            grad_scaler = torch.amp.GradScaler(self.device_type)
        self.grad_scaler = grad_scaler
        self.log_grad_scaler = bool(log_grad_scaler)
        self._one = torch.ones((), device=self.device_type)

    def _get_runner(self) -> Runner:
        fresh = self.runner is None
        runner = super()._get_runner()
        if fresh and self.grad_scaler is not None:
            runner.register_callback(self._load_legacy_scaler, stage="after_load_checkpoint")
        return runner

    def _load_legacy_scaler(self, runner: Any, extra: dict) -> None:
        # Checkpoints of earlier kiln versions kept the scaler under a top-level 'grad_scaler' key
        # (it now travels with the optimizer wrapper, as 'loss_scaler').
        if "grad_scaler" in extra:
            self.grad_scaler.load_state_dict(extra["grad_scaler"])

    def _optimizer_for_runner(self) -> Any:
        dtype = "float16" if self.precision is torch.float16 else "bfloat16"
        ow = AmpOptimWrapper(self.optimizer, dtype=dtype, device_type=self.device_type)
        ow.scaler = self.grad_scaler  # the trainer's scaler (Detectron2's grad_scaler argument)
        return ow

    def run_step(self) -> dict:
        """Fetch a batch, then the runner's step under autocast (loss scaled for fp16)."""
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        self.last_batch = data  # hooks drawing this iteration's inputs read it (VIS_PERIOD)
        scaler = self.grad_scaler
        # The scale this step's loss is multiplied by, as a tensor (public API, no device sync).
        scale = scaler.scale(self._one) if scaler is not None and self.log_grad_scaler else None
        log_vars = _d2_metrics(self.train_step(data), data_time)
        log_vars.pop("grad_scale", None)  # the runner's name; Detectron2 logs [metric]grad_scaler
        if scale is not None:
            log_vars["[metric]grad_scaler"] = scale
        return log_vars

    def state_dict(self) -> dict:
        """Iteration and grad-scaler state."""
        state = super().state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore iteration and grad-scaler state."""
        super().load_state_dict(state)
        if self.grad_scaler is not None and "grad_scaler" in state:
            self.grad_scaler.load_state_dict(state["grad_scaler"])


class DefaultTrainer(SimpleTrainer):
    """A trainer with Detectron2's defaults, built from a ``CfgNode``-style config.

    Override the ``build_*`` class methods to change a part (model, optimizer, schedule, loaders,
    evaluator, hooks, writers). Config keys: ``MODEL.META_ARCHITECTURE``, ``MODEL.WEIGHTS``,
    ``MODEL.DEVICE``, ``SOLVER.{MAX_ITER, BASE_LR, MOMENTUM, NESTEROV, WEIGHT_DECAY(_NORM/_BIAS),
    BIAS_LR_FACTOR, LR_SCHEDULER_NAME, STEPS, GAMMA, WARMUP_*, CHECKPOINT_PERIOD, IMS_PER_BATCH,
    AMP.ENABLED, CLIP_GRADIENTS.*}``, ``DATASETS.{TRAIN, TEST}``, ``DATALOADER.NUM_WORKERS``,
    ``TEST.EVAL_PERIOD``, ``TEST.AUG.*``, ``VIS_PERIOD``, ``OUTPUT_DIR``, ``SEED``.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.output_dir = cfg_get(cfg, "OUTPUT_DIR", "./output")
        seed = cfg_get(cfg, "SEED", -1)
        self.seed = seed if seed is not None and seed >= 0 else None
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        super().__init__(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.start_iter = 0
        self.max_iter = int(cfg_get(cfg, "SOLVER.MAX_ITER"))
        runner = self._get_runner()
        self.model = runner.model  # DDP-wrapped when distributed, as in Detectron2
        self.checkpointer = runner.checkpointer
        self.register_hooks(self.build_hooks())

    def _optimizer_for_runner(self) -> Any:
        """The optimizer wrapped as ``SOLVER.AMP`` and ``SOLVER.CLIP_GRADIENTS`` say (Detectron2 builds an
        ``AMPTrainer`` and wraps the optimizer with gradient clipping for these)."""
        clip = cfg_get(self.cfg, "SOLVER.CLIP_GRADIENTS")
        clip_grad = None
        if clip is not None and clip.ENABLED:
            kind, value = clip.CLIP_TYPE, float(clip.CLIP_VALUE)
            if kind == "value":
                clip_grad = dict(type="value", clip_value=value)
            elif kind == "full_model":
                clip_grad = dict(max_norm=value, norm_type=float(clip.NORM_TYPE))
            else:
                raise ValueError(
                    f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE={kind!r}: kiln clips 'value' and 'full_model' (the "
                    f"norm of all gradients together); Detectron2's 'norm' clips each parameter's gradient "
                    f"separately, which kiln does not do. Use 'full_model' or 'value'.")
        if cfg_get(self.cfg, "SOLVER.AMP.ENABLED", False):
            device_type = module_device(self.model).type
            check_fp16_support(device_type, "SOLVER.AMP.ENABLED")
            return AmpOptimWrapper(self.optimizer, dtype="float16", device_type=device_type,
                                   clip_grad=clip_grad)
        return OptimWrapper(self.optimizer, clip_grad=clip_grad)

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume everything from ``OUTPUT_DIR``'s last checkpoint, or load ``MODEL.WEIGHTS`` only."""
        runner = self._get_runner()
        if resume and runner.checkpointer.has_checkpoint():
            with runner.open_storage():
                runner.resume(runner.checkpointer.get_checkpoint_file())
        else:
            weights = cfg_get(self.cfg, "MODEL.WEIGHTS", "")
            if weights:
                runner.load_checkpoint(weights)

    def train(self) -> dict | None:  # type: ignore[override]
        """Train to ``SOLVER.MAX_ITER``; returns the last evaluation results (if any).

        With ``TEST.AUG.ENABLED`` the trained model is then also evaluated with test-time augmentation
        (:meth:`test_with_TTA`; Detectron2's ``train_net.py`` does it in an end-of-training hook), its
        metrics added with a ``_TTA`` suffix.
        """
        super().train(self.start_iter, self.max_iter)
        results = self.runner.last_metrics.get("val") if self.runner is not None else None
        if cfg_get(self.cfg, "TEST.AUG.ENABLED", False) and cfg_get(self.cfg, "DATASETS.TEST", ()):
            tta = self.test_with_TTA(self.cfg, self.runner.unwrapped_model)
            results = dict(results or {})
            for name, metrics in tta.items():
                results.setdefault(name, {}).update(metrics)
        return results

    # -- builders (override in subclasses) -------------------------------------------------------
    @classmethod
    def build_model(cls, cfg: Any) -> nn.Module:
        """The model ``cfg.MODEL.META_ARCHITECTURE`` names, on ``cfg.MODEL.DEVICE``.

        A registered class whose constructor takes ``cfg`` (a Detectron2-style meta-architecture, e.g. a
        DeFRCN ``GeneralizedRCNN`` subclass of your own) is called with the config. kiln's own detectors
        take plain arguments: for them (``GeneralizedRCNN``, ``RetinaNet``, ... as Detectron2 names them)
        the config is translated by kiln's Detectron2 translator, exactly as ``kiln train x.yaml`` builds
        the model, with ``MODEL.PIXEL_MEAN/STD`` normalizing the ``image`` tensors of Detectron2 loaders.
        """
        name = cfg_get(cfg, "MODEL.META_ARCHITECTURE")
        arch = MODELS.get(name) if name else None
        if arch is not None and _takes_cfg(arch):
            model = arch(cfg)
        else:
            model = build_model_from_d2_cfg(cfg)
        model.to(resolve_device(cfg_get(cfg, "MODEL.DEVICE"), comm.get_local_rank(), source="MODEL.DEVICE"))
        return model

    @classmethod
    def build_optimizer(cls, cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
        """SGD with ``SOLVER.BASE_LR/MOMENTUM/NESTEROV/WEIGHT_DECAY``; ``WEIGHT_DECAY_NORM``,
        ``WEIGHT_DECAY_BIAS`` and ``BIAS_LR_FACTOR`` as per-parameter multipliers (Detectron2's groups)."""
        from .optim import build_optimizer

        lr = float(cfg_get(cfg, "SOLVER.BASE_LR", 0.001))
        wd = float(cfg_get(cfg, "SOLVER.WEIGHT_DECAY", 0.0001))
        paramwise = {}
        for key, mult in (("SOLVER.WEIGHT_DECAY_NORM", "norm_decay_mult"),
                          ("SOLVER.WEIGHT_DECAY_BIAS", "bias_decay_mult")):
            value = cfg_get(cfg, key)
            if value is None or float(value) == wd:
                continue
            if wd == 0:
                raise ValueError(f"{key}={value} with SOLVER.WEIGHT_DECAY=0: kiln scales the weight decay "
                                 f"per parameter group, which needs a non-zero SOLVER.WEIGHT_DECAY to scale.")
            paramwise[mult] = float(value) / wd
        bias_factor = cfg_get(cfg, "SOLVER.BIAS_LR_FACTOR")
        if bias_factor is not None and bias_factor != 1.0:
            paramwise["bias_lr_mult"] = float(bias_factor)
        return build_optimizer(
            model,
            dict(
                type="SGD",
                lr=lr,
                momentum=float(cfg_get(cfg, "SOLVER.MOMENTUM", 0.9)),
                nesterov=bool(cfg_get(cfg, "SOLVER.NESTEROV", False)),
                weight_decay=wd,
                paramwise_cfg=paramwise or None,
            ),
        )

    @classmethod
    def build_lr_scheduler(cls, cfg: Any, optimizer: Any) -> list:
        """Detectron2's ``SOLVER.LR_SCHEDULER_NAME`` by iteration, times a warmup over ``WARMUP_ITERS``:

        * ``WarmupMultiStepLR``: ``GAMMA`` at each of ``SOLVER.STEPS`` (steps past ``MAX_ITER`` dropped);
        * ``WarmupCosineLR``: half a cosine from ``BASE_LR`` to ``BASE_LR_END`` over ``MAX_ITER``;
        * ``WarmupStepWithFixedGammaLR``: ``GAMMA`` at ``NUM_DECAYS`` evenly spaced points.

        ``WARMUP_METHOD`` is ``linear`` (from ``WARMUP_FACTOR`` to 1) or ``constant``.
        """
        from .schedulers import (
            ConstantParamScheduler,
            CosineAnnealingParamScheduler,
            LinearParamScheduler,
            MultiStepParamScheduler,
        )

        name = cfg_get(cfg, "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR")
        max_iter = int(cfg_get(cfg, "SOLVER.MAX_ITER"))
        gamma = float(cfg_get(cfg, "SOLVER.GAMMA", 0.1))
        out: list = []
        if name == "WarmupMultiStepLR":
            steps = [int(s) for s in (cfg_get(cfg, "SOLVER.STEPS", []) or [])]
            kept = [s for s in steps if s <= max_iter]
            if len(kept) < len(steps):
                logger.warning("SOLVER.STEPS %s: steps after SOLVER.MAX_ITER=%d never happen",
                               steps, max_iter)
            if kept:
                out.append(MultiStepParamScheduler(milestones=kept, gamma=gamma, by_epoch=False))
        elif name == "WarmupCosineLR":
            end_lr = float(cfg_get(cfg, "SOLVER.BASE_LR_END", 0.0) or 0.0)
            out.append(CosineAnnealingParamScheduler(T_max=max_iter, eta_min=end_lr, by_epoch=False))
        elif name == "WarmupStepWithFixedGammaLR":
            decays = int(cfg_get(cfg, "SOLVER.NUM_DECAYS", 3))
            if decays < 1:
                raise ValueError(f"SOLVER.NUM_DECAYS={decays}: WarmupStepWithFixedGammaLR needs >= 1 decay.")
            milestones = [round(max_iter * i / (decays + 1)) for i in range(1, decays + 1)]
            out.append(MultiStepParamScheduler(milestones=milestones, gamma=gamma, by_epoch=False))
        else:
            raise ValueError(f"SOLVER.LR_SCHEDULER_NAME={name!r}: kiln runs 'WarmupMultiStepLR', "
                             f"'WarmupCosineLR' and 'WarmupStepWithFixedGammaLR'; override "
                             f"build_lr_scheduler for another one.")
        warm = int(cfg_get(cfg, "SOLVER.WARMUP_ITERS", 0) or 0)
        if warm > 0:
            factor = float(cfg_get(cfg, "SOLVER.WARMUP_FACTOR", 0.001))
            method = cfg_get(cfg, "SOLVER.WARMUP_METHOD", "linear")
            if method == "constant":
                out.append(ConstantParamScheduler(factor=factor, by_epoch=False, end=warm))
            elif method == "linear":
                out.append(LinearParamScheduler(start_factor=factor, by_epoch=False, end=warm))
            else:
                raise ValueError(f"SOLVER.WARMUP_METHOD={method!r}: kiln warms up 'linear' or 'constant'.")
        return out

    @classmethod
    def build_train_loader(cls, cfg: Any) -> Any:
        """An infinite loader over ``DATASETS.TRAIN`` through ``DatasetMapper.from_config(cfg)``.

        Override it to change the mapper (the seed's ``TextTrainer``); see
        :func:`kiln.data.build_detection_train_loader` for the config keys it reads.
        """
        from kiln.data.detection_loaders import build_detection_train_loader

        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: Any, dataset_name: str) -> Any:
        """An in-order loader over one registered dataset, through the test-time mapper."""
        from kiln.data.detection_loaders import build_detection_test_loader

        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: Any, dataset_name: str, output_folder: str | None = None) -> Any:
        """The evaluator the dataset's ``evaluator_type`` metadata names (what Detectron2's
        ``tools/train_net.py`` and DeFRCN's ``main.py`` write in their subclass): ``'coco'`` ->
        :class:`~kiln.evaluation.COCOEvaluator` writing ``coco_instances_results.json`` to
        ``output_folder`` (default ``OUTPUT_DIR/inference``; proposal recall ``AR@100``... for an RPN-only
        ``ProposalNetwork``), ``'pascal_voc'`` ->
        ``PascalVOCDetectionEvaluator(dataset_name)``. Override it for anything else.
        """
        from kiln.data import MetadataCatalog
        from kiln.registry import EVALUATORS

        meta = MetadataCatalog.get(dataset_name)
        kind = meta.get("evaluator_type")
        if output_folder is None:
            output_folder = os.path.join(cfg_get(cfg, "OUTPUT_DIR", "./output"), "inference")
        if kind == "coco":
            if not meta.get("json_file"):
                raise ValueError(f"build_evaluator: dataset '{dataset_name}' has evaluator_type 'coco' but "
                                 f"no json_file in its metadata to take the ground truth from.")
            if cfg_get(cfg, "MODEL.META_ARCHITECTURE", "") == "ProposalNetwork":
                # an RPN-only model's outputs are proposals: recall, as Detectron2's COCOEvaluator reports
                return EVALUATORS.build(dict(type="CocoMetric", ann_file=meta.json_file,
                                             metric="proposal_fast"))
            return EVALUATORS.build(dict(type="COCOEvaluator", ann_file=meta.json_file,
                                         output_dir=output_folder))
        if kind == "pascal_voc":
            return EVALUATORS.build(dict(type="PascalVOCDetectionEvaluator", dataset_name=dataset_name))
        raise NotImplementedError(
            f"DefaultTrainer.build_evaluator: dataset '{dataset_name}' has evaluator_type={kind!r}; kiln "
            f"builds 'coco' and 'pascal_voc' ones. Override build_evaluator in your trainer subclass to "
            f"evaluate it."
        )

    def build_writers(self) -> list:
        """Console printer, ``metrics.json`` lines and TensorBoard in ``OUTPUT_DIR``."""
        from .writers import CommonMetricPrinter, JSONWriter, TensorboardXWriter

        return [
            CommonMetricPrinter(self.max_iter),
            JSONWriter(os.path.join(self.output_dir, "metrics.json")),
            TensorboardXWriter(self.output_dir),
        ]

    def build_hooks(self) -> list:
        """Timer, schedule, periodic checkpoint (``model_XXXXXXX.pth``, ``model_final.pth``), proposal
        pictures (``VIS_PERIOD``), evaluation (``TEST.EVAL_PERIOD``), writers."""
        from .hooks import (
            CheckpointHook,
            EvalHook,
            IterTimerHook,
            ParamSchedulerHook,
            PeriodicWriter,
            ProposalVisualizationHook,
        )

        period = int(cfg_get(self.cfg, "SOLVER.CHECKPOINT_PERIOD", 5000))
        # Detectron2's names: model_0004999.pth after 5000 iterations, model_final.pth at the end.
        checkpoint = CheckpointHook(interval=period, by_epoch=False, filename_tmpl="model_{:07d}.pth",
                                    final_filename="model_final.pth")
        hooks: list = [IterTimerHook(), ParamSchedulerHook(), checkpoint]
        vis_period = int(cfg_get(self.cfg, "VIS_PERIOD", 0) or 0)
        if vis_period > 0:
            me = weakref.proxy(self)  # run_step fetches the batch itself: the hook reads it from here
            fmt = cfg_get(self.cfg, "INPUT.FORMAT", "BGR")
            hooks.append(ProposalVisualizationHook(vis_period, image_format=fmt,
                                                   batch_source=lambda: me.last_batch))
        eval_period = int(cfg_get(self.cfg, "TEST.EVAL_PERIOD", 0) or 0)
        if cfg_get(self.cfg, "DATASETS.TEST", ()):
            # Detectron2's EvalHook(eval_period, lambda: self.test(cfg, model)), also after the last iter;
            # with TEST.EVAL_PERIOD 0 only then (as Detectron2's EvalHook.after_train does).
            trainer = weakref.proxy(self)
            cls, cfg = type(self), self.cfg
            hooks.append(
                EvalHook(
                    eval_period if eval_period > 0 else self.max_iter,
                    by_epoch=False,
                    eval_function=lambda: cls.test(cfg, trainer.runner.unwrapped_model),
                    eval_last=True,
                )
            )
        if comm.is_main_process():
            hooks.append(PeriodicWriter(self.build_writers(), period=20))
        return hooks

    @classmethod
    def test_with_TTA(cls, cfg: Any, model: nn.Module) -> dict:
        """Evaluate ``model`` with ``TEST.AUG``'s test-time augmentation (every ``MIN_SIZES`` short edge,
        flipped too with ``FLIP``, merged by per-class NMS): ``{dataset: {metric_TTA: value}}``, the
        detections in ``OUTPUT_DIR/inference_TTA``."""
        from kiln.models.d2_tta import DetectorWithTTA

        was_training = model.training
        model.eval()
        try:
            wrapped = DetectorWithTTA(cfg, model)
            folder = os.path.join(cfg_get(cfg, "OUTPUT_DIR", "./output"), "inference_TTA")
            names = list(cfg_get(cfg, "DATASETS.TEST", ()))
            evaluators = [cls.build_evaluator(cfg, name, output_folder=folder) for name in names]
            results = cls.test(cfg, wrapped, evaluators)
        finally:
            model.train(was_training)
        return {name: {f"{k}_TTA": v for k, v in metrics.items()} for name, metrics in results.items()}

    @classmethod
    def test(cls, cfg: Any, model: nn.Module, evaluators: Any = None) -> dict:
        """Evaluate ``model`` on every dataset in ``DATASETS.TEST``; ``{name: metrics}``."""
        from kiln.evaluation import inference_on_dataset

        names = list(cfg_get(cfg, "DATASETS.TEST", ()))
        if evaluators is not None and not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        results = {}
        for i, name in enumerate(names):
            loader = cls.build_test_loader(cfg, name)
            evaluator = evaluators[i] if evaluators is not None else cls.build_evaluator(cfg, name)
            results[name] = inference_on_dataset(model, loader, evaluator)
        return results
