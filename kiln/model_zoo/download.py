"""Downloading published weights on first use, into a verified local cache.

Every weight name kiln accepts resolves to one URL and one cache file:

==================================  =================================================================
name                                URL
==================================  =================================================================
``torchvision://resnet50``          ``https://download.pytorch.org/models/resnet50-0676ba61.pth``
``modelzoo://resnet50``             the same (MMCV's older spelling of torchvision names)
``open-mmlab://NAME``               MMDetection's names (``detectron2/resnet50_caffe``,
                                    ``resnext101_32x4d``...) under ``download.openmmlab.com``
``detectron2://PATH``               ``https://dl.fbaipublicfiles.com/detectron2/PATH``
                                    (``ImageNetPretrained/MSRA/R-50.pkl``, model-zoo paths)
``catalog://ImageNetPretrained/X``  Detectron2's legacy catalog names of the same ImageNet files
``http(s)://...``                   itself
==================================  =================================================================

The cache is ``$KILN_HOME/checkpoints`` (default ``~/.cache/kiln/checkpoints``); Detectron2 paths keep
their directories (``detectron2/ImageNetPretrained/MSRA/R-50.pkl``: MSRA and FAIR both publish an
``R-50.pkl``), other files their name. A file already in the cache is used without any network access.

A download streams into ``<file>.part`` (resumed with an HTTP range request when a previous attempt was
interrupted), is checked against the sha256 when one is known (the full digest, or the hex prefix that
torchvision and MMDetection put in their file names: ``resnet50-0676ba61.pth``), and only then renamed
into place, so the cache never holds a half-written or unverified file. A checksum mismatch deletes the
partial file and says so.

Environment:
    ``KILN_HOME``: cache root. ``KILN_ZOO_MIRROR=http://host:port``: replaces scheme and host of every
    URL (a local mirror; the tests' loopback server). ``KILN_OFFLINE=1``: never touch the network; a file
    missing from the cache is an error naming the URL and where to put the file by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "DownloadError", "kiln_home", "cache_dir", "resolve_url", "is_remote", "cache_path_for", "mirror_url",
    "expected_sha256", "cached_download", "resolve_weights", "TORCHVISION_URLS", "OPEN_MMLAB_URLS",
]

TORCHVISION_BASE = "https://download.pytorch.org/models/"
OPEN_MMLAB_BASE = "https://download.openmmlab.com/pretrain/third_party/"
DETECTRON2_BASE = "https://dl.fbaipublicfiles.com/detectron2/"

#: torchvision's published file names (the hex part is the start of the file's sha256).
TORCHVISION_URLS: dict[str, str] = {name: TORCHVISION_BASE + f for name, f in {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
    "resnext50_32x4d": "resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "resnext101_32x8d-8ba56ff5.pth",
    "retinanet_resnet50_fpn_coco": "retinanet_resnet50_fpn_coco-eeacb38b.pth",
    "fasterrcnn_resnet50_fpn_coco": "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
}.items()}

#: MMCV's ``open-mmlab://`` names of ImageNet backbones (caffe-style MSRA ResNets are Detectron's).
OPEN_MMLAB_URLS: dict[str, str] = {name: OPEN_MMLAB_BASE + f for name, f in {
    "detectron2/resnet50_caffe": "resnet50_msra-5891d200.pth",
    "detectron2/resnet101_caffe": "resnet101_msra-6cc46731.pth",
    "resnet50_caffe_bgr": "resnet50_msra-5891d200.pth",
    "resnet101_caffe_bgr": "resnet101_msra-6cc46731.pth",
    "resnet50_caffe": "resnet50_caffe-788b5fa3.pth",
    "resnet101_caffe": "resnet101_caffe-3ad79236.pth",
    "resnext50_32x4d": "resnext50-32x4d-0ab1a123.pth",
    "resnext101_32x4d": "resnext101_32x4d-a5af3160.pth",
    "resnext101_64x4d": "resnext101_64x4d-ee2c6f71.pth",
    "detectron/resnet50_gn": "resnet50_gn-9186a21c.pth",
    "vgg16_caffe": "vgg16_caffe-292e1171.pth",
}.items()}

_SCHEMES = ("torchvision://", "modelzoo://", "open-mmlab://", "detectron2://", "catalog://", "http://",
            "https://")
_CHUNK = 1 << 20


class DownloadError(OSError):
    """A weight file could not be fetched or verified; the message says which URL and where to put it."""


def kiln_home() -> Path:
    """The cache root: ``$KILN_HOME`` or ``~/.cache/kiln``."""
    return Path(os.environ.get("KILN_HOME") or Path.home() / ".cache" / "kiln").expanduser()


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$KILN_HOME/checkpoints``."""
    return kiln_home() / "checkpoints"


