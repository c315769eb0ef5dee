"""MMDetection v1 dense-head keys -> the v2 ``anchor_generator``/``bbox_coder`` spelling.

MMDetection v1 configs (seed 001's ``retinanet_r101_fpn_1x.py``) describe anchors and box coding with
flat head keys (``anchor_scales``, ``anchor_ratios``, ``anchor_strides``, ``anchor_base_sizes``,
``octave_base_scale``, ``scales_per_octave``, ``target_means``, ``target_stds``) and count the
background in ``num_classes`` of ``AnchorHead``/``RetinaHead``. kiln's heads take only the v2 form
(``anchor_generator=dict(type='AnchorGenerator', ...)``, ``bbox_coder=dict(...)``, foreground
``num_classes``); this pure translation runs on the model dict before it is built.

Example::

    >>> head = dict(type='RetinaHead', num_classes=81, in_channels=256, anchor_ratios=[0.5, 1.0, 2.0])
    >>> translate_head(head)['anchor_generator']  # doctest: +NORMALIZE_WHITESPACE
    {'type': 'AnchorGenerator', 'strides': [8, 16, 32, 64, 128], 'ratios': [0.5, 1.0, 2.0],
     'octave_base_scale': 4, 'scales_per_octave': 3}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["V1_HEAD_KEYS", "is_v1_head", "translate_head", "translate_model"]

#: the flat v1 keys of MMDetection's anchor heads
V1_HEAD_KEYS = (
    "anchor_scales",
    "anchor_ratios",
    "anchor_strides",
    "anchor_base_sizes",
    "octave_base_scale",
    "scales_per_octave",
    "target_means",
    "target_stds",
)
# The heads whose v1 spelling kiln reads: the per-class anchor heads count the background in v1.
_CLASS_HEADS = {"AnchorHead", "RetinaHead"}
_RPN_HEADS = {"RPNHead"}
_RPN_V1_KEYS = ("anchor_scales", "anchor_ratios", "anchor_strides", "anchor_base_sizes", "target_means",
                "target_stds")


def _type_name(cfg: Mapping[str, Any]) -> str:
    t = cfg.get("type")
    name = t if isinstance(t, str) else getattr(t, "__name__", "")
    return name.rpartition(".")[2]


def is_v1_head(cfg: Any) -> bool:
    """True for a head dict of a known anchor head that uses any flat v1 key."""
    return (
        isinstance(cfg, Mapping)
        and _type_name(cfg) in _CLASS_HEADS | _RPN_HEADS
        and any(cfg.get(k) is not None for k in V1_HEAD_KEYS)
    )


def translate_head(cfg: Mapping[str, Any], where: str = "bbox_head") -> dict[str, Any]:
    """One head dict in v2 form (a copy; a v2 head comes back unchanged).

    Raises:
        ValueError: v1 keys mixed with ``anchor_generator``/``bbox_coder``, or a v1 ``num_classes``
            without room for the background.
    """
    out = dict(cfg)
    if not is_v1_head(out):
        return out
    name = _type_name(out)
    v1 = {k: out.pop(k) for k in V1_HEAD_KEYS if k in out}
    v1 = {k: v for k, v in v1.items() if v is not None}
    if out.get("anchor_generator") is not None or out.get("bbox_coder") is not None:
        raise ValueError(
            f"{where} ({name}): config mixes MMDetection v1 keys {sorted(v1)} with v2 "
            "anchor_generator/bbox_coder; use one schema."
        )
    if name in _RPN_HEADS:
        extra = sorted(set(v1) - set(_RPN_V1_KEYS))
        if extra:
            raise ValueError(f"{where} (RPNHead): v1 keys {extra} are not RPN keys; the RPN takes "
                             f"{', '.join(_RPN_V1_KEYS)}.")
        anchor = dict(type="AnchorGenerator", scales=list(v1.get("anchor_scales", [8])),
                      ratios=list(v1.get("anchor_ratios", [0.5, 1.0, 2.0])),
                      strides=list(v1.get("anchor_strides", [4, 8, 16, 32, 64])))
    else:
        retina = name == "RetinaHead"
        if retina and "anchor_scales" not in v1:
            # v1 RetinaHead defaults, used when the config gives only some of the flat keys
            v1.setdefault("octave_base_scale", 4)
            v1.setdefault("scales_per_octave", 3)
        default_strides = [8, 16, 32, 64, 128] if retina else [4, 8, 16, 32, 64]
        anchor = dict(type="AnchorGenerator", strides=list(v1.get("anchor_strides", default_strides)),
                      ratios=list(v1.get("anchor_ratios", [0.5, 1.0, 2.0])))
        if "octave_base_scale" in v1:
            anchor.update(octave_base_scale=v1["octave_base_scale"],
                          scales_per_octave=v1.get("scales_per_octave"))
        else:
            anchor["scales"] = list(v1.get("anchor_scales", [8, 16, 32]))
        # v1 counted background in num_classes; kiln's labels are 0-based foreground classes.
        if "num_classes" in out:
            n = int(out["num_classes"])
            if n < 2:
                raise ValueError(
                    f"{where} ({name}): v1 num_classes={n} includes background and must be >= 2."
                )
            out["num_classes"] = n - 1
    if "anchor_base_sizes" in v1:
        anchor["base_sizes"] = list(v1["anchor_base_sizes"])
    out["anchor_generator"] = anchor
    if name not in _RPN_HEADS or "target_means" in v1 or "target_stds" in v1:
        out["bbox_coder"] = dict(type="DeltaXYWHBBoxCoder",
                                 target_means=list(v1.get("target_means", [0.0] * 4)),
                                 target_stds=list(v1.get("target_stds", [1.0] * 4)))
    return out


def translate_model(model: Any, where: str = "model") -> Any:
    """The model dict (or list of them) with every v1 anchor head translated; other keys untouched."""
    if isinstance(model, (list, tuple)):
        return [translate_model(m, f"{where}[{i}]") for i, m in enumerate(model)]
    if not isinstance(model, Mapping):
        return model
    out = {}
    for k, v in model.items():
        sub = f"{where}.{k}"
        if is_v1_head(v):
            out[k] = translate_head(v, sub)
        elif isinstance(v, Mapping) and k not in ("train_cfg", "test_cfg"):
            out[k] = translate_model(v, sub)
        else:
            out[k] = v
    return out
