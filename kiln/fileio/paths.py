"""Path and URI access: local paths directly, everything else through fsspec.

Local paths (and ``file://`` URIs) use the standard library, so the common case neither
imports fsspec nor pays for it. Any URI fsspec understands works (``memory://``, ``s3://``
with ``s3fs`` installed, ``http://`` for reads, ...). Local writes are atomic: data goes to
a temporary file in the same directory, is flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import os.path as osp
from collections.abc import Iterator
from typing import IO, Any

__all__ = [
    "is_local", "open_file", "atomic_open", "exists", "isfile", "isdir", "list_dir",
    "get_local_path", "get_bytes", "get_text", "put_bytes", "put_text", "atomic_write_text",
    "join_path", "remove",
]


def _strip_file_scheme(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def is_local(path: str | os.PathLike) -> bool:
    """True for plain paths and ``file://`` URIs."""
    text = os.fspath(path)
    return "://" not in text or text.startswith("file://")


def _fs(path: str) -> tuple[Any, str]:
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise ImportError(f"Reading {path!r} needs fsspec: pip install fsspec") from exc
    del fsspec
    try:
        return url_to_fs(path)
    except (ImportError, ValueError) as exc:
        protocol = path.split("://", 1)[0]
        raise ImportError(
            f"No filesystem driver for '{protocol}://' (needed for {path!r}): {exc}. Install the "
            f"fsspec driver for it, e.g. 's3fs' for s3://, 'gcsfs' for gs://."
        ) from exc


def open_file(path: str | os.PathLike, mode: str = "r", **kwargs: Any) -> IO:
    """Open a local path or URI; a missing file raises ``FileNotFoundError`` naming it."""
    text = os.fspath(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    if is_local(text):
        local = _strip_file_scheme(text)
        if "r" in mode and not osp.exists(local):
            raise FileNotFoundError(f"No such file: {local!r}")
        return open(local, mode, **kwargs)
    fs, fpath = _fs(text)
    if "r" in mode and not fs.exists(fpath):
        raise FileNotFoundError(f"No such file: {text!r}")
    return fs.open(fpath, mode, **kwargs)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open for writing so that readers see either the old file or the complete new one.

    Parent directories are created. On an exception the target is left untouched.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open is for writing ('w' or 'wb'), got mode {mode!r}.")
    text = os.fspath(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    if not is_local(text):
        fs, fpath = _fs(text)
        parent = fpath.rsplit("/", 1)[0] if "/" in fpath else ""
        if parent:
            with contextlib.suppress(Exception):
                fs.makedirs(parent, exist_ok=True)
        with fs.open(fpath, mode, **kwargs) as f:  # object stores publish on close
            yield f
        return
    local = osp.abspath(_strip_file_scheme(text))
    directory = osp.dirname(local)
    os.makedirs(directory, exist_ok=True)
    import tempfile  # with shutil, imported on first write: keeps `import kiln.fileio` cheap

    fd, tmp = tempfile.mkstemp(prefix=f".{osp.basename(local)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if osp.exists(local):  # keep the permissions of the file being replaced
            import shutil

            shutil.copymode(local, tmp)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, local)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def exists(path: str | os.PathLike) -> bool:
    """Whether a path or URI exists."""
    text = os.fspath(path)
    if is_local(text):
        return osp.exists(_strip_file_scheme(text))
    fs, fpath = _fs(text)
    return fs.exists(fpath)


def isfile(path: str | os.PathLike) -> bool:
    """Whether a path or URI is a file."""
    text = os.fspath(path)
    if is_local(text):
        return osp.isfile(_strip_file_scheme(text))
    fs, fpath = _fs(text)
    return fs.isfile(fpath)


def isdir(path: str | os.PathLike) -> bool:
    """Whether a path or URI is a directory."""
    text = os.fspath(path)
    if is_local(text):
        return osp.isdir(_strip_file_scheme(text))
    fs, fpath = _fs(text)
    return fs.isdir(fpath)


def list_dir(
    path: str | os.PathLike,
    suffix: str | tuple[str, ...] | None = None,
    recursive: bool = False,
    list_dir: bool = False,
) -> list[str]:
    """Sorted names of files (relative to ``path``) in a directory or URI prefix.

    ``suffix`` filters by ending; ``recursive`` descends into sub-directories; with
    ``list_dir`` directories are listed too.
    """
    text = os.fspath(path)
    if not isdir(text):
        raise FileNotFoundError(f"Not a directory: {text!r}")
    out: list[str] = []
    if is_local(text):
        root = _strip_file_scheme(text)
        if recursive:
            for dirpath, dirnames, filenames in os.walk(root):
                rel = osp.relpath(dirpath, root)
                names = filenames + (dirnames if list_dir else [])
                out.extend(n if rel == "." else f"{rel}/{n}" for n in names)
        else:
            for entry in os.scandir(root):
                if entry.is_file() or (list_dir and entry.is_dir()):
                    out.append(entry.name)
    else:
        fs, fpath = _fs(text)
        base = fpath.rstrip("/")
        if recursive:
            entries = fs.find(base, withdirs=list_dir, detail=False)
        else:
            entries = [e["name"] for e in fs.ls(base, detail=True)
                       if e["type"] == "file" or (list_dir and e["type"] == "directory")]
        for name in entries:
            rel = name[len(base):].lstrip("/") if name.startswith(base) else name
            if rel:
                out.append(rel)
    if suffix is not None:
        out = [n for n in out if n.endswith(suffix)]
    return sorted(out)


@contextlib.contextmanager
def get_local_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a local filesystem path for ``path``; remote files are downloaded to a temp file.

    The temporary copy is removed when the ``with`` block ends.
    """
    text = os.fspath(path)
    if is_local(text):
        local = _strip_file_scheme(text)
        if not osp.exists(local):
            raise FileNotFoundError(f"No such file: {local!r}")
        yield local
        return
    fs, fpath = _fs(text)
    if not fs.exists(fpath):
        raise FileNotFoundError(f"No such file: {text!r}")
    suffix = osp.splitext(fpath)[1]
    import tempfile

    fd, tmp = tempfile.mkstemp(suffix=suffix)
    os.close(fd)
    try:
        fs.get_file(fpath, tmp)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def get_bytes(path: str | os.PathLike) -> bytes:
    """Read a whole file as bytes."""
    with open_file(path, "rb") as f:
        return f.read()


def get_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """Read a whole file as text."""
    with open_file(path, "r", encoding=encoding) as f:
        return f.read()


def put_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes atomically (parent directories are created)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def put_text(text: str, path: str | os.PathLike, encoding: str = "utf-8") -> None:
    """Write text atomically (parent directories are created)."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Alias of :func:`put_text` with (path, text) argument order."""
    put_text(text, path)


def join_path(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts; URIs are joined with ``/``."""
    text = os.fspath(base)
    if is_local(text):
        return osp.join(text, *parts)
    return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])


def remove(path: str | os.PathLike) -> None:
    """Delete a file."""
    text = os.fspath(path)
    if is_local(text):
        os.remove(_strip_file_scheme(text))
    else:
        fs, fpath = _fs(text)
        fs.rm(fpath)


