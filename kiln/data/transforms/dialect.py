"""Which MMDetection generation a config pipeline is written in (2.x or 3.x), decided once per pipeline.

Most steps mean the same in both generations and one kiln class serves both spellings (``Resize(img_scale=)``
and ``Resize(scale=)``). Two keys kept their name but changed meaning, so a step alone cannot tell:

* ``Pad(size=...)`` is ``(h, w)`` in MMDetection 2.x and ``(w, h)`` in 3.x;
* ``RandomCrop(crop_size=...)`` with ``crop_type`` ``'absolute'``/``'relative'`` is ``(h, w)`` in 2.x and
  ``(w, h)`` in 3.x.

:func:`pipeline_dialect` reads the whole step list (3.x pipelines end in ``PackDetInputs``, 2.x in
``Collect``) and :func:`prepare_steps` passes the axis order to those two steps, so a pipeline copied from
either generation means what it meant there. A pipeline that mixes both generations is refused: its
meaning is ambiguous.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MMDET2", "MMDET3", "pipeline_dialect", "prepare_steps"]

MMDET2 = "mmdet2"
MMDET3 = "mmdet3"

# Step types that exist in only one generation.
_MM3_TYPES = frozenset({"PackDetInputs", "TestTimeAug", "RandomResize", "RandomChoiceResize"})
_MM2_TYPES = frozenset({"Collect", "DefaultFormatBundle", "MultiScaleFlipAug", "Normalize",
                        "ImageToTensor", "ToTensor"})
# Arguments that exist in only one generation, per step type.
_MM3_ARGS = {
    "Resize": frozenset({"scale", "scale_factor", "clip_object_border"}),
    "RandomFlip": frozenset({"prob", "swap_seg_labels"}),
    "LoadImageFromFile": frozenset({"backend_args", "imdecode_backend", "ignore_empty"}),
    "LoadAnnotations": frozenset({"backend_args", "box_type", "with_keypoints", "reduce_zero_label",
                                  "imdecode_backend"}),
    "Pad": frozenset({"padding_mode"}),
}
_MM2_ARGS = {
    "Resize": frozenset({"img_scale", "multiscale_mode", "ratio_range", "override", "bbox_clip_border"}),
    "RandomFlip": frozenset({"flip_ratio"}),
    "LoadImageFromFile": frozenset({"file_client_args"}),
    "LoadAnnotations": frozenset({"file_client_args"}),
}
# Steps whose size argument changed axis order between the generations.
_AXIS_ORDER_KEYS = {"Pad": "size", "RandomCrop": "crop_size"}


def _evidence(step: Any) -> tuple[str | None, str | None]:
    """``(why 3.x, why 2.x)`` for one step config (``None`` where it says nothing)."""
    if not isinstance(step, Mapping) or not isinstance(step.get("type"), str):
        return None, None
    kind = step["type"]
    mm3 = f"{kind} (a 3.x-only step)" if kind in _MM3_TYPES else None
    mm2 = f"{kind} (a 2.x-only step)" if kind in _MM2_TYPES else None
    keys3 = sorted(set(step) & _MM3_ARGS.get(kind, frozenset()))
    keys2 = sorted(set(step) & _MM2_ARGS.get(kind, frozenset()))
    if keys3 and mm3 is None:
        mm3 = f"{kind}({keys3[0]}=...) (the 3.x spelling)"
    if keys2 and mm2 is None:
        mm2 = f"{kind}({keys2[0]}=...) (the 2.x spelling)"
    return mm3, mm2


def pipeline_dialect(steps: Sequence[Any], cfg_path: str = "pipeline") -> str | None:
    """``'mmdet3'``, ``'mmdet2'`` or ``None`` (nothing generation-specific) for a list of step configs.

    Raises ``ValueError`` when the list mixes steps or spellings of both generations.
    """
    why3: list[str] = []
    why2: list[str] = []
    for i, step in enumerate(steps):
        mm3, mm2 = _evidence(step)
        if mm3:
            why3.append(f"{cfg_path}[{i}] {mm3}")
        if mm2:
            why2.append(f"{cfg_path}[{i}] {mm2}")
    if why3 and why2:
        raise ValueError(
            f"{cfg_path} mixes MMDetection 3.x and 2.x steps: {why3[0]} and {why2[0]}. Some keys changed "
            "meaning between the generations (Pad size and RandomCrop crop_size are (h, w) in 2.x, (w, h) "
            "in 3.x), so write the whole pipeline in one: 3.x ends in PackDetInputs (normalisation in "
            "model.data_preprocessor), 2.x in Normalize + DefaultFormatBundle + Collect.")
    if why3:
        return MMDET3
    if why2:
        return MMDET2
    return None


def prepare_steps(steps: Sequence[Any], dialect: str | None, cfg_path: str = "pipeline") -> list[Any]:
    """Copies of ``steps`` with the generation's axis order passed to ``Pad``/``RandomCrop`` and, in a 3.x
    pipeline, ``LoadAnnotations(empty_without_ann=True)`` (3.x loads empty ground truth for an image
    without annotations).

    In a 3.x pipeline, refuses ``LoadAnnotations(with_seg=True)``: the 3.x batch form
    (``PackDetInputs``) carries boxes, labels and instance masks, not label maps.
    """
    out: list[Any] = []
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            out.append(step)
            continue
        step = dict(step)
        kind = step.get("type")
        if dialect == MMDET3 and kind in _AXIS_ORDER_KEYS and "axis_order" not in step:
            step["axis_order"] = "wh"
        if dialect == MMDET3 and kind == "LoadAnnotations":
            step.setdefault("empty_without_ann", True)
            if step.get("with_seg"):
                raise ValueError(
                    f"{cfg_path}[{i}] LoadAnnotations(with_seg=True): kiln's MMDetection 3.x data path "
                    "(PackDetInputs) carries boxes, labels and instance masks; label maps in the 3.x form "
                    "are not implemented. Remove with_seg=True, or write the pipeline in the 2.x form "
                    "(DefaultFormatBundle + Collect), which carries them.")
        out.append(step)
    return out
