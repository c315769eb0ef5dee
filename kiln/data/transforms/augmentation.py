"""Random augmentations (Detectron2 style): policies that *choose* a :class:`Transform`.

An :class:`Augmentation` looks at its inputs (usually the image, sometimes the boxes) and returns
a deterministic :class:`~kiln.data.transforms.transform.Transform`; randomness is drawn from
python ``random``/``np.random`` only, which the data loader seeds per sample, so results are
reproducible and resumable. :class:`AugInput` carries image, boxes and label map through a chain.

Example::

    >>> import numpy as np
    >>> augs = AugmentationList([ResizeShortestEdge(32, max_size=64), RandomFlip(prob=1.0)])
    >>> inp = AugInput(np.zeros((16, 24, 3), np.uint8), boxes=np.array([[0.0, 0.0, 12.0, 8.0]]))
    >>> tfm = augs(inp)
    >>> inp.image.shape, inp.boxes.tolist()
    ((32, 48, 3), [[24.0, 0.0, 48.0, 16.0]])
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from .transform import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    PadTransform,
    ResizeTransform,
    RotationTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

__all__ = [
    "Augmentation",
    "AugInput",
    "AugmentationList",
    "apply_augmentations",
    "Resize",
    "ResizeShortestEdge",
    "ResizeScale",
    "RandomFlip",
    "RandomCrop",
    "FixedSizeCrop",
    "RandomRotation",
    "RandomBrightness",
    "RandomContrast",
    "RandomSaturation",
    "RandomApply",
]


class AugInput:
    """The data an augmentation may read and that its transform moves.

    Attributes:
        image: ``H x W`` or ``H x W x C`` numpy array.
        boxes: optional ``N x 4`` XYXY float array.
        sem_seg: optional ``H x W`` label map.
    """

    def __init__(self, image: np.ndarray, *, boxes: np.ndarray | None = None,
                 sem_seg: np.ndarray | None = None) -> None:
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            raise ValueError(f"AugInput.image must be an HxW or HxWxC numpy array, got "
                             f"{type(image).__name__} {getattr(image, 'shape', '')}")
        self.image = image
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.sem_seg = sem_seg

    def transform(self, tfm: Transform) -> None:
        """Apply ``tfm`` in place to every field that is set."""
        self.image = tfm.apply_image(self.image)
        if self.boxes is not None:
            self.boxes = tfm.apply_box(self.boxes)
        if self.sem_seg is not None:
            self.sem_seg = tfm.apply_segmentation(self.sem_seg)


class Augmentation:
    """Base class: implement ``get_transform(self, image)`` (or name other ``AugInput`` fields in
    ``input_args``, e.g. ``('image', 'boxes')``) returning a :class:`Transform`.

    Calling an augmentation on an :class:`AugInput` picks the transform, applies it in place and
    returns it, so the caller can move annotations the input does not carry.
    """

    input_args: tuple[str, ...] = ("image",)

    def get_transform(self, *args: Any) -> Transform:
        """Return the deterministic transform to apply to these inputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_transform")

    def __call__(self, aug_input: AugInput) -> Transform:
        args = []
        for name in self.input_args:
            if not hasattr(aug_input, name):
                raise AttributeError(f"{type(self).__name__} needs '{name}' from its AugInput, which has "
                                     f"{sorted(vars(aug_input))}")
            args.append(getattr(aug_input, name))
        tfm = self.get_transform(*args)
        if not isinstance(tfm, Transform):
            raise TypeError(f"{type(self).__name__}.get_transform must return a Transform, got {tfm!r}")
        aug_input.transform(tfm)
        return tfm

    @staticmethod
    def _rand_range(low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        return np.random.uniform(low, high, size)

    def __repr__(self) -> str:
        try:
            params = inspect.signature(type(self).__init__).parameters
            parts = [f"{n}={getattr(self, n)!r}" for n in params if n != "self" and hasattr(self, n)]
            return f"{type(self).__name__}({', '.join(parts)})"
        except (TypeError, ValueError):
            return super().__repr__()


class AugmentationList(Augmentation):
    """Apply augmentations in order; returns the :class:`TransformList` of what was done."""

    def __init__(self, augs: Sequence[Augmentation | Transform]) -> None:
        self.augs = [a if isinstance(a, Augmentation) else _TransformAsAug(a) for a in augs]

    def __call__(self, aug_input: AugInput) -> TransformList:
        return TransformList([aug(aug_input) for aug in self.augs])

    def __repr__(self) -> str:
        return f"AugmentationList({self.augs!r})"


class _TransformAsAug(Augmentation):
    def __init__(self, tfm: Transform) -> None:
        if not isinstance(tfm, Transform):
            raise TypeError(f"Expected an Augmentation or Transform, got {type(tfm).__name__}: {tfm!r}")
        self.tfm = tfm

    def get_transform(self, image: np.ndarray) -> Transform:
        return self.tfm


def apply_augmentations(augs: Sequence[Augmentation | Transform], image: np.ndarray
                        ) -> tuple[np.ndarray, TransformList]:
    """Augment ``image``; return the new image and the transforms applied."""
    inp = AugInput(image)
    tfms = AugmentationList(augs)(inp)
    return inp.image, tfms


class RandomApply(Augmentation):
    """Apply ``aug`` with probability ``prob``, else do nothing."""

    def __init__(self, aug: Augmentation, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomApply prob must be in [0, 1], got {prob}")
        self.aug, self.prob = aug, prob
        self.input_args = aug.input_args

    def get_transform(self, *args: Any) -> Transform:
        if self._rand_range() < self.prob:
            return self.aug.get_transform(*args)
        return NoOpTransform()


class Resize(Augmentation):
    """Resize to a fixed ``(h, w)`` (an int means square)."""

    def __init__(self, shape: int | Sequence[int], interp: str | int = "bilinear") -> None:
        self.shape = (shape, shape) if isinstance(shape, int) else tuple(shape)
        self.interp = interp

    def get_transform(self, image: np.ndarray) -> Transform:
        return ResizeTransform(image.shape[0], image.shape[1], self.shape[0], self.shape[1], self.interp)


def _shortest_edge_size(h: int, w: int, short: float, max_size: float) -> tuple[int, int]:
    scale = short / min(h, w)
    new_h, new_w = h * scale, w * scale
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


class ResizeShortestEdge(Augmentation):
    """Scale so the short edge is ``short_edge_length`` and the long edge at most ``max_size``.

    Args:
        short_edge_length: an int, or with ``sample_style='range'`` a ``(min, max)`` pair sampled
            uniformly, or with ``'choice'`` a list to pick from.
    """

    def __init__(self, short_edge_length: int | Sequence[int], max_size: float = float("inf"),
                 sample_style: str = "range", interp: str | int = "bilinear") -> None:
        if sample_style not in ("range", "choice"):
            raise ValueError(f"ResizeShortestEdge sample_style must be 'range' or 'choice', "
                             f"got {sample_style!r}")
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        self.short_edge_length = tuple(short_edge_length)
        if sample_style == "range" and len(self.short_edge_length) != 2:
            raise ValueError(f"ResizeShortestEdge with sample_style='range' needs (min, max), got "
                             f"{short_edge_length!r}; use sample_style='choice' for a list")
        self.max_size, self.sample_style, self.interp = max_size, sample_style, interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.sample_style == "range":
            size = np.random.randint(self.short_edge_length[0], self.short_edge_length[1] + 1)
        else:
            size = self.short_edge_length[np.random.randint(len(self.short_edge_length))]
        if size == 0:
            return NoOpTransform()
        new_h, new_w = _shortest_edge_size(h, w, size, self.max_size)
        return ResizeTransform(h, w, new_h, new_w, self.interp)


class ResizeScale(Augmentation):
    """Large-scale jitter: scale the image to fit ``target_height x target_width`` times a factor
    drawn uniformly from ``[min_scale, max_scale]`` (aspect ratio kept). Pair with
    :class:`FixedSizeCrop`."""

    def __init__(self, min_scale: float, max_scale: float, target_height: int, target_width: int,
                 interp: str | int = "bilinear") -> None:
        self.min_scale, self.max_scale = min_scale, max_scale
        self.target_height, self.target_width, self.interp = target_height, target_width, interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        factor = self._rand_range(self.min_scale, self.max_scale)
        scale = min(self.target_height * factor / h, self.target_width * factor / w)
        new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        return ResizeTransform(h, w, new_h, new_w, self.interp)


class RandomFlip(Augmentation):
    """Flip horizontally (default) or vertically with probability ``prob``."""

    def __init__(self, prob: float = 0.5, *, horizontal: bool = True, vertical: bool = False) -> None:
        if horizontal and vertical:
            raise ValueError("RandomFlip cannot flip both ways at once; use two RandomFlip augmentations.")
        if not horizontal and not vertical:
            raise ValueError("RandomFlip needs horizontal=True or vertical=True.")
        self.prob, self.horizontal, self.vertical = prob, horizontal, vertical

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self._rand_range() < self.prob:
            return HFlipTransform(w) if self.horizontal else VFlipTransform(h)
        return NoOpTransform()


class RandomCrop(Augmentation):
    """Crop a random window (Detectron2's ``INPUT.CROP``; MMDetection 3.x's RandomCrop agrees).

    Args:
        crop_type: ``'relative'`` (``crop_size`` is a fraction ``(h, w)`` of the image),
            ``'relative_range'`` (fractions drawn uniformly from ``[crop_size[i], 1]``),
            ``'absolute'`` (``(h, w)`` pixels, clamped to the image) or ``'absolute_range'``
            (``crop_size`` is ``(min, max)`` pixels: each side drawn from ``[min(side, crop_size[0]),
            min(side, crop_size[1])]``, so an image smaller than the minimum is kept whole).
        crop_size: two numbers, as above.
    """

    _TYPES = ("relative", "relative_range", "absolute", "absolute_range")

    def __init__(self, crop_type: str, crop_size: Sequence[float]) -> None:
        if crop_type not in self._TYPES:
            raise ValueError(f"RandomCrop crop_type must be one of {self._TYPES}, got {crop_type!r} "
                             "(INPUT.CROP.TYPE).")
        crop_size = tuple(crop_size)
        if len(crop_size) != 2:
            raise ValueError(f"RandomCrop crop_size must be two numbers, got {crop_size!r} "
                             "(INPUT.CROP.SIZE).")
        if crop_type.startswith("relative") and not all(0 < float(c) <= 1 for c in crop_size):
            raise ValueError(f"RandomCrop crop_type={crop_type!r} takes fractions in (0, 1], got "
                             f"{crop_size!r} (INPUT.CROP.SIZE).")
        if crop_type.startswith("absolute") and not all(c >= 1 for c in crop_size):
            raise ValueError(f"RandomCrop crop_type={crop_type!r} takes sizes in pixels (>= 1), got "
                             f"{crop_size!r} (INPUT.CROP.SIZE).")
        if crop_type == "absolute_range" and crop_size[0] > crop_size[1]:
            raise ValueError(f"RandomCrop absolute_range crop_size is (min, max) pixels; got min "
                             f"{crop_size[0]} > max {crop_size[1]} (INPUT.CROP.SIZE).")
        self.crop_type, self.crop_size = crop_type, crop_size

    def get_crop_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Return the ``(h, w)`` of the window for an image of ``image_size``."""
        h, w = image_size
        if self.crop_type == "relative":
            ch, cw = self.crop_size
            return max(1, int(h * ch + 0.5)), max(1, int(w * cw + 0.5))
        if self.crop_type == "relative_range":
            lo = np.asarray(self.crop_size, dtype=np.float32)
            ch, cw = lo + np.random.rand(2) * (1 - lo)
            return max(1, int(h * ch + 0.5)), max(1, int(w * cw + 0.5))
        if self.crop_type == "absolute":
            return min(int(self.crop_size[0]), h), min(int(self.crop_size[1]), w)
        lo, hi = int(self.crop_size[0]), int(self.crop_size[1])
        ch = np.random.randint(min(h, lo), min(h, hi) + 1)
        cw = np.random.randint(min(w, lo), min(w, hi) + 1)
        return int(ch), int(cw)

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        ch, cw = self.get_crop_size((h, w))
        y0 = np.random.randint(h - ch + 1)
        x0 = np.random.randint(w - cw + 1)
        return CropTransform(x0, y0, cw, ch, orig_w=w, orig_h=h)


class FixedSizeCrop(Augmentation):
    """Crop to at most ``crop_size`` ``(h, w)`` at a random offset, then (``pad=True``) pad the
    bottom/right to exactly ``crop_size`` with ``pad_value``."""

    def __init__(self, crop_size: Sequence[int], pad: bool = True, pad_value: float = 128.0,
                 seg_pad_value: int = 255) -> None:
        self.crop_size, self.pad = tuple(crop_size), pad
        self.pad_value, self.seg_pad_value = pad_value, seg_pad_value

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        th, tw = self.crop_size
        tfms: list[Transform] = []
        ch, cw = min(h, th), min(w, tw)
        if (ch, cw) != (h, w):
            y0 = int(round(self._rand_range() * (h - ch)))
            x0 = int(round(self._rand_range() * (w - cw)))
            tfms.append(CropTransform(x0, y0, cw, ch, orig_w=w, orig_h=h))
        if self.pad and (ch, cw) != (th, tw):
            tfms.append(PadTransform(0, 0, tw - cw, th - ch, orig_w=cw, orig_h=ch,
                                     pad_value=self.pad_value, seg_pad_value=self.seg_pad_value))
        return TransformList(tfms)


class RandomRotation(Augmentation):
    """Rotate by an angle (degrees, counter-clockwise) drawn from ``angle``: a ``(min, max)`` range
    (``sample_style='range'``) or a list (``'choice'``)."""

    def __init__(self, angle: float | Sequence[float], expand: bool = True,
                 center: Sequence[float] | None = None, sample_style: str = "range",
                 interp: str | int = "bilinear") -> None:
        if sample_style not in ("range", "choice"):
            raise ValueError(f"RandomRotation sample_style must be 'range' or 'choice', got {sample_style!r}")
        if isinstance(angle, (int, float)):
            angle = (angle, angle)
        self.angle, self.expand, self.center = tuple(angle), expand, center
        self.sample_style, self.interp = sample_style, interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.sample_style == "range":
            angle = float(self._rand_range(self.angle[0], self.angle[1]))
        else:
            angle = float(self.angle[np.random.randint(len(self.angle))])
        if angle % 360 == 0:
            return NoOpTransform()
        return RotationTransform(h, w, angle, expand=self.expand, center=self.center, interp=self.interp)


class _RandomBlend(Augmentation):
    def __init__(self, intensity_min: float, intensity_max: float) -> None:
        if intensity_min > intensity_max:
            raise ValueError(f"{type(self).__name__}: intensity_min {intensity_min} > intensity_max "
                             f"{intensity_max}")
        self.intensity_min, self.intensity_max = intensity_min, intensity_max


class RandomBrightness(_RandomBlend):
    """Scale pixel values by a factor drawn from ``[intensity_min, intensity_max]``
    (``1`` keeps the image; ``0`` gives black)."""

    def get_transform(self, image: np.ndarray) -> Transform:
        w = float(self._rand_range(self.intensity_min, self.intensity_max))
        return BlendTransform(0.0, src_weight=1 - w, dst_weight=w)


class RandomContrast(_RandomBlend):
    """Blend with the image mean by a factor drawn from ``[intensity_min, intensity_max]``."""

    def get_transform(self, image: np.ndarray) -> Transform:
        w = float(self._rand_range(self.intensity_min, self.intensity_max))
        return BlendTransform(float(image.mean()), src_weight=1 - w, dst_weight=w)


class RandomSaturation(_RandomBlend):
    """Blend with the grayscale image by a factor drawn from ``[intensity_min, intensity_max]``
    (``0`` gives gray). ``image_format`` is the channel order of 3-channel inputs."""

    def __init__(self, intensity_min: float, intensity_max: float, image_format: str = "BGR") -> None:
        super().__init__(intensity_min, intensity_max)
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"RandomSaturation image_format must be 'BGR' or 'RGB', got {image_format!r}")
        self.image_format = image_format

    def get_transform(self, image: np.ndarray) -> Transform:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"RandomSaturation needs an HxWx3 image, got shape {image.shape}")
        weights = np.array([0.114, 0.587, 0.299] if self.image_format == "BGR" else [0.299, 0.587, 0.114],
                           dtype=np.float32)
        gray = (image.astype(np.float32) @ weights)[..., None]
        w = float(self._rand_range(self.intensity_min, self.intensity_max))
        return BlendTransform(gray, src_weight=1 - w, dst_weight=w)
