"""Utilities with no kiln dependencies: logging setup, environment info, timers, lazy imports, misc.

Importing this package is cheap: torch/numpy are imported inside the functions that need them.
"""

from .config_access import cfg_get, cfg_lookup
from .env import collect_env_info, get_env_info, get_git_hash
from .lazy import LazyModule, lazy_import, require
from .logger import log_every_n, log_every_n_seconds, log_first_n, setup_logger
from .misc import is_seq_of, to_plain
from .rng import set_random_seed
from .timer import Timer

__all__ = [
    "collect_env_info",
    "get_env_info",
    "get_git_hash",
    "LazyModule",
    "lazy_import",
    "require",
    "setup_logger",
    "log_first_n",
    "log_every_n",
    "log_every_n_seconds",
    "set_random_seed",
    "to_plain",
    "cfg_get",
    "cfg_lookup",
    "is_seq_of",
    "Timer",
]
