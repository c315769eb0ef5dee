"""Load a Detectron2-style yaml (``_BASE_``, ``MODEL.*``, ``SOLVER.*``, ``--opts``) as a canonical config.

Layering follows Detectron2: framework defaults (:func:`kiln.config.get_default_cfg`) < the few-shot
project defaults added here < the yaml file (``_BASE_`` chain) < ``--opts KEY VALUE``. The frozen
result is translated by :func:`kiln.config.dialects.detectron2.d2_to_canonical` (the key mapping is
documented there and in docs/config.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_d2_config", "load_d2_node", "add_fewshot_defaults"]


def add_fewshot_defaults(cfg: Any) -> Any:
    """Project defaults of the few-shot workflow (DeFRCN's names), added before the file is merged."""
    from kiln.config import CfgNode

    cfg.MODEL.BACKBONE.FREEZE = False
    if "PROPOSAL_GENERATOR" not in cfg.MODEL:
        cfg.MODEL.PROPOSAL_GENERATOR = CfgNode({"NAME": "RPN", "FREEZE": False})
    cfg.MODEL.ROI_HEADS.FREEZE_FEAT = False
    return cfg


def load_d2_config(path: str, opts: list[str] | None = None, num_gpus: int = 1) -> Any:
    """Defaults < project defaults < ``path`` < ``opts``; freeze; translate to a canonical :class:`Config`."""
    from kiln.config import Config, get_default_cfg
    from kiln.config.dialects.detectron2 import d2_to_canonical

    d2 = add_fewshot_defaults(get_default_cfg())
    d2.merge_from_file(path)
    if opts:
        d2.merge_from_list(list(opts))
    d2.freeze()
    return Config(d2_to_canonical(d2, num_gpus=num_gpus), filename=path)


def load_d2_node(path: str, opts: list[str] | None = None) -> Any:
    """The merged, frozen Detectron2 ``CfgNode`` (defaults < project defaults < ``path`` < ``opts``).

    What a Detectron2 run saves as ``OUTPUT_DIR/config.yaml``; :func:`load_d2_config` translates the
    same node into the canonical schema.
    """
    from kiln.config import get_default_cfg

    d2 = add_fewshot_defaults(get_default_cfg())
    d2.merge_from_file(path)
    if opts:
        d2.merge_from_list(list(opts))
    d2.freeze()
    return d2
