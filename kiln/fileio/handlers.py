"""File format handlers and ``load``/``dump`` (json, yaml/yml, pickle/pkl, extensible)."""

from __future__ import annotations

import io
import json
import os
from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from typing import IO, Any

__all__ = [
    "BaseFileHandler", "JsonHandler", "YamlHandler", "PickleHandler", "register_handler",
    "file_handlers", "load", "dump",
]


class BaseFileHandler(metaclass=ABCMeta):
    """Reads and writes one file format.

    Subclasses implement ``load_from_fileobj``, ``dump_to_fileobj`` and ``dump_to_str``.
    ``str_like`` says whether the file is opened in text (True) or binary (False) mode.
    """

    str_like = True

    @abstractmethod
    def load_from_fileobj(self, file: IO, **kwargs: Any) -> Any:
        """Read an object from an open file."""

    @abstractmethod
    def dump_to_fileobj(self, obj: Any, file: IO, **kwargs: Any) -> None:
        """Write an object to an open file."""

    @abstractmethod
    def dump_to_str(self, obj: Any, **kwargs: Any) -> str | bytes:
        """Serialize an object to a string (or bytes for binary formats)."""


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars/arrays, sets, tuples-in-keys and paths for json."""
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":
        return obj.tolist()
    if hasattr(obj, "item") and type(obj).__module__ == "numpy":
        return obj.item()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable: {obj!r}")


class JsonHandler(BaseFileHandler):
    """JSON; numpy scalars/arrays become numbers/lists and sets become sorted lists."""

    def load_from_fileobj(self, file: IO, **kwargs: Any) -> Any:
        return json.load(file, **kwargs)

    def dump_to_fileobj(self, obj: Any, file: IO, **kwargs: Any) -> None:
        kwargs.setdefault("default", _json_default)
        json.dump(obj, file, **kwargs)

    def dump_to_str(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", _json_default)
        return json.dumps(obj, **kwargs)


class YamlHandler(BaseFileHandler):
    """YAML with safe loading (see :mod:`kiln.fileio.yaml_io`)."""

    def load_from_fileobj(self, file: IO, **kwargs: Any) -> Any:
        from .yaml_io import yaml_load

        return yaml_load(file)

    def dump_to_fileobj(self, obj: Any, file: IO, **kwargs: Any) -> None:
        from .yaml_io import yaml_dump

        yaml_dump(obj, file, **kwargs)

    def dump_to_str(self, obj: Any, **kwargs: Any) -> str:
        from .yaml_io import yaml_dump

        return yaml_dump(obj, **kwargs)  # type: ignore[return-value]


class PickleHandler(BaseFileHandler):
    """Python pickle (binary). Loading constructs data only (dicts, lists, numpy arrays: see
    :mod:`kiln.fileio.safe_pickle`); other objects are refused because unpickling them can run code."""

    str_like = False

    def load_from_fileobj(self, file: IO, **kwargs: Any) -> Any:
        from .safe_pickle import safe_load

        if kwargs:
            raise TypeError(f"loading a pickle takes no options (got {sorted(kwargs)})")
        return safe_load(file)

    def dump_to_fileobj(self, obj: Any, file: IO, **kwargs: Any) -> None:
        import pickle

        kwargs.setdefault("protocol", pickle.HIGHEST_PROTOCOL)
        pickle.dump(obj, file, **kwargs)

    def dump_to_str(self, obj: Any, **kwargs: Any) -> bytes:
        import pickle

        kwargs.setdefault("protocol", pickle.HIGHEST_PROTOCOL)
        return pickle.dumps(obj, **kwargs)


file_handlers: dict[str, BaseFileHandler] = {
    "json": JsonHandler(),
    "yaml": YamlHandler(),
    "yml": YamlHandler(),
    "pickle": PickleHandler(),
    "pkl": PickleHandler(),
}


def register_handler(file_formats: str | list[str], **kwargs: Any) -> Callable[[type], type]:
    """Class decorator registering a :class:`BaseFileHandler` subclass for formats.

    Example::

        @register_handler('npy')
        class NpyHandler(BaseFileHandler):
            str_like = False
            def load_from_fileobj(self, file, **kw): return np.load(file)
            def dump_to_fileobj(self, obj, file, **kw): np.save(file, obj)
            def dump_to_str(self, obj, **kw): return obj.tobytes()
    """
    formats = [file_formats] if isinstance(file_formats, str) else list(file_formats)

    def wrap(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, BaseFileHandler)):
            raise TypeError(f"register_handler needs a BaseFileHandler subclass, got {cls!r}.")
        handler = cls(**kwargs)
        for fmt in formats:
            if not isinstance(fmt, str) or not fmt:
                raise TypeError(f"file format must be a non-empty str, got {fmt!r}.")
            file_handlers[fmt.lower().lstrip(".")] = handler
        return cls

    return wrap


def _handler(file_format: str | None, what: Any) -> BaseFileHandler:
    if file_format is None:
        raise ValueError(
            f"Cannot tell the file format of {what!r}: pass file_format= (one of "
            f"{', '.join(sorted(file_handlers))})."
        )
    fmt = file_format.lower().lstrip(".")
    if fmt not in file_handlers:
        raise ValueError(
            f"Unsupported file format {file_format!r} for {what!r}. Known formats: "
            f"{', '.join(sorted(file_handlers))}. Add one with @register_handler('{fmt}')."
        )
    return file_handlers[fmt]


def _suffix(path: Any) -> str | None:
    name = str(path).rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[1] if "." in name else None


def load(file: str | os.PathLike | IO, file_format: str | None = None, **kwargs: Any) -> Any:
    """Load json/yaml/pickle/... from a path, URI (``memory://``, ``s3://`` ...) or file object.

    The format comes from the suffix unless ``file_format`` is given.
    """
    if isinstance(file, (str, os.PathLike)):
        handler = _handler(file_format or _suffix(file), file)
        from .paths import open_file

        mode = "r" if handler.str_like else "rb"
        with open_file(file, mode) as f:
            return handler.load_from_fileobj(f, **kwargs)
    if hasattr(file, "read"):
        handler = _handler(file_format or _suffix(getattr(file, "name", "")), file)
        return handler.load_from_fileobj(file, **kwargs)
    raise TypeError(f"load() needs a path, URI or file object, got {type(file).__name__}.")


def dump(obj: Any, file: str | os.PathLike | IO | None = None, file_format: str | None = None,
         **kwargs: Any) -> str | bytes | None:
    """Dump ``obj``; with no ``file`` return it as a string (bytes for binary formats).

    Paths are written atomically for local files (temp file + rename).
    """
    if file is None:
        return _handler(file_format, "<string>").dump_to_str(obj, **kwargs)
    if isinstance(file, (str, os.PathLike)):
        handler = _handler(file_format or _suffix(file), file)
        from .paths import atomic_open

        with atomic_open(file, "w" if handler.str_like else "wb") as f:
            handler.dump_to_fileobj(obj, f, **kwargs)
        return None
    if hasattr(file, "write"):
        handler = _handler(file_format or _suffix(getattr(file, "name", "")), file)
        if not handler.str_like and isinstance(file, io.TextIOBase):
            raise TypeError(f"Format {file_format!r} is binary; open the file in 'wb' mode.")
        handler.dump_to_fileobj(obj, file, **kwargs)
        return None
    raise TypeError(f"dump() needs a path, URI, file object or None, got {type(file).__name__}.")
