"""Test-time augmentation wrappers: ``MultiScaleFlipAug`` (MMDetection 2.x) and ``TestTimeAug`` (3.x).

Both run an inner pipeline once per view of an image and return every output key as a list, one
entry per view.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from kiln.registry import TRANSFORMS

from .dialect import MMDET2, MMDET3
from .pipelines import Compose
from .pipelines_geometric import FLIP_DIRECTIONS, as_scales

__all__ = ["MultiScaleFlipAug", "TestTimeAug"]


@TRANSFORMS.register_module()
class MultiScaleFlipAug:
    """Test-time augmentation: run ``transforms`` once per (scale, flip) combination and return
    each output key as a list, one entry per combination (scales outer, flips inner).

    Args:
        transforms: the inner pipeline; its Resize/RandomFlip take scale/flip from here.
        img_scale: a ``(w, h)`` pair or list of pairs; or instead ``scale_factor`` (float or list).
        flip: also run flipped versions, in each of ``flip_direction``.
    """

    def __init__(self, transforms: Sequence[Mapping], img_scale: Any = None,
                 scale_factor: float | Sequence[float] | None = None, flip: bool = False,
                 flip_direction: str | Sequence[str] = "horizontal") -> None:
        if (img_scale is None) == (scale_factor is None):
            raise ValueError("MultiScaleFlipAug needs exactly one of img_scale or scale_factor")
        self.transforms = Compose(transforms, cfg_path="MultiScaleFlipAug.transforms", dialect=MMDET2)
        if img_scale is not None:
            self.scales: list[Any] = as_scales(img_scale, "MultiScaleFlipAug img_scale")
            self.scale_key = "scale"
        else:
            self.scales = [float(s) for s in (scale_factor if isinstance(scale_factor, (list, tuple))
                                               else [scale_factor])]
            self.scale_key = "scale_factor"
        self.flip = flip
        self.flip_direction = [flip_direction] if isinstance(flip_direction, str) else list(flip_direction)
        for d in self.flip_direction:
            if d not in FLIP_DIRECTIONS:
                raise ValueError(f"MultiScaleFlipAug flip_direction must be in {FLIP_DIRECTIONS}, got {d!r}")

    def __call__(self, results: dict) -> dict:
        combos = [(False, None)] + ([(True, d) for d in self.flip_direction] if self.flip else [])
        outputs: dict[str, list] = {}
        for scale in self.scales:
            for flip, direction in combos:
                r = copy.copy(results)  # shallow: steps replace values, they never mutate them in place
                for key in ("img_fields", "bbox_fields", "mask_fields", "seg_fields"):
                    if key in r:
                        r[key] = list(r[key])
                r[self.scale_key] = scale
                r["flip"], r["flip_direction"] = flip, direction
                out = self.transforms(r)
                if out is None:
                    raise RuntimeError("A step inside MultiScaleFlipAug rejected the sample; test-time "
                                       "pipelines must not drop images.")
                for key, value in out.items():
                    outputs.setdefault(key, []).append(value)
        return outputs

    def __repr__(self) -> str:
        return (f"MultiScaleFlipAug(transforms={self.transforms!r}, {self.scale_key}={self.scales}, "
                f"flip={self.flip}, flip_direction={self.flip_direction})")


@TRANSFORMS.register_module()
class TestTimeAug:
    """Run every combination of the step alternatives and return each output key as a list.

    ``transforms`` is a list of lists: one step is taken from each inner list, in order, for every
    combination (the first list varies slowest). With ``PackDetInputs`` last the output is
    ``{'inputs': [view tensors], 'data_samples': [DetDataSample per view]}``, the TTA form of
    docs/architecture.md.

    Example::

        >>> tta = TestTimeAug(transforms=[                                  # doctest: +SKIP
        ...     [dict(type='Resize', scale=s, keep_ratio=True) for s in [(1333, 800), (666, 400)]],
        ...     [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
        ...     [dict(type='PackDetInputs')]])
    """

    def __init__(self, transforms: Sequence[Sequence[Mapping | Any]]) -> None:
        if isinstance(transforms, (str, Mapping)) or not isinstance(transforms, Sequence) or not transforms:
            raise ValueError(f"TestTimeAug transforms must be a non-empty list of lists of steps, got "
                             f"{transforms!r}")
        self.options: list[list[Any]] = []
        for i, alternatives in enumerate(transforms):
            if isinstance(alternatives, Mapping):
                alternatives = [alternatives]
            built = Compose(list(alternatives), cfg_path=f"TestTimeAug.transforms[{i}]", dialect=MMDET3)
            if not built.transforms:
                raise ValueError(f"TestTimeAug.transforms[{i}] is empty; give at least one step.")
            self.options.append(built.transforms)

    def __len__(self) -> int:
        """Number of views per image."""
        n = 1
        for alternatives in self.options:
            n *= len(alternatives)
        return n

    def __call__(self, results: dict) -> dict:
        outputs: dict[str, list] = {}
        for combo in itertools.product(*self.options):
            r = copy.copy(results)  # shallow: steps replace values, they never mutate them in place
            for key in ("img_fields", "bbox_fields", "mask_fields", "seg_fields"):
                if key in r:
                    r[key] = list(r[key])
            for step in combo:
                r = step(r)
                if r is None:
                    raise RuntimeError(f"TestTimeAug: {step!r} rejected the sample; test-time pipelines "
                                       "must not drop images.")
            for key, value in r.items():
                outputs.setdefault(key, []).append(value)
        return outputs

    def __repr__(self) -> str:
        return f"TestTimeAug({len(self)} views, options={self.options!r})"