def is_remote(name: str) -> bool:
    """Whether ``name`` is a scheme kiln downloads (as opposed to a local path)."""
    return isinstance(name, str) and name.startswith(_SCHEMES)


def _close(name: str, known: dict[str, str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else f" Known: {', '.join(sorted(known))}."


def resolve_url(name: str) -> str:
    """The URL a weight name stands for (see the module table).

    Raises:
        DownloadError: an unknown ``torchvision://``/``open-mmlab://`` name (close names suggested).
    """
    if name.startswith(("torchvision://", "modelzoo://")):
        key = name.split("://", 1)[1]
        if key not in TORCHVISION_URLS:
            raise DownloadError(f"{name!r}: torchvision publishes no weights kiln knows under '{key}'."
                                + _close(key, TORCHVISION_URLS))
        return TORCHVISION_URLS[key]
    if name.startswith("open-mmlab://"):
        key = name[len("open-mmlab://"):]
        if key not in OPEN_MMLAB_URLS:
            raise DownloadError(f"{name!r}: not an open-mmlab:// name kiln knows."
                                + _close(key, OPEN_MMLAB_URLS)
                                + " Pass the file's https:// URL or a local path instead.")
        return OPEN_MMLAB_URLS[key]
    if name.startswith("detectron2://"):
        return DETECTRON2_BASE + name[len("detectron2://"):]
    if name.startswith("catalog://ImageNetPretrained/"):
        rest = name[len("catalog://ImageNetPretrained/"):]
        return DETECTRON2_BASE + "ImageNetPretrained/" + (rest if rest.endswith(".pkl") else rest + ".pkl")
    if name.startswith(("http://", "https://")):
        return name
    raise DownloadError(f"{name!r} is not a downloadable name (expected one of {', '.join(_SCHEMES)}).")


def mirror_url(url: str) -> str:
    """``url`` with scheme and host replaced by ``$KILN_ZOO_MIRROR`` when that is set."""
    mirror = os.environ.get("KILN_ZOO_MIRROR")
    if not mirror:
        return url
    m = urllib.parse.urlsplit(mirror)
    u = urllib.parse.urlsplit(url)
    path = m.path.rstrip("/") + u.path
    return urllib.parse.urlunsplit((m.scheme, m.netloc, path, u.query, ""))


def cache_path_for(url: str) -> Path:
    """The cache file of ``url`` (Detectron2 URLs keep their path; others their file name)."""
    if url.startswith(DETECTRON2_BASE):
        return cache_dir() / "detectron2" / url[len(DETECTRON2_BASE):]
    name = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise DownloadError(f"URL {url!r} names no file.")
    return cache_dir() / name


def expected_sha256(url: str) -> str | None:
    """The sha256 prefix a published file name carries (``name-<hex>.pth``, torchvision/MMDetection)."""
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    m = re.search(r"-([0-9a-f]{8,64})\.(pth|pt|pkl)$", name)
    return m.group(1) if m else None


def _verify(path: Path, sha256: str | None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    digest = h.hexdigest()
    if sha256 and not digest.startswith(sha256.lower()):
        raise ValueError(digest)
    return digest


def _by_hand(url: str, dest: Path) -> str:
    return (f"Download {url} yourself and place it at {dest} (set KILN_HOME to move the cache), or pass "
            f"the local file's path instead of the name.")


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """One downloader per file across processes (ranks of one job share the cache)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, the atomic rename still keeps the cache sane
        yield
        return
    # Lock files live apart (never removed: unlinking a lock another process waits on would break it).
    lock = dest.parent / ".locks" / (dest.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Progress:
    """A one-line progress display on stderr (only when asked and stderr is a terminal or forced)."""

    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.enabled = label, total, done, enabled
        self._shown = -1

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        pct = int(100 * self.done / self.total) if self.total else -1
        if pct == self._shown and self.total:
            return
        self._shown = pct
        size = f"{self.done / 1e6:.1f} MB" + (f" / {self.total / 1e6:.1f} MB ({pct}%)" if self.total else "")
        sys.stderr.write(f"\rDownloading {self.label}: {size}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _fetch(url: str, part: Path, timeout: float, progress: bool, label: str) -> None:
    """Stream ``url`` into ``part``, resuming from its current size when the server allows ranges."""
    import urllib.error
    import urllib.request

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "kiln"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the partial file is stale; start over
            part.unlink()
            return _fetch(url, part, timeout, progress, label)
        raise
    with response:
        resumed = have and response.status == 206
        mode = "ab" if resumed else "wb"
        length = response.headers.get("Content-Length")
        total = int(length) + (have if resumed else 0) if length is not None else None
        bar = _Progress(label, total, have if resumed else 0, progress)
        try:
            with open(part, mode) as f:
                while block := response.read(_CHUNK):
                    f.write(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
        finally:
            bar.close()
    if total is not None and part.stat().st_size < total:
        raise DownloadError(
            f"download of {url} stopped after {part.stat().st_size} of {total} bytes; the partial file "
            f"{part} is kept and the next attempt resumes it.")


def cached_download(url: str, sha256: str | None = None, *, dest: Path | None = None,
                    progress: bool | None = None, timeout: float = 60.0) -> Path:
    """Return the local cache file of ``url``, downloading and verifying it on first use.

    Args:
        url: an ``http(s)://`` URL (see :func:`resolve_url` for names).
        sha256: expected digest or hex prefix; default: the one in the file name, if any.
        dest: cache file (default :func:`cache_path_for`).
        progress: show progress on stderr (default: when stderr is a terminal).
        timeout: socket timeout in seconds.

    Raises:
        DownloadError: offline, HTTP/network failure, truncated transfer, checksum mismatch; the message
            names the URL and the path to place the file at by hand.
    """
    dest = Path(dest) if dest is not None else cache_path_for(url)
    sha256 = sha256 if sha256 is not None else expected_sha256(url)
    if dest.is_file():
        return dest
    fetch_url = mirror_url(url)
    shown = url if fetch_url == url else f"{url} (via mirror {fetch_url})"
    if os.environ.get("KILN_OFFLINE", "").strip() not in ("", "0"):
        raise DownloadError(f"{dest} is not in the cache and KILN_OFFLINE is set, so kiln will not fetch "
                            f"{shown}. {_by_hand(url, dest)}")
    import http.client
    import urllib.error

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with _locked(dest):
        if dest.is_file():  # another process finished it while we waited for the lock
            return dest
        try:
            _fetch(fetch_url, part, timeout, sys.stderr.isatty() if progress is None else progress, dest.name)
        except urllib.error.HTTPError as e:
            raise DownloadError(f"cannot download {shown}: HTTP {e.code} {e.reason}. "
                                f"{_by_hand(url, dest)}") from e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if isinstance(e, DownloadError):
                raise
            reason = getattr(e, "reason", e)
            kept = f" The partial file {part} is kept; the next attempt resumes it." if part.exists() else ""
            raise DownloadError(f"cannot download {shown} ({reason or type(e).__name__}); no network?{kept} "
                                f"{_by_hand(url, dest)}") from e
        try:
            _verify(part, sha256)
        except ValueError as e:
            part.unlink()
            raise DownloadError(
                f"checksum mismatch for {shown}: sha256 {str(e)[:16]}... is not the expected "
                f"{sha256[:16] if sha256 else ''}...; the downloaded file was deleted. Try again, or check "
                f"the mirror/URL.") from None
        os.replace(part, dest)
    return dest


def resolve_weights(name: str, *, progress: bool | None = None) -> Path:
    """A local file for ``name``: a path as is, a scheme name or URL through :func:`cached_download`.

    Raises:
        FileNotFoundError: a local path that does not exist.
        DownloadError: see :func:`cached_download`.
    """
    if is_remote(name):
        return cached_download(resolve_url(name), progress=progress)
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {name!r} not found (resolved to {path.resolve()}).")
    return path
