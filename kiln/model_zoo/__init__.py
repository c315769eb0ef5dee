"""The model zoo: shipped configs (``kiln::`` paths), zoo names -> checkpoints downloaded into a local cache.

Importing this package is cheap (no torch); :func:`get` builds a model on demand. Detectron2's
``model_zoo.get_config_file`` / ``get_config`` / ``get`` / ``get_checkpoint_url`` take its names
(``'COCO-Detection/retinanet_R_50_FPN_1x.yaml'``).
"""

from .download import DownloadError, cached_download, resolve_url, resolve_weights
from .entries import ZooEntry
from .paths import CONFIG_ROOT, KILN_PREFIX, is_kiln_path, list_configs, resolve_config_path
from .zoo import (
    ZooError,
    add_entry,
    build_model,
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
    "DownloadError", "cached_download", "resolve_url", "resolve_weights",
    "ZooEntry", "ZooError", "add_entry", "build_model", "get", "get_checkpoint_path", "get_checkpoint_url",
    "get_config", "get_config_file", "get_entry", "kiln_home", "list_entries", "load_weights",
    "sha256sum",
]
