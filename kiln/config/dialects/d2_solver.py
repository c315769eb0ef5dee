"""Detectron2 ``SOLVER.*`` -> optimizer, schedule, loop and checkpoint settings.

Written in MMCV spelling (``optimizer``, ``optimizer_config``, ``lr_config``, ``runner``,
``checkpoint_config``) that :func:`~.mmcv.mmcv_to_canonical` translates, as kiln's Detectron2 mapping
always has. Detectron2's semantics kept:

* ``SOLVER.REFERENCE_WORLD_SIZE`` rescales batch, learning rate and every iteration count for the
  number of GPUs actually used (``DefaultTrainer.auto_scale_workers``).
* ``WEIGHT_DECAY_NORM`` (default 0: no decay on norm layers), ``BIAS_LR_FACTOR``, ``WEIGHT_DECAY_BIAS``
  become ``paramwise_cfg`` multipliers of ``BASE_LR``/``WEIGHT_DECAY``.
* ``LR_SCHEDULER_NAME``: ``WarmupMultiStepLR`` (``STEPS``, ``GAMMA``), ``WarmupCosineLR`` (down to
  ``BASE_LR_END`` at ``MAX_ITER``), ``WarmupStepWithFixedGammaLR`` (``NUM_DECAYS`` equal steps of
  ``GAMMA``), each with ``WARMUP_METHOD`` linear/constant over ``WARMUP_ITERS`` from ``WARMUP_FACTOR``.
* ``CLIP_GRADIENTS``: ``value`` clips every gradient element; ``full_model`` (the name Detectron2's
  projects use) clips the norm of all gradients together. ``norm`` (each parameter's norm clipped on
  its own) is refused: kiln's optimizer wrapper clips the total norm only.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from .d2_check import refuse, value_of, warn_unread

__all__ = ["scaled_solver", "solver_settings"]

logger = logging.getLogger("kiln.config")


def scaled_solver(d2: Any, num_gpus: int) -> dict[str, Any]:
    """The solver numbers after Detectron2's ``REFERENCE_WORLD_SIZE`` rescaling for ``num_gpus``."""
    s = d2.SOLVER
    vals = dict(
        IMS_PER_BATCH=int(s.IMS_PER_BATCH),
        BASE_LR=float(s.BASE_LR),
        MAX_ITER=int(s.MAX_ITER),
        WARMUP_ITERS=int(s.WARMUP_ITERS),
        STEPS=[int(x) for x in s.STEPS],
        EVAL_PERIOD=int(d2.TEST.EVAL_PERIOD),
        CHECKPOINT_PERIOD=int(s.CHECKPOINT_PERIOD),
    )
    ref = int(s.REFERENCE_WORLD_SIZE)
    if ref < 0:
        raise refuse(
            "SOLVER.REFERENCE_WORLD_SIZE",
            ref,
            "expected 0 (no rescaling) or the number of GPUs the solver settings were written for",
        )
    if ref and ref != num_gpus:
        scale = num_gpus / ref
        if vals["IMS_PER_BATCH"] * scale != round(vals["IMS_PER_BATCH"] * scale):
            raise refuse(
                "SOLVER.REFERENCE_WORLD_SIZE",
                ref,
                f"IMS_PER_BATCH={vals['IMS_PER_BATCH']} does not "
                f"rescale to a whole batch for {num_gpus} GPUs",
            )
        vals.update(
            IMS_PER_BATCH=round(vals["IMS_PER_BATCH"] * scale),
            BASE_LR=vals["BASE_LR"] * scale,
            MAX_ITER=round(vals["MAX_ITER"] / scale),
            WARMUP_ITERS=round(vals["WARMUP_ITERS"] / scale),
            STEPS=[round(x / scale) for x in vals["STEPS"]],
            EVAL_PERIOD=round(vals["EVAL_PERIOD"] / scale),
            CHECKPOINT_PERIOD=round(vals["CHECKPOINT_PERIOD"] / scale),
        )
    if vals["IMS_PER_BATCH"] % num_gpus:
        raise refuse("SOLVER.IMS_PER_BATCH", vals["IMS_PER_BATCH"], f"is not divisible by {num_gpus} GPUs")
    return vals


