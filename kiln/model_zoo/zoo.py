"""The model zoo: names -> (config, checkpoint URL, sha256, published accuracy), downloaded on first use.

Names are the ones users type: MMDetection's (``retinanet_r50_fpn_1x_coco``), Detectron2's model-zoo
paths (``COCO-Detection/faster_rcnn_R_50_FPN_3x``, ``.yaml`` optional), torchvision's
(``torchvision/fasterrcnn_resnet50_fpn_coco``) and ImageNet backbones. A checkpoint is looked up in
``$KILN_HOME/checkpoints/`` (default ``~/.cache/kiln/checkpoints``; torchvision files also in
``$TORCH_HOME/hub/checkpoints``), downloaded there on first use (:mod:`kiln.model_zoo.download`: atomic,
resumable, ``KILN_ZOO_MIRROR``, ``KILN_OFFLINE``), and verified against the recorded sha256 (a full digest
or, like the publishers' file names, a prefix of at least 8 hex digits).

Besides the shipped table, ``$KILN_HOME/zoo.json`` may add entries (``{name: {config, url, sha256}}``, a
team's private zoo) which go through the same download path; :func:`add_entry` writes one from a locally
trained checkpoint, copying it into the cache.

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

from .download import DownloadError, cache_path_for, cached_download, kiln_home
from .entries import SHIPPED, ZooEntry
from .paths import resolve_config_path

__all__ = [
    "ZooEntry", "ZooError", "kiln_home", "list_entries", "get_entry", "get_checkpoint_url",
    "get_checkpoint_path", "get_config_file", "get_config", "get", "build_model", "add_entry", "sha256sum",
]


class ZooError(LookupError):
    """A zoo name is unknown, has no checkpoint, or its checkpoint is missing/corrupt."""


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
    table = {e.name: e for e in SHIPPED}
    table.update({e.name: e for e in _user_entries()})
    return list(table.values())


def _normalise(name: str) -> str:
    key = name[len("kiln::"):] if name.startswith("kiln::") else name
    for suffix in (".yaml", ".py"):  # Detectron2 names carry .yaml, MMDetection config names .py
        if key.endswith(suffix) and key[: -len(suffix)]:
            return key[: -len(suffix)]
    return key


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (a ``.py``/``.yaml`` suffix or ``kiln::`` prefix is tolerated)."""
    key = _normalise(name)
    table = {e.name: e for e in list_entries()}
    if key in table:
        return table[key]
    for e in table.values():  # also accept the config path, e.g. 'retinanet/retinanet_r50_fpn_1x_coco.py'
        if e.config and _normalise(e.config) in (key, "detectron2/" + key):
            return e
    close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise ZooError(f"'{name}' is not in the kiln model zoo.{hint} See `kiln zoo list`.")


def get_checkpoint_url(name: str) -> str:
    """The URL the checkpoint of ``name`` is published at (Detectron2's ``get_checkpoint_url``)."""
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
    """Where the entry's checkpoint may already be: kiln's cache first (where downloads go), torch hub."""
    name = entry.cache_name
    assert name is not None
    first = (cache_path_for(entry.url) if entry.url and entry.url.startswith(("http://", "https://"))
             and not entry.file_name else kiln_home() / "checkpoints" / name)
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "torch")
    return [first, Path(torch_home) / "hub" / "checkpoints" / name]


def get_checkpoint_path(name: str, verify: bool = True, download: bool = True,
                        progress: bool | None = None) -> str:
    """Local path of the checkpoint of ``name``, downloaded on first use and verified by hash.

    Args:
        name: zoo name.
        verify: check the file against the recorded sha256.
        download: fetch a checkpoint missing from the cache (``False``: only look).
        progress: show download progress (default: when stderr is a terminal).

    Raises:
        ZooError: no checkpoint is published, it cannot be fetched (the message gives the URL and the
            exact destination path to place it by hand), or its hash does not match.
    """
    entry = get_entry(name)
    if not entry.cache_name:
        raise ZooError(f"Zoo entry '{entry.name}' has no checkpoint ({entry.note or 'none published'}).")
    candidates = _candidates(entry)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        remote = bool(entry.url) and entry.url.startswith(("http://", "https://"))
        if not (download and remote):
            source = f"Download {entry.url}" if remote else "Obtain the file"
            raise ZooError(
                f"Checkpoint for '{entry.name}' is not in the local cache. {source} and place it at "
                f"{candidates[0]} (set KILN_HOME to move the cache; looked in: "
                f"{', '.join(str(p) for p in candidates)})."
            )
        try:
            return str(cached_download(entry.url, entry.sha256, dest=candidates[0], progress=progress))
        except DownloadError as exc:
            raise ZooError(f"Zoo entry '{entry.name}': {exc}") from exc
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
    """Absolute path of the shipped config of ``name`` (Detectron2's ``model_zoo.get_config_file``)."""
    entry = get_entry(name)
    if not entry.config:
        raise ZooError(f"Zoo entry '{entry.name}' is backbone weights only and has no config.")
    return resolve_config_path(entry.config)


