"""Reading, writing and showing images (OpenCV codecs; paths, bytes and URIs)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kiln import fileio

__all__ = ["CorruptImageError", "imread", "imfrombytes", "imwrite", "imshow"]

_FLAGS = {
    "color": cv2.IMREAD_COLOR,
    "grayscale": cv2.IMREAD_GRAYSCALE,
    "unchanged": cv2.IMREAD_UNCHANGED,
    "color_ignore_orientation": cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR,
    "grayscale_ignore_orientation": cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_GRAYSCALE,
}
_ORDERS = ("bgr", "rgb")


def _check(flag: str, channel_order: str) -> None:
    if flag not in _FLAGS:
        raise ValueError(f"flag must be one of {sorted(_FLAGS)}, got {flag!r}.")
    if channel_order not in _ORDERS:
        raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}.")


def _to_order(img: np.ndarray, channel_order: str) -> np.ndarray:
    if channel_order == "rgb" and img.ndim == 3:
        if img.shape[2] == 3:
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if img.shape[2] == 4:
            return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


class CorruptImageError(ValueError):
    """An image file that cannot be decoded completely (truncated or damaged)."""


def imfrombytes(content: bytes, flag: str = "color", channel_order: str = "bgr",
                name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (jpg/png/...); undecodable data fails naming ``name``."""
    _check(flag, channel_order)
    buf = np.frombuffer(content, dtype=np.uint8)
    img = cv2.imdecode(buf, _FLAGS[flag]) if buf.size else None
    if img is None:
        raise CorruptImageError(
            f"Cannot decode image {name} ({len(content)} bytes): the file is corrupt or not an "
            f"image format OpenCV reads."
        )
    return _to_order(img, channel_order)


def imread(img_or_path: Any, flag: str = "color", channel_order: str = "bgr") -> np.ndarray:
    """Read an image from a path, a URI (``memory://``, ``s3://`` ...), bytes, or pass an array.

    Args:
        img_or_path: path/URI/``Path``, encoded ``bytes``, or an ``np.ndarray`` (returned as is).
        flag: ``'color'`` (3 channels), ``'grayscale'`` (H×W) or ``'unchanged'`` (alpha and
            16-bit depth kept).
        channel_order: ``'bgr'`` (OpenCV's) or ``'rgb'``.

    A missing file raises ``FileNotFoundError``; a corrupt one ``ValueError``; both name it.
    """
    if isinstance(img_or_path, np.ndarray):
        return img_or_path
    if isinstance(img_or_path, (bytes, bytearray, memoryview)):
        return imfrombytes(bytes(img_or_path), flag, channel_order)
    if isinstance(img_or_path, (str, Path, os.PathLike)):
        _check(flag, channel_order)
        path = os.fspath(img_or_path)
        try:
            content = fileio.get_bytes(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"Image file not found: {path!r}") from None
        return imfrombytes(content, flag, channel_order, name=repr(path))
    raise TypeError(f"imread needs a path, URI, bytes or np.ndarray, got {type(img_or_path).__name__}.")


def imwrite(img: np.ndarray, file_path: str | os.PathLike, params: list[int] | None = None,
            channel_order: str = "bgr", auto_mkdir: bool = True) -> bool:
    """Encode by the file suffix and write (atomically for local files; parents created).

    ``channel_order='rgb'`` says the array is RGB (it is converted to BGR for OpenCV).
    """
    if not isinstance(img, np.ndarray):
        raise TypeError(f"imwrite needs an np.ndarray, got {type(img).__name__}.")
    path = os.fspath(file_path)
    ext = os.path.splitext(path)[1]
    if not ext:
        raise ValueError(f"Cannot tell the image format of {path!r}: add a suffix like .png or .jpg.")
    if channel_order == "rgb" and img.ndim == 3 and img.shape[2] in (3, 4):
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    if not auto_mkdir and fileio.is_local(path):
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"Directory {parent!r} does not exist (auto_mkdir=False).")
    try:
        ok, buf = cv2.imencode(ext, img, params or [])
    except cv2.error as exc:
        raise ValueError(f"Cannot encode an image of shape {img.shape} {img.dtype} as {ext}: {exc}") from None
    if not ok:
        raise ValueError(f"Cannot encode an image of shape {img.shape} {img.dtype} as {ext}.")
    fileio.put_bytes(buf.tobytes(), path)
    return True


def _has_display() -> bool:
    if os.name == "nt" or os.uname().sysname == "Darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def imshow(img: Any, win_name: str = "", wait_time: int = 0) -> None:
    """Show an image in a window; without a display (or with headless OpenCV) warn and return."""
    image = imread(img)
    if not _has_display():
        warnings.warn("imshow: no display available (DISPLAY is not set); image not shown.",
                      RuntimeWarning, stacklevel=2)
        return
    try:
        cv2.imshow(win_name or "image", image)
        cv2.waitKey(wait_time)
    except cv2.error as exc:
        warnings.warn(f"imshow: OpenCV cannot open a window ({exc.msg if hasattr(exc, 'msg') else exc}); "
                      f"image not shown.", RuntimeWarning, stacklevel=2)
