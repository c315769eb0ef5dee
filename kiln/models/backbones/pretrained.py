"""Resolving ``pretrained=`` names to local files and loading foreign ResNet state dicts.

``torchvision://resnet50`` is first looked up in the local caches (``$KILN_HOME/checkpoints``,
``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints``); a name that is not there, and
``open-mmlab://``, ``detectron2://``, ``modelzoo://`` names and URLs, are downloaded once into
``$KILN_HOME/checkpoints`` (:mod:`kiln.model_zoo.download`). Files of any publisher's layout load
(:mod:`kiln.checkpoint_convert`).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from kiln.model_zoo.download import TORCHVISION_URLS  # re-exported: torchvision's published file names

__all__ = [
    "TORCHVISION_URLS",
    "checkpoint_dirs",
    "resolve_pretrained",
    "load_checkpoint_state_dict",
    "convert_resnet_state_dict",
    "pretrained_from_init_cfg",
    "select_prefix",
    "DOWNLOAD_SCHEMES",
]

# Names resolved by downloading into the cache (mmcls:// and mmpretrain:// are recognised but not known).
DOWNLOAD_SCHEMES = ("open-mmlab://", "http://", "https://", "mmcls://", "mmpretrain://", "modelzoo://",
                    "detectron2://", "catalog://")


def pretrained_from_init_cfg(init_cfg: Any, pretrained: str | None, owner: str) -> str | None:
    """The checkpoint named by an MMDetection ``init_cfg=dict(type='Pretrained', checkpoint=...)``.

    ``pretrained`` (the older spelling) wins when both are given and equal; different values are an
    error. Other ``init_cfg`` types (``Kaiming``, ``Normal``...) are refused: kiln's modules apply
    MMDetection's default initialisation themselves and cannot honour a different one.
    """
    if init_cfg is None:
        return pretrained
    if isinstance(init_cfg, (list, tuple)) or getattr(init_cfg, "get", None) is None:
        raise ValueError(
            f"{owner} init_cfg={init_cfg!r}: kiln supports only dict(type='Pretrained', checkpoint=...) here."
        )
    if init_cfg.get("type") != "Pretrained" or "checkpoint" not in init_cfg:
        raise ValueError(
            f"{owner} init_cfg={dict(init_cfg)!r}: only dict(type='Pretrained', checkpoint=...) is "
            "supported (kiln applies MMDetection's default initialisation itself)."
        )
    extra = sorted(set(init_cfg) - {"type", "checkpoint", "prefix", "map_location"})
    if extra:
        raise ValueError(
            f"{owner} init_cfg keys {extra} are not supported; kiln reads type='Pretrained', checkpoint, "
            "prefix and map_location."
        )
    checkpoint = init_cfg["checkpoint"]
    if pretrained is not None and pretrained != checkpoint:
        raise ValueError(
            f"{owner}: pretrained={pretrained!r} and init_cfg.checkpoint={checkpoint!r} differ; keep one."
        )
    return checkpoint

logger = logging.getLogger(__name__)

def checkpoint_dirs() -> list[Path]:
    """Directories searched for ``torchvision://`` checkpoints, in order."""
    dirs = []
    if os.environ.get("KILN_HOME"):
        dirs.append(Path(os.environ["KILN_HOME"]) / "checkpoints")
    if os.environ.get("TORCH_HOME"):
        dirs.append(Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints")
    dirs.append(Path.home() / ".cache" / "torch" / "hub" / "checkpoints")
    return dirs


def resolve_pretrained(pretrained: str) -> Path | None:
    """Return the local file for ``pretrained``, downloading it into the cache on first use.

    * ``torchvision://NAME``: ``NAME.pth`` or ``NAME-<hash>.pth`` in :func:`checkpoint_dirs`, else
      downloaded. When it cannot be downloaded (offline, ``KILN_OFFLINE=1``) a warning names the URL and
      the file to place by hand, and the caller continues with random initialisation (the old
      torchvision-cache behaviour configs written for kiln rely on).
    * ``open-mmlab://``, ``detectron2://``, ``modelzoo://``, ``catalog://`` names and URLs: downloaded
      and verified; failing that, ``FileNotFoundError`` saying which file to provide and how.
    * anything else is a local path; a missing one raises ``FileNotFoundError`` because an explicit
      path that does not exist is a typo, and training from scratch by accident wastes a run.
    """
    from kiln.model_zoo.download import DownloadError, cached_download, resolve_url

    if pretrained.startswith("torchvision://"):
        name = pretrained[len("torchvision://") :]
        dirs = checkpoint_dirs()
        for d in dirs:
            if not d.is_dir():
                continue
            exact = d / f"{name}.pth"
            if exact.is_file():
                return exact
            hits = sorted(
                p
                for p in d.glob(f"{name}-*.pth")
                if re.fullmatch(rf"{re.escape(name)}-[0-9a-f]+\.pth", p.name)
            )
            if hits:
                return hits[-1]
        try:
            return cached_download(resolve_url(pretrained))
        except DownloadError as exc:
            warnings.warn(f"pretrained={pretrained!r}: {exc} Continuing with random initialisation.",
                          stacklevel=3)
            return None
    if "://" in pretrained:
        try:
            return cached_download(resolve_url(pretrained))
        except DownloadError as exc:
            raise FileNotFoundError(
                f"pretrained weights {pretrained!r} are needed to start training: {exc} Or pass the local "
                "file, e.g. --cfg-options model.backbone.init_cfg.checkpoint=/path/to/weights.pth (configs "
                "that write pretrained=... : model.backbone.pretrained=/path/to/weights.pth or "
                "model.pretrained=...), or train from scratch with model.backbone.init_cfg=None."
            ) from exc
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained={pretrained!r}: file not found (resolved to {path.resolve()}). Check the path, or "
            "set pretrained=None to train from scratch."
        )
    return path


def select_prefix(
    state: dict[str, torch.Tensor], prefix: str | None, path: Any = ""
) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` with it stripped (MMEngine's ``init_cfg=dict(prefix='backbone.')``,
    which takes a backbone out of a whole-model checkpoint); ``prefix=None`` keeps everything."""
    if not prefix:
        return state
    out = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise KeyError(
            f"pretrained {path}: no weights under prefix {prefix!r} (keys: {list(state)[:5]} ...)."
        )
    return out


def load_checkpoint_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file of any format (``.pth`` weights-only, ``.pkl`` data-only pickle),
    unwrapping ``state_dict``/``model``/``blobs``."""
    from kiln.checkpoint_convert import read_checkpoint

    return dict(read_checkpoint(path)["model"])


def convert_resnet_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a ResNet state dict of any publisher onto kiln's ResNet names.

    kiln's ResNet uses torchvision's names (``conv1``, ``bn1``, ``layerN.i.convK``, ``bnK``,
    ``downsample.0/1``). The layout is detected and renamed by :func:`kiln.checkpoint_convert.to_kiln_names`
    (Detectron2 ``stem``/``resN``/``shortcut``, Caffe2/MSRA blobs with frozen BatchNorm, torchvision
    classification and detection dicts); then ``module.``/``backbone.`` prefixes and classifier weights go.
    """
    from kiln.checkpoint_convert import to_kiln_names

    renamed, _, _ = to_kiln_names(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in renamed.items():
        k = key
        for prefix in ("module.", "backbone.", "bottom_up."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k.startswith(("fc.", "linear.", "fc1000.")):
            continue  # classification head: not part of a detection backbone
        out[k] = value
    return out
