"""The model zoo: names → (config, checkpoint URL, sha256), resolved from a local cache.

kiln never downloads anything. A checkpoint named by the zoo is looked up in the cache directory
``$KILN_HOME/checkpoints/`` (default ``~/.cache/kiln/checkpoints``; torchvision backbones are also
found in ``$TORCH_HOME/hub/checkpoints``), verified against the recorded sha256 (a full digest or,
like torchvision's file names, a prefix of at least 8 hex digits), and only then used. A missing file
raises an error that says which URL to fetch and where to put it.

Besides the shipped table, ``$KILN_HOME/zoo.json`` may add entries (a team's private zoo);
:func:`add_entry` writes one from a locally trained checkpoint, copying it into the cache.

Example::

    >>> from kiln import model_zoo
    >>> model_zoo.get_config_file('retinanet_r50_fpn_1x_coco')   # doctest: +ELLIPSIS
    '.../retinanet/retinanet_r50_fpn_1x_coco.py'
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .paths import resolve_config_path

__all__ = [
    "ZooEntry", "ZooError", "kiln_home", "list_entries", "get_entry", "get_checkpoint_url",
    "get_checkpoint_path", "get_config_file", "get_config", "get", "add_entry", "sha256sum",
]


class ZooError(LookupError):
    """A zoo name is unknown, has no checkpoint, or its checkpoint is missing/corrupt."""


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One zoo row. ``config`` is a ``kiln::`` path (or ``None`` for backbone weights only)."""

    name: str
    config: str | None
    url: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    note: str = ""

    @property
    def cache_name(self) -> str | None:
        """File name of the checkpoint inside the cache directory."""
        if self.file_name:
            return self.file_name
        if self.url:
            return self.url.rstrip("/").rsplit("/", 1)[-1]
        return None


_TV = "https://download.pytorch.org/models/"
# torchvision's ImageNet weights: the hex in the file name is the sha256 prefix torchvision checks.
_SHIPPED: list[ZooEntry] = [
    ZooEntry("retinanet_r50_fpn_1x_coco", "kiln::retinanet/retinanet_r50_fpn_1x_coco.py",
             note="no published COCO checkpoint; train with `kiln train` and `kiln zoo add`"),
    ZooEntry("faster_rcnn_r50_fpn_1x_coco", "kiln::faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
             note="no published COCO checkpoint; train with `kiln train` and `kiln zoo add`"),
    ZooEntry("shapes_retinanet_r18_fpn", "kiln::shapes/retinanet_r18_fpn_shapes.py",
             note="the `make demo` model; add its checkpoint with `kiln zoo add`"),
    ZooEntry("shapes_faster_rcnn_r18_fpn", "kiln::shapes/faster_rcnn_r18_fpn_shapes.py",
             note="small Faster R-CNN on the generated shapes data"),
    ZooEntry("torchvision/resnet18", None, _TV + "resnet18-f37072fd.pth", "f37072fd",
             note="ImageNet backbone weights (torchvision://resnet18)"),
    ZooEntry("torchvision/resnet34", None, _TV + "resnet34-b627a593.pth", "b627a593",
             note="ImageNet backbone weights (torchvision://resnet34)"),
    ZooEntry("torchvision/resnet50", None, _TV + "resnet50-0676ba61.pth", "0676ba61",
             note="ImageNet backbone weights (torchvision://resnet50)"),
    ZooEntry("torchvision/resnet101", None, _TV + "resnet101-63fe2227.pth", "63fe2227",
             note="ImageNet backbone weights (torchvision://resnet101)"),
    ZooEntry("torchvision/resnet152", None, _TV + "resnet152-394f9c45.pth", "394f9c45",
             note="ImageNet backbone weights (torchvision://resnet152)"),
]


def kiln_home() -> Path:
    """The cache root: ``$KILN_HOME`` or ``~/.cache/kiln``."""
    return Path(os.environ.get("KILN_HOME") or Path.home() / ".cache" / "kiln").expanduser()


def _user_zoo_file() -> Path:
    return kiln_home() / "zoo.json"


def _user_entries() -> list[ZooEntry]:
    path = _user_zoo_file()
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ZooError(f"{path} is not valid JSON ({exc}); fix or delete it.") from exc
    fields = {f.name for f in dataclasses.fields(ZooEntry)}
    entries = []
    for name, row in rows.items():
        unknown = set(row) - fields
        if unknown:
            raise ZooError(f"{path}: entry '{name}' has unknown keys {sorted(unknown)}; "
                           f"allowed: {sorted(fields - {'name'})}.")
        entries.append(ZooEntry(name=name, **row))
    return entries


