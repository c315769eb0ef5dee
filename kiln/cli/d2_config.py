"""Load a Detectron2-style yaml (``_BASE_``, ``MODEL.*``, ``SOLVER.*``, ``--opts``) as a canonical config.

Layering follows Detectron2: framework defaults (:func:`kiln.config.get_cfg`, every key of Detectron2's
``defaults.py``) < the few-shot project defaults added here < the yaml file (``_BASE_`` chain; version-1
files upgraded) < ``--opts KEY VALUE``. :func:`load_d2_node` returns the merged, frozen ``CfgNode`` (what
``OUTPUT_DIR/config.yaml`` records); :func:`load_d2_config` translates it with
:func:`kiln.config.dialects.detectron2.d2_to_canonical` (the key mapping is documented there and in
docs/from_detectron2.md).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_d2_config", "load_d2_node", "add_fewshot_defaults"]


def add_fewshot_defaults(cfg: Any) -> Any:
    """Project defaults of the few-shot workflow (DeFRCN's names), added before the file is merged."""
    from kiln.config import CfgNode

    cfg.MODEL.BACKBONE.FREEZE = False
    if "PROPOSAL_GENERATOR" not in cfg.MODEL:
        cfg.MODEL.PROPOSAL_GENERATOR = CfgNode({"NAME": "RPN", "MIN_SIZE": 0})
    cfg.MODEL.PROPOSAL_GENERATOR.FREEZE = False
    cfg.MODEL.ROI_HEADS.FREEZE_FEAT = False
    from kiln.config.defaults import add_defrcn_config

    return add_defrcn_config(cfg)  # DeFRCN's keys: GDL, RPN.FREEZE, CLS_DROPOUT, TEST.PCB_* (issue 15)


def load_d2_node(path: str, opts: list[str] | None = None) -> Any:
    """Defaults < project defaults < ``path`` < ``opts``, frozen: the merged Detectron2 ``CfgNode``."""
    from kiln.config import get_cfg

    d2 = add_fewshot_defaults(get_cfg())
    d2.merge_from_file(path)
    if opts:
        d2.merge_from_list(list(opts))
    d2.freeze()
    return d2


def load_d2_config(path: str, opts: list[str] | None = None, num_gpus: int = 1) -> Any:
    """:func:`load_d2_node`, translated to a canonical :class:`~kiln.config.Config`."""
    from kiln.config import Config
    from kiln.config.dialects.detectron2 import d2_to_canonical

    return Config(d2_to_canonical(load_d2_node(path, opts), num_gpus=num_gpus), filename=path)
