"""The model zoo: shipped configs (``kiln::`` paths), zoo names → checkpoints in a local cache.

Importing this package is cheap (no torch); :func:`get` builds a model on demand.
"""

from .paths import CONFIG_ROOT, KILN_PREFIX, is_kiln_path, list_configs, resolve_config_path
from .zoo import (
    ZooEntry,
    ZooError,
    add_entry,
    get,
    get_checkpoint_path,
    get_checkpoint_url,
    get_config,
    get_config_file,
    get_entry,
    kiln_home,
    list_entries,
    load_weights,
    sha256sum,
)

__all__ = [
    "CONFIG_ROOT", "KILN_PREFIX", "is_kiln_path", "list_configs", "resolve_config_path",
    "ZooEntry", "ZooError", "add_entry", "get", "get_checkpoint_path", "get_checkpoint_url",
    "get_config", "get_config_file", "get_entry", "kiln_home", "list_entries", "load_weights",
    "sha256sum",
]