def _is_detectron2(path: str) -> bool:
    return path.endswith((".yaml", ".yml")) and "/detectron2/" in Path(path).as_posix()


def get_config(name: str, trained: bool = False) -> Any:
    """The config of ``name``.

    For Detectron2 names this is a Detectron2 ``CfgNode`` (kiln's defaults merged with the shipped
    yaml, not frozen), as ``detectron2.model_zoo.get_config`` returns; ``trained=True`` sets
    ``MODEL.WEIGHTS`` to the checkpoint URL, which kiln downloads and caches when the model loads it.
    For the other names it is a :class:`kiln.config.Config`; ``trained=True`` sets ``load_from`` to the
    cached checkpoint (downloaded now, verified by hash) and drops the ImageNet initialisation
    (``pretrained``, ``Pretrained`` init_cfgs) that the checkpoint supersedes.
    """
    path = get_config_file(name)
    if _is_detectron2(path):
        from kiln.cli.d2_config import add_fewshot_defaults
        from kiln.config import get_default_cfg

        node = add_fewshot_defaults(get_default_cfg())
        node.merge_from_file(path)
        if trained:
            node.MODEL.WEIGHTS = get_checkpoint_url(name)
        return node
    from kiln.config import Config

    cfg = Config.fromfile(path)
    if trained:
        cfg.load_from = get_checkpoint_path(name)
        if "model" in cfg:
            _drop_pretrained(cfg.model)
    return cfg


def _drop_pretrained(node: Any) -> None:
    """Clear every ImageNet initialisation in a model config (``pretrained=``, ``init_cfg`` of type
    ``Pretrained``, e.g. a C4 model's shared head): a whole-model checkpoint supersedes them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pretrained":
                node[key] = None
            elif key == "init_cfg" and isinstance(value, dict) and value.get("type") == "Pretrained":
                node[key] = None
            else:
                _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _drop_pretrained(value)


def load_weights(model: Any, path: str, device: str = "cpu", strict: bool = True) -> Any:
    """Load a whole model's weights of any layout (kiln, MMDetection, Detectron2 ``.pth``/``.pkl``,
    Caffe2, torchvision) from a file, a URL or a ``detectron2://``-style name.

    ``strict`` (the default, for evaluating a checkpoint): every model tensor must load, else
    ``RuntimeError`` with the load report (checkpoint entries the model does not use are only reported).
    """
    from kiln.checkpoint_convert import load_into

    from .download import resolve_weights

    local = resolve_weights(path) if isinstance(path, str) else path
    report = load_into(model, local)
    if strict and (report.missing or report.shape_mismatch):
        raise RuntimeError(f"{report.format()}\nThe checkpoint does not fit this model (strict load); check "
                           "that config and checkpoint belong together.")
    return model


def _model_setting(value: Any) -> Any:
    """A top-level ``train_cfg``/``test_cfg`` that belongs to the model (MMDetection v1 layout), else None.

    In the canonical schema (Detectron2 yaml, MMDetection 3.x) those keys are the train/test *loops*,
    which carry a ``type``; the model's own settings never do.
    """
    return value if isinstance(value, dict) and "type" not in value else None


def build_model(config: str) -> Any:
    """The detector a config describes (a ``kiln::`` name, a Detectron2 yaml or an MM-style file), with
    its initial weights and no ImageNet initialisation: the model a checkpoint is loaded into."""
    from kiln.models import build_detector

    path = resolve_config_path(config)
    if path.endswith((".yaml", ".yml")):
        from kiln.cli.d2_config import load_d2_config

        cfg = load_d2_config(path, opts=["MODEL.WEIGHTS", ""])
    else:
        from kiln.config import Config

        cfg = Config.fromfile(path)
    _drop_pretrained(cfg.model)
    return build_detector(cfg.model, train_cfg=_model_setting(cfg.get("train_cfg")),
                          test_cfg=_model_setting(cfg.get("test_cfg")))


def get(name: str, trained: bool = False, device: str = "cpu") -> Any:
    """Build the detector of ``name`` (on ``device``, in eval mode), with the zoo weights when ``trained``
    (Detectron2's ``model_zoo.get``)."""
    model = build_model(get_config_file(name))
    if trained:
        load_weights(model, get_checkpoint_path(name))
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
