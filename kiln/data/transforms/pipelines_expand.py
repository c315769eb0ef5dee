"""``Expand``: SSD's zoom-out augmentation (MMDetection 2.x and 3.x), through the shared geometry core."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kiln.registry import TRANSFORMS

from .pipelines_geometric import apply_geometry
from .transform import PadTransform

__all__ = ["Expand"]


@TRANSFORMS.register_module()
class Expand:
    """With probability ``prob``, place the image at a random position on a canvas ``ratio`` times its size
    (``ratio`` uniform in ``ratio_range``) filled with ``mean``: objects become smaller, which teaches the
    detector small objects (SSD's "zoom out").

    Boxes and masks move with the image (:func:`apply_geometry`); label maps are filled with
    ``seg_ignore_label``.

    Args:
        mean: fill colour, given in the order of the *normalisation* config (RGB when ``to_rgb``), as
            MMDetection's configs pass ``img_norm_cfg['mean']`` / the data preprocessor's mean.
        to_rgb: the loaded image is BGR and ``mean`` RGB: the fill is ``mean`` reversed.
        ratio_range: ``(min, max)`` canvas/image side ratio, ``min >= 1``.
        seg_ignore_label: fill of label maps (needed only when the sample has them).
        prob: probability of expanding.

    Example::

        >>> results = dict(img=np.zeros((10, 20, 3), np.uint8), bbox_fields=['gt_bboxes'],
        ...                gt_bboxes=np.array([[0, 0, 5, 5]], np.float32))
        >>> out = Expand(ratio_range=(2, 2), prob=1.0)(results)
        >>> out['img'].shape[:2]
        (20, 40)
    """

    def __init__(
        self,
        mean: Sequence[float] = (0, 0, 0),
        to_rgb: bool = True,
        ratio_range: Sequence[float] = (1, 4),
        seg_ignore_label: int | None = None,
        prob: float = 0.5,
    ) -> None:
        if len(ratio_range) != 2 or not 1 <= float(ratio_range[0]) <= float(ratio_range[1]):
            raise ValueError(
                f"Expand ratio_range={tuple(ratio_range)!r} must be (min, max) with 1 <= min <= max, "
                "e.g. (1, 4)."
            )
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"Expand prob={prob!r} must be in [0, 1].")
        self.to_rgb = bool(to_rgb)
        self.mean = np.asarray(mean, dtype=np.float64)[::-1] if to_rgb else np.asarray(mean, dtype=np.float64)
        self.min_ratio, self.max_ratio = float(ratio_range[0]), float(ratio_range[1])
        self.seg_ignore_label = seg_ignore_label
        self.prob = float(prob)

    def __call__(self, results: dict) -> dict:
        if np.random.uniform(0, 1) > self.prob:
            return results
        if results.get("seg_fields") and self.seg_ignore_label is None:
            raise ValueError(
                "Expand: this sample has label maps (seg_fields) but seg_ignore_label=None; give "
                "seg_ignore_label=255 (the value the expanded border gets)."
            )
        img = results["img"]
        h, w = img.shape[:2]
        ratio = np.random.uniform(self.min_ratio, self.max_ratio)
        new_h, new_w = int(h * ratio), int(w * ratio)
        left = int(np.random.uniform(0, w * ratio - w))
        top = int(np.random.uniform(0, h * ratio - h))
        channels = 1 if img.ndim == 2 else img.shape[2]
        fill = self.mean if len(self.mean) == channels else float(self.mean[0])
        tfm = PadTransform(
            left,
            top,
            new_w - w - left,
            new_h - h - top,
            orig_w=w,
            orig_h=h,
            pad_value=fill,
            seg_pad_value=self.seg_ignore_label if self.seg_ignore_label is not None else 0,
        )
        apply_geometry(results, tfm)
        results["img_shape"] = results["img"].shape
        results["pad_shape"] = results["img"].shape
        return results

    def __repr__(self) -> str:
        return (
            f"Expand(mean={self.mean.tolist()}, to_rgb={self.to_rgb}, ratio_range=({self.min_ratio}, "
            f"{self.max_ratio}), seg_ignore_label={self.seg_ignore_label}, prob={self.prob})"
        )