def _paramwise(d2: Any) -> dict[str, float]:
    s = d2.SOLVER
    wd = float(s.WEIGHT_DECAY)
    out: dict[str, float] = {}

    def mult(key: str, value: float) -> float:
        if wd == 0.0:
            if value != 0.0:
                raise refuse(
                    key,
                    value,
                    "kiln expresses it as a multiple of SOLVER.WEIGHT_DECAY, which is 0; set a WEIGHT_DECAY",
                )
            return 0.0
        return value / wd

    out["norm_decay_mult"] = mult("SOLVER.WEIGHT_DECAY_NORM", float(s.WEIGHT_DECAY_NORM))
    if float(s.BIAS_LR_FACTOR) != 1.0:
        out["bias_lr_mult"] = float(s.BIAS_LR_FACTOR)
    if s.WEIGHT_DECAY_BIAS is not None:
        out["bias_decay_mult"] = mult("SOLVER.WEIGHT_DECAY_BIAS", float(s.WEIGHT_DECAY_BIAS))
    trainable_norms = [k for k in ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM",
                                   "MODEL.RETINANET.NORM") if value_of(d2, k) not in ("", "FrozenBN")]
    if ("bias_lr_mult" in out or "bias_decay_mult" in out) and trainable_norms:
        # Detectron2 gives the biases of norm layers the bias settings too; kiln's paramwise_cfg
        # (MMEngine's) leaves norm biases at the norm settings.
        logger.warning("SOLVER.BIAS_LR_FACTOR / WEIGHT_DECAY_BIAS: the biases of the trainable norm layers "
                       "(%s) keep BASE_LR and WEIGHT_DECAY_NORM in kiln; Detectron2 applies the bias "
                       "settings to them as well.", ", ".join(trainable_norms))
    return out


def _schedule(d2: Any, v: dict[str, Any]) -> dict[str, Any]:
    s = d2.SOLVER
    name = s.LR_SCHEDULER_NAME
    max_iter = v["MAX_ITER"]
    if name == "WarmupMultiStepLR":
        steps = [x for x in v["STEPS"] if x < max_iter]  # Detectron2 warns and drops steps past MAX_ITER
        lr: dict[str, Any] = dict(policy="step", by_epoch=False, step=steps, gamma=float(s.GAMMA))
    elif name == "WarmupCosineLR":
        # BASE_LR_END is an absolute learning rate (REFERENCE_WORLD_SIZE does not rescale it).
        lr = dict(policy="CosineAnnealing", by_epoch=False, min_lr=float(s.BASE_LR_END))
    elif name == "WarmupStepWithFixedGammaLR":
        n = int(s.NUM_DECAYS)
        if n < 1:
            raise refuse("SOLVER.NUM_DECAYS", n, "expected at least 1 decay")
        # fvcore's StepParamScheduler: NUM_DECAYS + 1 equal phases of MAX_ITER, GAMMA**k in phase k.
        lr = dict(
            policy="step",
            by_epoch=False,
            gamma=float(s.GAMMA),
            step=[math.ceil(k * max_iter / (n + 1) - 1e-6) for k in range(1, n + 1)],
        )
    else:
        raise refuse(
            "SOLVER.LR_SCHEDULER_NAME",
            name,
            "expected WarmupMultiStepLR, WarmupCosineLR or WarmupStepWithFixedGammaLR",
        )
    if name != "WarmupMultiStepLR":
        warn_unread(d2, "SOLVER.STEPS", "only read by LR_SCHEDULER_NAME WarmupMultiStepLR")
    if name != "WarmupCosineLR":
        warn_unread(d2, "SOLVER.BASE_LR_END", "only read by LR_SCHEDULER_NAME WarmupCosineLR")
    if name != "WarmupStepWithFixedGammaLR":
        warn_unread(d2, "SOLVER.NUM_DECAYS", "only read by LR_SCHEDULER_NAME WarmupStepWithFixedGammaLR")
    if name == "WarmupCosineLR":
        warn_unread(d2, "SOLVER.GAMMA", "not read by WarmupCosineLR")
    if s.RESCALE_INTERVAL:
        raise refuse(
            "SOLVER.RESCALE_INTERVAL",
            True,
            "kiln's warmup multiplies the schedule over the whole "
            "run (Detectron2's default, False); rescaling the schedule after warmup is not implemented",
        )
    if s.WARMUP_METHOD not in ("linear", "constant"):
        raise refuse("SOLVER.WARMUP_METHOD", s.WARMUP_METHOD, "expected linear or constant")
    if v["WARMUP_ITERS"] > 0:
        lr.update(warmup=s.WARMUP_METHOD, warmup_iters=v["WARMUP_ITERS"], warmup_ratio=float(s.WARMUP_FACTOR))
    else:
        for key in ("WARMUP_FACTOR", "WARMUP_METHOD"):
            warn_unread(d2, f"SOLVER.{key}", "only read with SOLVER.WARMUP_ITERS > 0")
    return lr