def list_entries() -> list[ZooEntry]:
    """All entries: the shipped table, then (overriding by name) ``$KILN_HOME/zoo.json``."""
    table = {e.name: e for e in _SHIPPED}
    table.update({e.name: e for e in _user_entries()})
    return list(table.values())


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (a ``.py`` suffix or ``kiln::`` prefix is tolerated)."""
    key = name[len("kiln::"):] if name.startswith("kiln::") else name
    table = {e.name: e for e in list_entries()}
    if key in table:
        return table[key]
    for e in table.values():  # also accept the config path, e.g. 'retinanet/retinanet_r50_fpn_1x_coco.py'
        if e.config and (e.config == "kiln::" + key or e.config == "kiln::" + key + ".py"):
            return e
    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise ZooError(f"'{name}' is not in the kiln model zoo.{hint} See `kiln zoo list`.")


def get_checkpoint_url(name: str) -> str:
    """The URL the checkpoint of ``name`` is published at."""
    entry = get_entry(name)
    if not entry.url:
        raise ZooError(f"Zoo entry '{entry.name}' has no published checkpoint ({entry.note or 'none'}).")
    return entry.url


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _candidates(entry: ZooEntry) -> list[Path]:
    name = entry.cache_name
    assert name is not None
    dirs = [kiln_home() / "checkpoints"]
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "torch")
    dirs.append(Path(torch_home) / "hub" / "checkpoints")
    return [d / name for d in dirs]


def get_checkpoint_path(name: str, verify: bool = True) -> str:
    """Local path of the checkpoint of ``name``, verified by hash.

    Raises:
        ZooError: no checkpoint is published, the file is not in the cache (the message gives the URL
            and the exact destination path), or its hash does not match.
    """
    entry = get_entry(name)
    if not entry.cache_name:
        raise ZooError(f"Zoo entry '{entry.name}' has no checkpoint ({entry.note or 'none published'}).")
    candidates = _candidates(entry)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        source = f"Download {entry.url} yourself" if entry.url else "Obtain the file"
        raise ZooError(
            f"Checkpoint for '{entry.name}' is not in the local cache; kiln does not download. "
            f"{source} and place it at {candidates[0]} (set KILN_HOME to move the cache; "
            f"looked in: {', '.join(str(p) for p in candidates)})."
        )
    if verify and entry.sha256:
        digest = sha256sum(found)
        expected = entry.sha256.lower()
        if not digest.startswith(expected):
            raise ZooError(
                f"Checkpoint {found} for '{entry.name}' is corrupt or a different file: sha256 "
                f"{digest[:16]}... does not match the recorded {expected[:16]}. Delete it and fetch "
                f"{entry.url or 'the original file'} again."
            )
    return str(found)


def get_config_file(name: str) -> str:
    """Absolute path of the shipped config of ``name``."""
    entry = get_entry(name)
    if not entry.config:
        raise ZooError(f"Zoo entry '{entry.name}' is backbone weights only and has no config.")
    return resolve_config_path(entry.config)


def get_config(name: str, trained: bool = False) -> Any:
    """The :class:`kiln.config.Config` of ``name``.

    With ``trained=True`` the config loads the zoo checkpoint (``load_from``, verified by hash) and
    drops ImageNet ``pretrained`` backbone weights, which the checkpoint supersedes.
    """
    from kiln.config import Config

    cfg = Config.fromfile(get_config_file(name))
    if trained:
        cfg.load_from = get_checkpoint_path(name)
        if "model" in cfg and "pretrained" in cfg.model:
            cfg.model.pretrained = None
    return cfg


def load_weights(model: Any, path: str, device: str = "cpu") -> Any:
    """Load model weights from a kiln (``model`` key), MM (``state_dict``) or bare checkpoint."""
    import torch

    ckpt = torch.load(path, map_location=device, weights_only=True)
    state = ckpt
    if isinstance(ckpt, dict):
        for key in ("model", "state_dict"):
            if isinstance(ckpt.get(key), dict):
                state = ckpt[key]
                break
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    model.load_state_dict(state)
    return model


def get(name: str, trained: bool = False, device: str = "cpu") -> Any:
    """Build the detector of ``name`` (on ``device``), with the zoo weights when ``trained``."""
    from kiln.models import build_detector

    cfg = get_config(name, trained=trained)
    if trained:
        cfg.model.pretrained = None
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    if trained:
        load_weights(model, cfg.load_from)
    return model.to(device).eval()


def add_entry(name: str, checkpoint: str, config: str | None = None, note: str = "") -> ZooEntry:
    """Publish a local checkpoint into the cache and ``$KILN_HOME/zoo.json`` under ``name``.

    The file is copied to ``$KILN_HOME/checkpoints/<name>-<sha8>.pth`` and its full sha256 recorded,
    so later :func:`get_checkpoint_path` calls verify it.
    """
    src = Path(checkpoint)
    if not src.is_file():
        raise ZooError(f"Checkpoint file {src} does not exist.")
    if config is None:
        try:
            config = get_entry(name).config
        except ZooError:
            config = None
    digest = sha256sum(src)
    file_name = f"{name.replace('/', '_')}-{digest[:8]}.pth"
    dest = kiln_home() / "checkpoints" / file_name
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    rows: dict[str, dict] = {}
    zoo_file = _user_zoo_file()
    if zoo_file.is_file():
        rows = json.loads(zoo_file.read_text())
    rows[name] = {"config": config, "url": dest.as_uri(), "sha256": digest,
                  "file_name": file_name, "note": note or f"added from {src}"}
    tmp_json = zoo_file.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(rows, indent=2, sort_keys=True))
    os.replace(tmp_json, zoo_file)
    return get_entry(name)
