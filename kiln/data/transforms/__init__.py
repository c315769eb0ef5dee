"""Transforms: deterministic primitives, random augmentations and MM-style config pipelines.

* :mod:`.transform` — :class:`Transform` primitives (the one geometry core).
* :mod:`.augmentation` — Detectron2-style :class:`Augmentation` policies and :class:`AugInput`.
* :mod:`.pipelines` / :mod:`.pipelines_geometric` — steps registered in ``TRANSFORMS`` for
  ``train_pipeline``/``test_pipeline`` configs.

The MM step ``RandomFlip``/``Resize``/``RandomCrop`` share names with augmentations; here the
package exports the augmentations under their names and the pipeline steps are reached through
``TRANSFORMS`` (or :mod:`.pipelines_geometric`).
"""

from . import pipelines, pipelines_geometric  # noqa: F401  (register TRANSFORMS)
from .augmentation import (
    AugInput,
    Augmentation,
    AugmentationList,
    FixedSizeCrop,
    RandomApply,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomSaturation,
    Resize,
    ResizeScale,
    ResizeShortestEdge,
    apply_augmentations,
)
from .pipelines import (
    Collect,
    Compose,
    DefaultFormatBundle,
    ImageToTensor,
    LoadAnnotations,
    LoadImageFromFile,
    Normalize,
    PhotoMetricDistortion,
    ToTensor,
)
from .pipelines_geometric import MinIoURandomCrop, MultiScaleFlipAug, Pad, apply_geometry
from .transform import (
    AffineTransform,
    BlendTransform,
    ChannelPermuteTransform,
    ColorTransform,
    CropTransform,
    HFlipTransform,
    HueSaturationTransform,
    NoOpTransform,
    PadTransform,
    ResizeTransform,
    RotationTransform,
    Transform,
    TransformList,
    VFlipTransform,
    clip_boxes,
)

__all__ = [
    "AffineTransform", "AugInput", "Augmentation", "AugmentationList", "BlendTransform",
    "ChannelPermuteTransform", "Collect", "ColorTransform", "Compose", "CropTransform",
    "DefaultFormatBundle", "FixedSizeCrop", "HFlipTransform", "HueSaturationTransform", "ImageToTensor",
    "LoadAnnotations", "LoadImageFromFile", "MinIoURandomCrop", "MultiScaleFlipAug", "NoOpTransform",
    "Normalize", "Pad", "PadTransform", "PhotoMetricDistortion", "RandomApply", "RandomBrightness",
    "RandomContrast", "RandomCrop", "RandomFlip", "RandomRotation", "RandomSaturation", "Resize",
    "ResizeScale", "ResizeShortestEdge", "ResizeTransform", "RotationTransform", "ToTensor", "Transform",
    "TransformList", "VFlipTransform", "apply_augmentations", "apply_geometry", "clip_boxes",
]
