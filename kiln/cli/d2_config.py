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


#: Keys only DeFRCN's schema has: a config that sets one is a DeFRCN config, run as DeFRCN's main.py runs it.
DEFRCN_KEYS = (
    "MODEL.BACKBONE.FREEZE", "MODEL.RPN.FREEZE", "MODEL.RPN.ENABLE_DECOUPLE", "MODEL.RPN.BACKWARD_SCALE",
    "MODEL.ROI_HEADS.FREEZE_FEAT", "MODEL.ROI_HEADS.ENABLE_DECOUPLE", "MODEL.ROI_HEADS.BACKWARD_SCALE",
    "MODEL.ROI_HEADS.CLS_DROPOUT", "MODEL.ROI_HEADS.DROPOUT_RATIO", "MODEL.ROI_HEADS.OUTPUT_LAYER",
    "TEST.PCB_ENABLE", "TEST.PCB_MODELTYPE", "TEST.PCB_MODELPATH", "TEST.PCB_ALPHA", "TEST.PCB_UPPER",
    "TEST.PCB_LOWER",
)


def defrcn_keys_in(path: str, opts: list[str] | None = None) -> list[str]:
    """The DeFRCN-only keys the yaml chain of ``path`` (or ``opts``) sets."""
    from kiln.config import CfgNode

    raw = CfgNode.load_yaml_with_base(path)
    found = []
    for key in DEFRCN_KEYS:
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found.append(key)
    given = list(opts or [])[::2]
    return found + [k for k in DEFRCN_KEYS if k in given and k not in found]


def load_d2_node(path: str, opts: list[str] | None = None) -> Any:
    """Defaults < project defaults < ``path`` < ``opts``, frozen: the merged Detectron2 ``CfgNode``.

    A DeFRCN config (one that sets a key only DeFRCN has, e.g. ``MODEL.RPN.ENABLE_DECOUPLE``) gets the four
    Detectron2 defaults DeFRCN's ``get_cfg`` changes (``FREEZE_AT`` 3, ``Res5ROIHeads``, box pooler 7,
    weight decay 5e-5) before the file is merged, so it means what it means under DeFRCN's ``main.py``."""
    from kiln.config import get_cfg
    from kiln.config.defaults import apply_defrcn_project_values

    d2 = add_fewshot_defaults(get_cfg())
    if defrcn_keys_in(path, opts):
        apply_defrcn_project_values(d2)
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
