"""From any publisher's state dict to kiln names, and into a model with a report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .align import LoadReport, align_state_dict
from .anchors import anchor_slots
from .caffe2 import caffe2_to_detectron2
from .detectron2 import detectron2_to_kiln
from .layouts import LAYOUTS, detect_layout
from .torchvision import torchvision_detection_to_kiln

__all__ = ["to_kiln_names", "convert_for_model"]


def to_kiln_names(
    state: Mapping[str, Any], layout: str | None = None, *,
    anchor_slots: dict[str, list[tuple[float, float]]] | None = None,
) -> tuple[dict[str, Any], str, list[str]]:
    """Rename ``state`` (any layout of :data:`LAYOUTS`) into kiln's names.

    Args:
        state: the state dict.
        layout: force a layout instead of detecting it from the keys.
        anchor_slots: the target model's anchors per head (:func:`.anchors.anchor_slots`), to put
            per-anchor outputs in its order; default: kiln's default order.

    Returns:
        ``(state, layout, notes)``.
    """
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    layout = layout or detect_layout(state)
    if layout not in LAYOUTS:
        raise ValueError(f"checkpoint layout {layout!r}: expected one of {sorted(LAYOUTS)}")
    notes: list[str] = []
    if layout == "caffe2":
        state, notes = caffe2_to_detectron2(state)
    if layout in ("caffe2", "detectron2"):
        state, more = detectron2_to_kiln(state, anchor_slots)
        notes += more
    elif layout == "torchvision_detection":
        state, notes = torchvision_detection_to_kiln(state, anchor_slots)
    if layout in ("caffe2", "torchvision_classification"):
        dropped = [k for k in state if k.startswith(("fc.", "fc1000.", "linear."))]
        for k in dropped:
            state.pop(k)
        if dropped:
            notes.append("ImageNet classifier (fc) dropped")
    return dict(state), layout, notes


def convert_for_model(
    state: Mapping[str, Any], model_state: Mapping[str, Any], source: str = "checkpoint",
    layout: str | None = None, *, model: Any = None,
) -> tuple[dict[str, Any], LoadReport]:
    """Convert ``state`` to kiln names and match it onto ``model_state`` (a model's ``state_dict()``).

    Pass the ``model`` too when it has anchor heads: its anchor generators say in which order per-anchor
    outputs must be laid out.

    Returns:
        ``(aligned, report)``: ``aligned`` holds only model keys with values of the model's shapes, ready
        for ``model.load_state_dict(aligned, strict=False)``; ``report`` says what loaded and what not.
    """
    plain = [k[len("module."):] if k.startswith("module.") else k for k in state]
    if layout is None and plain and all(k in model_state for k in plain):
        layout = "kiln"  # the model already uses the checkpoint's names (its own, or a module named alike)
    converted, layout, notes = to_kiln_names(state, layout, anchor_slots=anchor_slots(model))
    if model is not None and layout == "kiln":
        from kiln.models.legacy_names import rename_legacy_keys

        converted = rename_legacy_keys(model, converted)  # checkpoints from before the MMDetection names
    aligned, renamed, unexpected, mismatch = align_state_dict(converted, model_state)
    skipped = {m for m, _, _ in mismatch}
    # BatchNorm's num_batches_tracked counts training steps and a Detectron2-style head's loss_normalizer
    # is a running average of the training batches' foreground count (Detectron2 keeps it out of its
    # state dict): no publisher's weights carry or need them, and the report counts weights.
    def counted(k: str) -> bool:
        return not k.endswith(("num_batches_tracked", "loss_normalizer"))

    missing = [k for k in model_state if k not in aligned and k not in skipped and counted(k)]
    report = LoadReport(source=source, layout=layout, num_model_keys=sum(map(counted, model_state)),
                        loaded=[k for k in aligned if counted(k)], renamed=renamed, missing=missing,
                        unexpected=unexpected, shape_mismatch=mismatch, notes=notes)
    return aligned, report
