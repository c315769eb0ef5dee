"""File IO: ``load``/``dump`` with pluggable format handlers, and path/URI access via fsspec.

``import kiln.fileio`` is cheap: yaml and fsspec are imported on first use.
``fileio.open`` and ``fileio.list`` are aliases of :func:`open_file` and :func:`list_dir`.
"""

from .handlers import (
    BaseFileHandler,
    JsonHandler,
    PickleHandler,
    YamlHandler,
    dump,
    file_handlers,
    load,
    register_handler,
)
from .paths import (
    atomic_open,
    atomic_write_text,
    exists,
    get_bytes,
    get_local_path,
    get_text,
    is_local,
    isdir,
    isfile,
    join_path,
    list_dir,
    open_file,
    put_bytes,
    put_text,
    remove,
)

open = open_file  # noqa: A001 - mirrors the issue's fileio.open API
list = list_dir  # noqa: A001

__all__ = [
    "BaseFileHandler", "JsonHandler", "PickleHandler", "YamlHandler", "dump", "file_handlers",
    "load", "register_handler", "atomic_open", "atomic_write_text", "exists", "get_bytes",
    "get_local_path", "get_text", "is_local", "isdir", "isfile", "join_path", "list_dir",
    "open_file", "put_bytes", "put_text", "remove",
]
