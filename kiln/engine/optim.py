"""Optimizer wrapper (grad clipping, accumulation, AMP) and building optimizers from config.

``OptimWrapper.update_params(loss)`` is the whole optimizer side of a training step::

    optim_wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
        paramwise_cfg=dict(bias_lr_mult=2.0, norm_decay_mult=0.0),
        clip_grad=dict(max_norm=35, norm_type=2)))
    optim_wrapper.update_params(loss)      # backward, clip, step, zero_grad (with accumulation)

MM-style configs (``optimizer=dict(..., paramwise_cfg=...)`` + ``optimizer_config=dict(grad_clip=...)``)
are accepted by :func:`build_optim_wrapper_from_mm`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn as nn

from kiln.registry import OPTIM_WRAPPERS, OPTIMIZERS

from .nonfinite import NONFINITE_POLICIES

__all__ = [
    "OptimWrapper",
    "AmpOptimWrapper",
    "build_optimizer",
    "build_optim_wrapper",
    "build_optim_wrapper_from_mm",
    "check_fp16_support",
    "get_param_groups",
]


def _register_torch_optimizers() -> None:
    for name in dir(torch.optim):
        obj = getattr(torch.optim, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, torch.optim.Optimizer)
            and obj is not torch.optim.Optimizer
        ):
            if OPTIMIZERS.get(name) is None:
                OPTIMIZERS.register_module(module=obj)


_register_torch_optimizers()

_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)


def get_param_groups(
    model: nn.Module, base_lr: float, base_wd: float, paramwise_cfg: Mapping | None = None
) -> list[dict]:
    """Split ``model``'s trainable parameters into groups with per-parameter lr/weight-decay.

    ``paramwise_cfg`` keys (MMCV/MMEngine meaning): ``bias_lr_mult``, ``bias_decay_mult``,
    ``norm_decay_mult``, ``dwconv_decay_mult``, ``custom_keys={'backbone': dict(lr_mult=0.1,
    decay_mult=1.0)}`` (a substring of the parameter name; the longest matching key wins),
    ``bypass_duplicate`` (skip parameters shared between modules instead of failing).
    """
    cfg = dict(paramwise_cfg or {})
    known = {
        "bias_lr_mult",
        "bias_decay_mult",
        "norm_decay_mult",
        "dwconv_decay_mult",
        "custom_keys",
        "bypass_duplicate",
    }
    unknown = set(cfg) - known
    if unknown:
        raise KeyError(
            f"optimizer paramwise_cfg has unknown keys {sorted(unknown)}; expected some of {sorted(known)}."
        )
    custom_keys = dict(cfg.get("custom_keys") or {})
    sorted_keys = sorted(custom_keys, key=lambda k: (-len(k), k))
    bias_lr_mult = cfg.get("bias_lr_mult")
    bias_decay_mult = cfg.get("bias_decay_mult")
    norm_decay_mult = cfg.get("norm_decay_mult")
    dwconv_decay_mult = cfg.get("dwconv_decay_mult")
    bypass_duplicate = bool(cfg.get("bypass_duplicate", False))

    groups: list[dict] = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        is_norm = isinstance(module, _NORM_TYPES)
        is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups > 1
        for p_name, param in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if not param.requires_grad:
                continue
            if id(param) in seen:
                if bypass_duplicate:
                    continue
                raise ValueError(
                    f"Parameter '{full}' appears twice in the model (shared between modules). Set "
                    f"paramwise_cfg=dict(bypass_duplicate=True) to give it to the first owner only."
                )
            seen.add(id(param))
            lr, wd = base_lr, base_wd
            matched = False
            for key in sorted_keys:
                if key in full:
                    opts = custom_keys[key]
                    lr = base_lr * opts.get("lr_mult", 1.0)
                    wd = base_wd * opts.get("decay_mult", 1.0)
                    matched = True
                    break
            if not matched:
                if p_name == "bias" and not is_norm:
                    if bias_lr_mult is not None:
                        lr = base_lr * bias_lr_mult
                    if bias_decay_mult is not None:
                        wd = base_wd * bias_decay_mult
                if is_norm and norm_decay_mult is not None:
                    wd = base_wd * norm_decay_mult
                elif is_dwconv and dwconv_decay_mult is not None:
                    wd = base_wd * dwconv_decay_mult
            groups.append({"params": [param], "lr": lr, "weight_decay": wd, "name": full})
    # Merge parameters with identical settings: fewer groups make optimizer.step much cheaper.
    merged: dict[tuple[float, float], dict] = {}
    for g in groups:
        key = (g["lr"], g["weight_decay"])
        if key not in merged:
            merged[key] = {"params": [], "lr": g["lr"], "weight_decay": g["weight_decay"]}
        merged[key]["params"].extend(g["params"])
    return list(merged.values())


def build_optimizer(model: nn.Module, cfg: Mapping) -> torch.optim.Optimizer:
    """Build a ``torch.optim`` optimizer (or any registered one) from ``dict(type='SGD', lr=..., ...)``.

    ``paramwise_cfg`` (inside ``cfg``) sets per-parameter multipliers; see :func:`get_param_groups`.
    """
    cfg = dict(cfg)
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    if "type" not in cfg:
        raise KeyError(f"optimizer config {cfg} has no 'type'; add e.g. type='SGD'.")
    if "lr" not in cfg:
        raise KeyError(f"optimizer config {cfg} has no 'lr'; add the base learning rate, e.g. lr=0.01.")
    _check_hyperparameters(cfg)
    if paramwise_cfg:
        params: Any = get_param_groups(model, cfg["lr"], cfg.get("weight_decay", 0.0), paramwise_cfg)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    # A tuple, because build_from_cfg deep-copies list values (that would copy the parameters).
    return OPTIMIZERS.build(cfg, default_args={"params": tuple(params)}, cfg_path="optimizer")


def _check_hyperparameters(cfg: Mapping) -> None:
    """Refuse a hyperparameter whose type differs from the optimizer's default (``lr='abc'``,
    ``momentum='0.9'``), naming it, before torch fails with ``'<=' not supported ...``."""
    import inspect
    import numbers

    cls = OPTIMIZERS.get(cfg["type"]) if isinstance(cfg["type"], str) else cfg["type"]
    try:
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    except (TypeError, ValueError):
        return
    defaults["lr"] = 0.0  # (some optimizers' lr default is a required positional or a Tensor)

    def numeric(v: object) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    for key, value in cfg.items():
        default = defaults.get(key, inspect.Parameter.empty)
        if isinstance(default, bool) or key == "type":
            continue
        if numeric(default) and not numeric(value):
            raise ValueError(f"optimizer {cfg['type']}: {key} must be a number, got {value!r} "
                             f"({type(value).__name__}){'; e.g. lr=0.01' if key == 'lr' else ''}.")
        if isinstance(default, tuple) and all(numeric(d) for d in default) and not (
                isinstance(value, (tuple, list)) and len(value) == len(default) and all(map(numeric, value))):
            raise ValueError(f"optimizer {cfg['type']}: {key} must be {len(default)} numbers such as "
                             f"{default}, got {value!r}.")


@OPTIM_WRAPPERS.register_module()
class OptimWrapper:
    """An optimizer plus what happens around ``step``: gradient accumulation and clipping.

    Args:
        optimizer: the wrapped ``torch.optim.Optimizer``.
        accumulative_counts: step every N calls of :meth:`update_params` (the loss is divided by N).
        clip_grad: ``dict(max_norm=35, norm_type=2)`` (norm clipping, the default type) or
            ``dict(type='value', clip_value=1.0)``. The pre-clip total norm is reported as
            ``grad_norm`` in the step's outputs.
        nonfinite_loss: what a NaN/Inf loss does (:mod:`kiln.engine.nonfinite`). ``'raise'``
            (default): training stops with an error naming the iteration and the loss terms,
            detected at the next metric flush (free: no per-step sync), before any checkpoint is
            written. ``'skip'``: every step's loss is checked before backward (one device sync
            per step, and one all-reduce under DDP so all ranks skip together); a non-finite
            step (with accumulation: its whole window) does not update the weights, its gradients
            are dropped, and the running count is logged as ``nonfinite_steps`` and checkpointed.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        accumulative_counts: int = 1,
        clip_grad: Mapping | None = None,
        nonfinite_loss: str = "raise",
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"OptimWrapper needs a torch.optim.Optimizer, got {type(optimizer).__name__}; build it "
                f"first (kiln.engine.build_optimizer) or pass optim_wrapper=dict(optimizer=dict(...))."
            )
        if int(accumulative_counts) < 1:
            raise ValueError(f"accumulative_counts must be >= 1, got {accumulative_counts}.")
        if nonfinite_loss not in NONFINITE_POLICIES:
            raise ValueError(
                f"optim_wrapper nonfinite_loss must be one of {list(NONFINITE_POLICIES)}, got "
                f"{nonfinite_loss!r}: 'raise' stops training at a NaN/Inf loss, 'skip' skips such steps."
            )
        self.optimizer = optimizer
        self.accumulative_counts = int(accumulative_counts)
        self._inner_count = 0
        self.nonfinite_loss = nonfinite_loss
        self.skip_nonfinite = nonfinite_loss == "skip"
        self.nonfinite_steps = 0  # steps skipped for a non-finite loss ('skip' only)
        self._skipped_unflushed = 0  # of which the metric flush has not been told yet
        self._window_skipped = False  # the current accumulation window had a non-finite loss
        self._clip = None
        self.set_clip_grad(clip_grad)
        self._params_cache: list[torch.Tensor] | None = None
        self.last_grad_norm: torch.Tensor | None = None
        # The loss scale after the last update (fp16 AmpOptimWrapper only; logged as grad_scale).
        self.last_loss_scale: torch.Tensor | None = None

    def set_clip_grad(self, clip_grad: Mapping | None) -> None:
        """Configure gradient clipping (``None``: none); MMCV's ``OptimizerHook(grad_clip=...)`` uses it."""
        self._clip = None
        if not clip_grad:
            return
        clip = dict(clip_grad)
        kind = clip.pop("type", "norm")
        if kind == "norm":
            if "max_norm" not in clip:
                raise KeyError(f"clip_grad={clip_grad} needs max_norm (e.g. dict(max_norm=35, norm_type=2)).")
            self._clip = ("norm", float(clip["max_norm"]), float(clip.get("norm_type", 2)))
        elif kind == "value":
            if "clip_value" not in clip:
                raise KeyError(f"clip_grad={clip_grad} needs clip_value for type='value'.")
            self._clip = ("value", float(clip["clip_value"]), 0.0)
        else:
            raise ValueError(f"clip_grad type must be 'norm' or 'value', got {kind!r}.")

    @property
    def clips_grads(self) -> bool:
        """Whether gradients are clipped before each update."""
        return self._clip is not None

    # ----------------------------------------------------------- the step
    @property
    def param_groups(self) -> list[dict]:
        """The wrapped optimizer's parameter groups."""
        return self.optimizer.param_groups

    def _params(self) -> list[torch.Tensor]:
        if self._params_cache is None:
            self._params_cache = [p for g in self.optimizer.param_groups for p in g["params"]]
        return self._params_cache

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass (a no-op here; mixed precision in :class:`AmpOptimWrapper`)."""
        return contextlib.nullcontext()

    def should_update(self) -> bool:
        """Whether the current call of :meth:`update_params` ends an accumulation window."""
        return (self._inner_count + 1) % self.accumulative_counts == 0

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Skip DDP's gradient all-reduce on accumulation steps that don't update the weights."""
        if self.accumulative_counts > 1 and not self.should_update() and hasattr(model, "no_sync"):
            with model.no_sync():
                yield
        else:
            yield

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` (scaled for accumulation/AMP in subclasses)."""
        loss.backward()

    def clip_grads(self) -> torch.Tensor | None:
        """Clip gradients as configured; returns the pre-clip total norm for norm clipping."""
        kind, value, norm_type = self._clip  # type: ignore[misc]
        params = [p for p in self._params() if p.grad is not None]
        if not params:
            return None
        if kind == "norm":
            return nn.utils.clip_grad_norm_(params, value, norm_type=norm_type)
        nn.utils.clip_grad_value_(params, value)
        return None

    def step(self) -> None:
        """Clip (if configured) and step the optimizer."""
        if self._clip is not None:
            self.last_grad_norm = self.clip_grads()
        self.optimizer.step()

    def zero_grad(self) -> None:
        """Reset gradients (to ``None``: cheaper than filling zeros)."""
        self.optimizer.zero_grad(set_to_none=True)

    def loss_is_finite(self, loss: torch.Tensor) -> bool:
        """Whether ``loss`` is finite on every rank (a device sync; an all-reduce under DDP)."""
        finite = torch.isfinite(loss.detach()).all()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = finite.to(torch.int32)
            if dist.get_backend() == "nccl" and flag.device.type != "cuda":
                flag = flag.cuda()
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = flag
        return bool(finite)

    def update_params(self, loss: torch.Tensor) -> None:
        """Backward ``loss``; every ``accumulative_counts`` calls, also step and zero the gradients.

        With ``nonfinite_loss='skip'``, a non-finite loss is not backpropagated and its step (or
        accumulation window) does not update the weights.
        """
        if self.skip_nonfinite and not self.loss_is_finite(loss):
            self.nonfinite_steps += 1
            self._skipped_unflushed += 1
            self._skip_step()
            return
        if self.accumulative_counts == 1:
            self.backward(loss)
            self.step()
            self.zero_grad()
            return
        self.backward(loss / self.accumulative_counts)
        self._inner_count += 1
        if self._inner_count % self.accumulative_counts == 0:
            if self._window_skipped:  # a step of this window was non-finite: drop the whole window
                self._window_skipped = False
            else:
                self.step()
            self.zero_grad()

    def take_skipped(self) -> int:
        """Steps skipped since the previous call (the metric flush drops their NaN losses)."""
        n, self._skipped_unflushed = self._skipped_unflushed, 0
        return n

    def _skip_step(self) -> None:
        """Drop a non-finite step: no backward, no update; with accumulation, drop its window."""
        if self.accumulative_counts == 1:
            self.zero_grad()
            return
        self._inner_count += 1
        if self._inner_count % self.accumulative_counts == 0:
            self._window_skipped = False
            self.zero_grad()
        else:
            self._window_skipped = True

    # --------------------------------------------------------- learning rate
    def get_lr(self) -> list[float]:
        """Current learning rate of each parameter group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def get_momentum(self) -> list[float]:
        """Current momentum (or Adam's beta1) of each parameter group."""
        out = []
        for g in self.optimizer.param_groups:
            if "momentum" in g:
                out.append(g["momentum"])
            elif "betas" in g:
                out.append(g["betas"][0])
            else:
                out.append(0.0)
        return out

    # ----------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Optimizer state, the accumulation counter and, mid-window, the accumulated gradients.

        Saving the partial gradients keeps a resume exact even when a checkpoint falls inside an
        accumulation window.
        """
        state = {"optimizer": self.optimizer.state_dict(), "inner_count": self._inner_count}
        if self.skip_nonfinite:
            state["nonfinite_steps"] = self.nonfinite_steps
            state["window_skipped"] = self._window_skipped
        if self.accumulative_counts > 1 and self._inner_count % self.accumulative_counts:
            state["pending_grads"] = [
                None if p.grad is None else p.grad.detach().clone() for p in self._params()
            ]
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (a bare optimizer state dict is accepted too)."""
        if "optimizer" in state and "param_groups" not in state:
            self.optimizer.load_state_dict(state["optimizer"])
            self._inner_count = int(state.get("inner_count", 0))
            self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
            self._window_skipped = bool(state.get("window_skipped", False))
        else:
            self.optimizer.load_state_dict(state)
        self._params_cache = None
        grads = state.get("pending_grads")
        if grads is not None:
            params = self._params()
            if len(grads) != len(params):
                raise ValueError(
                    f"OptimWrapper.load_state_dict: the checkpoint holds {len(grads)} pending gradients but "
                    f"the optimizer has {len(params)} parameters; was the model changed?"
                )
            for p, g in zip(params, grads):
                p.grad = None if g is None else g.to(p.device, p.dtype).clone()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.optimizer).__name__}, "
            f"accumulative_counts={self.accumulative_counts}, clip={self._clip}, "
            f"nonfinite_loss={self.nonfinite_loss!r})"
        )


@functools.cache
def _fp16_unsupported_reason(device_type: str) -> str | None:
    """Why this torch cannot train with float16 autocast + ``GradScaler`` on ``device_type``, or None.

    Probed once per device type with a one-element model: an autocast ``linear`` must come out in
    float16 (older torch versions warn and disable CPU autocast for float16 instead of raising) and
    a scaled backward, ``scaler.step`` (unscale + inf check) and ``scaler.update`` must run (older
    versions have no CPU kernels for them and raise ``NotImplementedError``, a ``RuntimeError``).
    """
    version = torch.__version__
    try:
        ones = torch.ones(1, 1, device=device_type)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device_type, dtype=torch.float16):
                out = nn.functional.linear(ones, ones)
        if out.dtype != torch.float16:
            return f"torch {version} has no float16 autocast on {device_type} (a Linear gave {out.dtype})"
        with torch.inference_mode(False), torch.enable_grad():  # (built under no_grad: still probe)
            param = torch.zeros(1, device=device_type, requires_grad=True)
            opt = torch.optim.SGD([param], lr=0.0)
            scaler = torch.amp.GradScaler(device_type, init_scale=2.0)
            scaler.scale(param.sum()).backward()
            scaler.step(opt)
            scaler.update()
    except RuntimeError as e:
        return f"torch {version} cannot run float16 autocast/GradScaler on {device_type}: {e}"
    return None


def check_fp16_support(device_type: str, owner: str) -> None:
    """Raise a clear ``ValueError`` when float16 training with a ``GradScaler`` cannot run on CPU.

    Only CPU is probed (once per process); CUDA and other devices are not checked here. ``owner``
    names the caller in the message.
    """
    if device_type != "cpu":
        return
    reason = _fp16_unsupported_reason(device_type)
    if reason is not None:
        raise ValueError(
            f"{owner}: float16 mixed precision on CPU is not available: {reason}. Use "
            f"dtype='bfloat16' (precision=torch.bfloat16 for AMPTrainer; no loss scaling needed), or "
            f"install a newer torch with CPU float16 autocast and torch.amp.GradScaler('cpu')."
        )


_SCALER_KEYS = ("init_scale", "growth_factor", "backoff_factor", "growth_interval")


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` with automatic mixed precision.

    float16 trains with dynamic loss scaling (``torch.amp.GradScaler``) on CUDA and on CPU (CPU
    needs a torch with CPU float16 autocast and CPU GradScaler kernels; this is checked when the
    wrapper is built). The loss is multiplied by the scale before backward; at each update step the
    gradients are unscaled (before clipping, so ``clip_grad`` bounds the real gradients), a step with
    inf/NaN gradients is skipped and the scale is multiplied by ``backoff_factor``, and after
    ``growth_interval`` good steps it is multiplied by ``growth_factor``. The scale after each
    update is logged as ``grad_scale`` (a drop marks a skipped step) and saved in checkpoints.
    bfloat16 needs no scaling.

    Args:
        dtype: ``'float16'`` (with a ``GradScaler``) or ``'bfloat16'`` (no scaling needed).
        loss_scale: fp16 only. ``'dynamic'`` (``GradScaler`` defaults: initial scale 2**16,
            growth 2x every 2000 good steps, backoff 0.5x on overflow); a float: that initial scale,
            never grown (still backed off on overflow); or a dict of ``GradScaler`` arguments
            (``init_scale``, ``growth_factor``, ``backoff_factor``, ``growth_interval``), as in MMEngine.
        device_type: ``'cuda'`` or ``'cpu'`` (default: where the optimizer's parameters live).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        dtype: str = "float16",
        loss_scale: str | float | Mapping = "dynamic",
        device_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(optimizer, **kwargs)
        dtypes = {
            "float16": torch.float16,
            "fp16": torch.float16,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
        }
        if dtype not in dtypes:
            raise ValueError(f"AmpOptimWrapper dtype must be one of {sorted(dtypes)}, got {dtype!r}.")
        self.dtype = dtypes[dtype]
        if device_type is None:
            params = self._params()
            device_type = params[0].device.type if params else "cpu"
        self.device_type = device_type
        self._one: torch.Tensor | None = None
        self.scaler = None
        self._scaler_kwargs: dict = {}
        if self.dtype is torch.float16:
            self._scaler_kwargs = self._scaler_args(loss_scale)
            check_fp16_support(device_type, "AmpOptimWrapper")
            self.scaler = torch.amp.GradScaler(device_type, **self._scaler_kwargs)

    def set_device_type(self, device_type: str) -> None:
        """Autocast and scale on ``device_type`` (the runner calls this once it has placed the model).

        The wrapper is often built before the model moves to its device; a new ``GradScaler`` for
        the device takes over the old one's state (scale, growth tracker), so nothing is lost.
        """
        if device_type == self.device_type:
            return
        self.device_type = device_type
        if self.scaler is not None:
            check_fp16_support(device_type, "AmpOptimWrapper")
            state = self.scaler.state_dict()
            self.scaler = torch.amp.GradScaler(device_type, **self._scaler_kwargs)
            if state:
                self.scaler.load_state_dict(state)

    @staticmethod
    def _scaler_args(loss_scale: str | float | Mapping) -> dict:
        if isinstance(loss_scale, Mapping):
            unknown = set(loss_scale) - set(_SCALER_KEYS)
            if unknown:
                raise KeyError(
                    f"AmpOptimWrapper loss_scale dict has unknown keys {sorted(unknown)}; it takes "
                    f"GradScaler arguments {list(_SCALER_KEYS)}, e.g. "
                    f"dict(init_scale=1024, growth_interval=500)."
                )
            return dict(loss_scale)
        if loss_scale == "dynamic":
            return {}
        if isinstance(loss_scale, bool) or not isinstance(loss_scale, (int, float)) or not loss_scale > 0:
            raise ValueError(
                f"AmpOptimWrapper loss_scale must be 'dynamic', a positive number or a dict of GradScaler "
                f"arguments, got {loss_scale!r}."
            )
        return {"init_scale": float(loss_scale), "growth_interval": 2**31 - 1}

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` with this wrapper's device and dtype."""
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward through the grad scaler (fp16) or directly (bf16)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self) -> None:
        """Unscale, clip, step (skipped by the scaler on inf/nan gradients) and update the scale."""
        scaler = self.scaler
        if scaler is None:
            super().step()
            return
        if self._clip is not None:
            scaler.unscale_(self.optimizer)
            self.last_grad_norm = self.clip_grads()
        scaler.step(self.optimizer)
        scaler.update()
        # The new scale as a fresh tensor (public scale(1): no device sync, unlike get_scale()),
        # read by the metric flush with the other logged tensors.
        if self._one is None:
            self._one = torch.ones((), device=self.device_type)
        self.last_loss_scale = scaler.scale(self._one)

    def state_dict(self) -> dict:
        """Optimizer state, accumulation counter and the grad scaler's state."""
        state = super().state_dict()
        if self.scaler is not None:
            state["loss_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore optimizer and grad scaler state."""
        super().load_state_dict(state)
        if self.scaler is not None and "loss_scaler" in state:
            self.scaler.load_state_dict(state["loss_scaler"])


def build_optim_wrapper(
    model: nn.Module, cfg: Mapping | torch.optim.Optimizer | OptimWrapper
) -> OptimWrapper:
    """Build an :class:`OptimWrapper` from an MMEngine-style ``optim_wrapper`` config.

    ``cfg`` may also be an optimizer (wrapped as is) or a wrapper (returned as is). Config keys:
    ``type`` (``'OptimWrapper'`` or ``'AmpOptimWrapper'``), ``optimizer=dict(type=..., lr=...)``,
    ``paramwise_cfg``, ``clip_grad``, ``accumulative_counts``, and AMP options.
    """
    if isinstance(cfg, OptimWrapper):
        return cfg
    if isinstance(cfg, torch.optim.Optimizer):
        return OptimWrapper(cfg)
    cfg = dict(cfg)
    if "optimizer" not in cfg:
        raise KeyError(
            f"optim_wrapper config {cfg} has no 'optimizer'; write "
            f"optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01))."
        )
    opt_cfg = dict(cfg.pop("optimizer"))
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    if paramwise_cfg is not None:
        opt_cfg["paramwise_cfg"] = paramwise_cfg
    optimizer = opt_cfg if isinstance(opt_cfg, torch.optim.Optimizer) else build_optimizer(model, opt_cfg)
    cfg.setdefault("type", "OptimWrapper")
    return OPTIM_WRAPPERS.build(cfg, default_args={"optimizer": optimizer}, cfg_path="optim_wrapper")


def build_optim_wrapper_from_mm(
    model: nn.Module, optimizer: Mapping, optimizer_config: Mapping | None = None
) -> OptimWrapper:
    """MMCV/MMDet v2 configs: ``optimizer=dict(type='SGD', ...)`` + ``optimizer_config=dict(grad_clip=...)``.

    ``optimizer_config`` keys: ``grad_clip`` (None or ``dict(max_norm, norm_type)``),
    ``cumulative_iters``, ``type`` (``'Fp16OptimizerHook'`` turns on AMP), ``loss_scale`` and
    kiln's ``nonfinite_loss`` (``'raise'``/``'skip'``, as in ``optim_wrapper``).
    """
    oc = dict(optimizer_config or {})
    wrapper: dict[str, Any] = {"optimizer": dict(optimizer)}
    grad_clip = oc.pop("grad_clip", None)
    if grad_clip:
        wrapper["clip_grad"] = dict(grad_clip)
    if "cumulative_iters" in oc:
        wrapper["accumulative_counts"] = oc.pop("cumulative_iters")
    kind = oc.pop("type", "OptimizerHook")
    if "Fp16" in kind or "fp16" in oc:
        wrapper["type"] = "AmpOptimWrapper"
        loss_scale = oc.pop("loss_scale", (oc.pop("fp16", None) or {}).get("loss_scale", "dynamic"))
        wrapper["loss_scale"] = loss_scale
    oc.pop("detect_anomalous_params", None)
    if "nonfinite_loss" in oc:
        wrapper["nonfinite_loss"] = oc.pop("nonfinite_loss")
    if oc:
        raise KeyError(
            f"optimizer_config has keys kiln does not understand: {sorted(oc)}; supported: grad_clip, "
            f"cumulative_iters, type, loss_scale, nonfinite_loss."
        )
    return build_optim_wrapper(model, wrapper)
