"""Runner hooks: the base classes and every built-in hook (importing this registers them in HOOKS)."""

from .base import STAGES, CallbackHook, Hook, HookBase, HookError, Priority, get_priority
from .checkpoint import BestCheckpointKeeper, CheckpointHook, infer_rule, publish_checkpoint
from .det_visualization_hook import DetVisualizationHook
from .ema import EMAHook
from .eval import EvalHook
from .logger import JsonLoggerHook, LoggerHook, PeriodicWriter, TensorboardLoggerHook, TextLoggerHook
from .misc import (
    CheckInvalidLossHook,
    DistSamplerSeedHook,
    EarlyStoppingHook,
    EmptyCacheHook,
    OptimizerHook,
    ParamSchedulerHook,
)
from .num_class_check import NumClassCheckHook
from .period import DueWhen, Every
from .pipeline_switch import PipelineSwitchHook
from .proposal_visualization import ProposalVisualizationHook
from .timer import IterationTimer, IterTimerHook
from .val_loss import ValLossHook

__all__ = [
    "STAGES",
    "CallbackHook",
    "Hook",
    "HookBase",
    "HookError",
    "Every",
    "DueWhen",
    "Priority",
    "get_priority",
    "BestCheckpointKeeper",
    "CheckpointHook",
    "infer_rule",
    "publish_checkpoint",
    "EMAHook",
    "EvalHook",
    "JsonLoggerHook",
    "LoggerHook",
    "PeriodicWriter",
    "TensorboardLoggerHook",
    "TextLoggerHook",
    "CheckInvalidLossHook",
    "DistSamplerSeedHook",
    "EarlyStoppingHook",
    "EmptyCacheHook",
    "OptimizerHook",
    "ParamSchedulerHook",
    "IterationTimer",
    "IterTimerHook",
    "ValLossHook",
    "PipelineSwitchHook",
    "DetVisualizationHook",
    "ProposalVisualizationHook",
    "NumClassCheckHook",
]
