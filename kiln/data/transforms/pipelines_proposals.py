"""Pipeline steps for precomputed proposals (Fast R-CNN): ``LoadProposals``, ``ProposalBroadcaster`` and
MMDetection 2.x's ``ToDataContainer``.

A dataset built with ``proposal_file=`` puts each image's proposals in ``results['proposals']``
(:mod:`kiln.data.datasets.proposals` reads the MMDetection and Detectron2 file layouts). ``LoadProposals``
trims them and registers them as a box field, so every geometric step (resize, flip, crop, pad) moves them
exactly as it moves the ground truth; the 3.x ``PackDetInputs`` packs them as ``data_samples.proposals`` and
the 2.x ``Collect(keys=[..., 'proposals'])`` keeps them next to ``img``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.registry import TRANSFORMS

from .dialect import MMDET3
from .pipelines import Compose

__all__ = ["LoadProposals", "ProposalBroadcaster", "ToDataContainer"]


@TRANSFORMS.register_module()
class LoadProposals:
    """Take the image's precomputed proposals: the first ``num_max_proposals`` (the files are ordered best
    first), as ``results['proposals']`` (float32 ``N×4``) and ``results['proposals_scores']`` (``N``; zeros
    when the file has no scores).

    The proposals join ``bbox_fields``, so later geometric steps transform them with the image (what
    MMDetection 2.x does, and what 3.x's ``ProposalBroadcaster`` asks for). An image without proposals gets
    an empty ``0×4`` array (MMDetection 2.x put one all-zero box there for its batch containers; kiln's
    RoI heads take an empty list).

    Args:
        num_max_proposals: keep at most this many (``None``: all). Detectron2's
            ``PRECOMPUTED_PROPOSAL_TOPK_TRAIN/TEST``.
    """

    def __init__(self, num_max_proposals: int | None = None) -> None:
        if num_max_proposals is not None and int(num_max_proposals) < 1:
            raise ValueError(
                f"LoadProposals num_max_proposals={num_max_proposals!r}: expected a positive count "
                "or None (all)."
            )
        self.num_max_proposals = None if num_max_proposals is None else int(num_max_proposals)

    def __call__(self, results: dict) -> dict:
        if "proposals" not in results:
            raise KeyError(
                "LoadProposals: the sample has no proposals; give the dataset proposal_file=... (a pickle "
                "of precomputed proposals, see kiln.data.datasets.proposals), or remove LoadProposals."
            )
        proposals = results["proposals"]
        if isinstance(proposals, Mapping):  # an MMDetection 3.x per-image dict
            scores = proposals.get("scores")
            proposals = proposals["bboxes"]
            if scores is not None:
                proposals = np.concatenate(
                    [
                        np.asarray(proposals, np.float32).reshape(-1, 4),
                        np.asarray(scores, np.float32).reshape(-1, 1),
                    ],
                    axis=1,
                )
        arr = np.asarray(proposals, np.float32)
        arr = arr.reshape(0, 4) if arr.size == 0 else arr
        if arr.ndim != 2 or arr.shape[1] not in (4, 5):
            raise ValueError(
                f"LoadProposals: proposals of image {results.get('filename')!r} have shape "
                f"{arr.shape}; expected N×4 (x1, y1, x2, y2) or N×5 (plus score)."
            )
        if self.num_max_proposals is not None:
            arr = arr[: self.num_max_proposals]
        results["proposals"] = np.ascontiguousarray(arr[:, :4])
        results["proposals_scores"] = (
            np.ascontiguousarray(arr[:, 4]) if arr.shape[1] == 5 else np.zeros(len(arr), np.float32)
        )
        fields = results.setdefault("bbox_fields", [])
        if "proposals" not in fields:
            fields.append("proposals")
        return results

    def __repr__(self) -> str:
        return f"LoadProposals(num_max_proposals={self.num_max_proposals})"


@TRANSFORMS.register_module()
class ProposalBroadcaster:
    """MMDetection 3.x: run ``transforms`` on the image, its ground truth and its proposals with the same
    random decisions (one flip decision, one scale for all).

    kiln's geometric steps move every box field of a sample with one transform, so running ``transforms``
    once on the sample moves ground truth and proposals together; this step checks that the proposals are
    there (``LoadProposals`` before it) so they cannot silently stay in the original image's pixels.
    """

    def __init__(self, transforms: Sequence[Mapping[str, Any] | Any] = ()) -> None:
        self.transforms = Compose(transforms, cfg_path="ProposalBroadcaster.transforms", dialect=MMDET3)

    def __call__(self, results: dict) -> dict | None:
        if "proposals" not in results.get("bbox_fields", []):
            raise KeyError(
                "ProposalBroadcaster: no proposals to transform; put dict(type='LoadProposals', "
                "num_max_proposals=...) before it (and give the dataset proposal_file=...)."
            )
        return self.transforms(results)

    def __repr__(self) -> str:
        return f"ProposalBroadcaster(transforms={self.transforms!r})"


@TRANSFORMS.register_module()
class ToDataContainer:
    """MMDetection 2.x: mark fields for MMCV's collate (``DataContainer``); in kiln, a check.

    MMCV's collate stacks a field into one batch tensor unless its ``DataContainer`` says ``stack=False``.
    kiln's collate never stacks: every field stays a per-image value in the batch list and the model pads
    and stacks images itself. So each field is already batched as ``stack=False`` asks, and a
    ``stack=True`` image field is stacked by the model; what this step does is check that each named field
    exists (a misspelt key fails here, as in MMCV) and refuse options kiln cannot honour
    (``cpu_only=True``: kiln moves every tensor field the model reads to its device; a ``padding_value``
    other than 0 or ``pad_dims`` other than 2: the model pads images with zeros).

    Args:
        fields: ``[dict(key='img', stack=True), dict(key='gt_bboxes'), ...]`` (MMCV's default).
    """

    _DEFAULT = (dict(key="img", stack=True), dict(key="gt_bboxes"), dict(key="gt_labels"))

    def __init__(self, fields: Sequence[Mapping[str, Any]] = _DEFAULT) -> None:
        self.fields = []
        for i, field in enumerate(fields):
            if not isinstance(field, Mapping) or "key" not in field:
                raise ValueError(
                    f"ToDataContainer fields[{i}]={field!r}: expected dict(key=NAME, stack=...)."
                )
            unknown = sorted(set(field) - {"key", "stack", "padding_value", "cpu_only", "pad_dims"})
            if unknown:
                raise ValueError(
                    f"ToDataContainer fields[{i}]: unknown options {unknown}; MMCV's DataContainer "
                    "takes stack, padding_value, cpu_only and pad_dims."
                )
            if field.get("cpu_only"):
                raise NotImplementedError(
                    f"ToDataContainer fields[{i}] ({field['key']!r}): cpu_only=True is not supported: kiln's "
                    "models move the fields they read to their device; remove cpu_only."
                )
            # Padding happens in the model (images: zeros after normalisation, MMCV's default): another
            # value or padded dimension count would be ignored, so it is refused.
            for key, default in (("padding_value", 0), ("pad_dims", 2)):
                if field.get(key, default) != default:
                    raise NotImplementedError(
                        f"ToDataContainer fields[{i}] ({field['key']!r}): {key}={field[key]!r} is not "
                        f"supported: kiln's models pad images with zeros over the last 2 dimensions (MMCV's "
                        f"defaults); remove {key}."
                    )
            self.fields.append(dict(field))

    def __call__(self, results: dict) -> dict:
        for field in self.fields:
            if field["key"] not in results:
                raise KeyError(
                    f"ToDataContainer: field '{field['key']}' is not in the results (keys: "
                    f"{sorted(results)}); add the step that produces it or remove the field."
                )
        return results

    def __repr__(self) -> str:
        return f"ToDataContainer(fields={self.fields})"
