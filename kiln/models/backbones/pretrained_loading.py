"""Loading a ``pretrained=`` checkpoint into a backbone whose names are already MMDetection's.

ResNet converts torchvision/Detectron2 layouts itself; Darknet and SSDVGG checkpoints are published by
MMDetection (``open-mmlab://darknet53``, ``open-mmlab://vgg16_caffe``) with the module names kiln uses,
so they load as they are, after the optional ``init_cfg`` ``prefix`` is stripped.
"""

from __future__ import annotations

import logging

import torch.nn as nn

from .pretrained import load_checkpoint_state_dict, resolve_pretrained, select_prefix

__all__ = ["load_named_pretrained", "mark_pretrained_loaded"]

logger = logging.getLogger(__name__)


def mark_pretrained_loaded(module: nn.Module, incompatible: object) -> None:
    """``load_state_dict`` post-hook: a full state dict loaded over the backbone supersedes ``pretrained``."""
    module.pretrained_loaded = True


def load_named_pretrained(module: nn.Module, pretrained: str, prefix: str | None, owner: str) -> None:
    """Load ``pretrained`` (local file or resolvable name) into ``module`` non-strictly; shapes must fit."""
    path = resolve_pretrained(pretrained)
    if path is None:
        return
    state = select_prefix(load_checkpoint_state_dict(path), prefix, path)
    own = module.state_dict()
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatched:
        raise ValueError(
            f"pretrained file {path} does not fit {owner}: shape mismatch for {mismatched[:5]}. Check the "
            "backbone's depth/widths against the checkpoint."
        )
    if not set(state) & set(own):
        raise ValueError(
            f"pretrained file {path} has no weight named like {owner}'s (file keys: {list(state)[:5]}, model "
            f"keys: {list(own)[:5]}); give init_cfg prefix='backbone.' for a whole-detector checkpoint."
        )
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        logger.warning("%s pretrained %s: missing keys %s", owner, path, missing)
    if result.unexpected_keys:
        logger.warning("%s pretrained %s: unused keys %s", owner, path, result.unexpected_keys)
