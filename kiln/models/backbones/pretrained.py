"""Resolving ``pretrained=`` names to local files and loading foreign ResNet state dicts.

Nothing is downloaded: ``torchvision://resnet50`` is looked up in local cache directories
(``$KILN_HOME/checkpoints``, ``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints``).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

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

# Names MMDetection resolves by downloading; kiln never downloads at run time.
DOWNLOAD_SCHEMES = ("open-mmlab://", "http://", "https://", "mmcls://", "mmpretrain://", "modelzoo://")


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

# File names torchvision publishes; the hash part is what `torch.hub` caches them under.
TORCHVISION_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
}


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
    """Return the local file for ``pretrained``, or ``None`` (with a warning) if it is not there.

    * ``torchvision://NAME``: ``NAME.pth`` or ``NAME-<hash>.pth`` in :func:`checkpoint_dirs`.
      Missing → a warning naming the file, the URL and the directory to put it in; the caller
      continues with random initialisation (kiln never downloads).
    * anything else is a local path; a missing one raises ``FileNotFoundError`` because an explicit
      path that does not exist is a typo, and training from scratch by accident wastes a run.
    """
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
        url = TORCHVISION_URLS.get(name)
        fname = url.rsplit("/", 1)[-1] if url else f"{name}.pth"
        where = " or ".join(str(d) for d in dirs)
        msg = (
            f"pretrained={pretrained!r}: no local file {name}.pth / {name}-<hash>.pth in {where}. "
            f"kiln does not download weights; fetch {url or fname} yourself and put it at "
            f"{dirs[0] / fname} (set KILN_HOME or TORCH_HOME to choose the directory). "
            "Continuing with random initialisation."
        )
        warnings.warn(msg, stacklevel=3)
        return None
    if "://" in pretrained:
        needs_download = pretrained.startswith(DOWNLOAD_SCHEMES)
        raise FileNotFoundError(
            f"pretrained weights {pretrained!r} are needed to start training, and "
            + ("this name is resolved by downloading, which kiln does not do. "
               if needs_download else "kiln does not know this scheme. ")
            + "Download the file yourself and pass its local path, e.g. "
            "--cfg-options model.backbone.init_cfg.checkpoint=/path/to/weights.pth (configs that write "
            "pretrained=... : model.backbone.pretrained=/path/to/weights.pth or model.pretrained=...), "
            "or train from scratch with model.backbone.init_cfg=None."
        )
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
    """Load a state dict from a ``.pth`` file (``weights_only``), unwrapping ``state_dict``/``model`` keys."""
    obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise TypeError(f"{path}: expected a state dict (mapping name → tensor), got {type(obj).__name__}.")
    return obj


_D2_BLOCK = re.compile(r"^res(\d)\.(\d+)\.(conv\d|shortcut)(\.norm)?\.(.+)$")


def convert_resnet_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision / MMDetection / Detectron2 ResNet state dict onto kiln's ResNet names.

    kiln's ResNet uses torchvision's names (``conv1``, ``bn1``, ``layerN.i.convK``, ``bnK``,
    ``downsample.0/1``), so torchvision dicts only lose ``fc.*``; prefixes ``module.`` and
    ``backbone.`` are stripped; Detectron2 names (``stem.conv1``, ``resN.i.convK.norm``,
    ``shortcut``) are renamed.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key
        for prefix in ("module.", "backbone.", "bottom_up."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k.startswith("fc.") or k.startswith("linear."):
            continue  # classification head: not part of a detection backbone
        if k.startswith("stem.conv1.norm."):
            k = "bn1." + k[len("stem.conv1.norm.") :]
        elif k.startswith("stem.conv1."):
            k = "conv1." + k[len("stem.conv1.") :]
        else:
            m = _D2_BLOCK.match(k)
            if m:
                stage, block, conv, norm, rest = m.groups()
                layer = f"layer{int(stage) - 1}.{block}"
                if conv == "shortcut":
                    k = f"{layer}.downsample.{1 if norm else 0}.{rest}"
                elif norm:
                    k = f"{layer}.bn{conv[4:]}.{rest}"
                else:
                    k = f"{layer}.{conv}.{rest}"
        out[k] = value
    return out
