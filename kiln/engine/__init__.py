"""The training engine: Runner and loops, hooks, optimizer wrapper, schedules, events, checkpoints.

Importing ``kiln.engine`` registers every engine component (hooks, optimizers, schedulers,
writers, loops, runners) in its registry.
"""

from . import comm
from .checkpoint import Checkpointer, PeriodicCheckpointer
from .defaults import default_argument_parser, default_setup, seed_all_rng
from .events import EventStorage, get_event_storage, has_event_storage
from .hooks import (
    STAGES,
    CallbackHook,
    CheckInvalidLossHook,
    CheckpointHook,
    DistSamplerSeedHook,
    DueWhen,
    EarlyStoppingHook,
    EMAHook,
    EmptyCacheHook,
    EvalHook,
    Every,
    Hook,
    HookBase,
    HookError,
    IterTimerHook,
    JsonLoggerHook,
    LoggerHook,
    OptimizerHook,
    ParamSchedulerHook,
    PeriodicWriter,
    PipelineSwitchHook,
    Priority,
    TensorboardLoggerHook,
    TextLoggerHook,
    ValLossHook,
)
from .launch import launch
from .log_buffer import LogBuffer
from .loops import EpochBasedTrainLoop, IterBasedTrainLoop, TestLoop, ValLoop
from .mmcv_runner import BaseRunner, EpochBasedRunner, IterBasedRunner, build_runner
from .nonfinite import NonFiniteLossError
from .optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper, build_optimizer
from .plateau import MonitoredScheduler, ReduceOnPlateauLR, ReduceOnPlateauMomentum
from .preemption import TrainingPreempted
from .runner import Runner, parse_losses
from .schedulers import ScheduleSet, build_param_schedulers
from .schedulers_mm import schedulers_from_lr_config
from .state import RunState
from .trainer import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from .writers import CommonMetricPrinter, JSONWriter, TensorboardXWriter

__all__ = [
    "RunState",
    "Every",
    "DueWhen",
    "comm",
    "Checkpointer",
    "PeriodicCheckpointer",
    "EventStorage",
    "get_event_storage",
    "has_event_storage",
    "STAGES",
    "CallbackHook",
    "CheckInvalidLossHook",
    "CheckpointHook",
    "DistSamplerSeedHook",
    "EarlyStoppingHook",
    "EMAHook",
    "EmptyCacheHook",
    "EvalHook",
    "Hook",
    "HookBase",
    "HookError",
    "IterTimerHook",
    "JsonLoggerHook",
    "LoggerHook",
    "OptimizerHook",
    "ParamSchedulerHook",
    "PeriodicWriter",
    "PipelineSwitchHook",
    "Priority",
    "TensorboardLoggerHook",
    "TextLoggerHook",
    "ValLossHook",
    "EpochBasedTrainLoop",
    "IterBasedTrainLoop",
    "TestLoop",
    "ValLoop",
    "AmpOptimWrapper",
    "OptimWrapper",
    "build_optim_wrapper",
    "build_optimizer",
    "Runner",
    "parse_losses",
    "BaseRunner",
    "EpochBasedRunner",
    "IterBasedRunner",
    "build_runner",
    "LogBuffer",
    "ScheduleSet",
    "MonitoredScheduler",
    "ReduceOnPlateauLR",
    "ReduceOnPlateauMomentum",
    "NonFiniteLossError",
    "TrainingPreempted",
    "build_param_schedulers",
    "schedulers_from_lr_config",
    "CommonMetricPrinter",
    "JSONWriter",
    "TensorboardXWriter",
    "default_argument_parser",
    "launch",
    "default_setup",
    "seed_all_rng",
    "AMPTrainer",
    "DefaultTrainer",
    "SimpleTrainer",
    "TrainerBase",
]