def _clip(d2: Any) -> dict | None:
    clip = d2.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        for key in ("CLIP_TYPE", "CLIP_VALUE", "NORM_TYPE"):
            warn_unread(
                d2, f"SOLVER.CLIP_GRADIENTS.{key}", "only read with SOLVER.CLIP_GRADIENTS.ENABLED True"
            )
        return None
    if clip.CLIP_TYPE == "value":
        warn_unread(d2, "SOLVER.CLIP_GRADIENTS.NORM_TYPE", "only read with CLIP_TYPE full_model")
        return dict(type="value", clip_value=float(clip.CLIP_VALUE))
    if clip.CLIP_TYPE == "full_model":
        return dict(max_norm=float(clip.CLIP_VALUE), norm_type=float(clip.NORM_TYPE))
    if clip.CLIP_TYPE == "norm":
        raise refuse(
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
            "norm",
            "Detectron2 clips each parameter's gradient norm "
            "separately; kiln clips the norm of all gradients together. Use CLIP_TYPE full_model for "
            "that, or 'value'",
        )
    raise refuse("SOLVER.CLIP_GRADIENTS.CLIP_TYPE", clip.CLIP_TYPE, "expected value or full_model")


def solver_settings(d2: Any, v: dict[str, Any]) -> dict[str, Any]:
    """MMCV-spelled optimizer/schedule/loop/checkpoint keys from the (rescaled) solver values ``v``."""
    s = d2.SOLVER
    optimizer = dict(
        type="SGD",
        lr=v["BASE_LR"],
        momentum=float(s.MOMENTUM),
        weight_decay=float(s.WEIGHT_DECAY),
        nesterov=bool(s.NESTEROV),
        paramwise_cfg=_paramwise(d2),
    )
    optimizer_config: dict[str, Any] = dict(grad_clip=_clip(d2))
    if s.AMP.ENABLED:
        optimizer_config["type"] = "Fp16OptimizerHook"
    if v["CHECKPOINT_PERIOD"] <= 0:
        raise refuse(
            "SOLVER.CHECKPOINT_PERIOD", int(s.CHECKPOINT_PERIOD), "expected a positive number of iterations"
        )
    return dict(
        optimizer=optimizer,
        optimizer_config=optimizer_config,
        lr_config=_schedule(d2, v),
        runner=dict(type="IterBasedRunner", max_iters=v["MAX_ITER"]),
        checkpoint_config=dict(interval=v["CHECKPOINT_PERIOD"], by_epoch=False),
    )
