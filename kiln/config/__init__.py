"""Configs: MM-style ``Config`` files and Detectron2-style ``CfgNode`` layering.

``import kiln.config`` does not import torch (nor yaml until a yaml file is read).
See docs/config.md.
"""

from .cfg_node import CfgNode
from .config import MISSING, Config
from .config_dict import ConfigDict
from .defaults import get_cfg, get_default_cfg, global_cfg, set_global_cfg
from .errors import ConfigError, ConfigKeyError, FrozenConfigError
from .overrides import parse_cfg_options, parse_opts, parse_value

__all__ = [
    "CfgNode", "Config", "ConfigDict", "ConfigError", "ConfigKeyError", "FrozenConfigError",
    "MISSING", "get_cfg", "get_default_cfg", "global_cfg", "parse_cfg_options", "parse_opts", "parse_value",
    "set_global_cfg",
]
