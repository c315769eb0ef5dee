"""Transforms: deterministic primitives, random augmentations and MM-style config pipelines.

* :mod:`.transform` — :class:`Transform` primitives (the one geometry core).
* :mod:`.augmentation` — Detectron2-style :class:`Augmentation` policies and :class:`AugInput`.
* :mod:`.pipelines` / :mod:`.pipelines_geometric` — steps registered in ``TRANSFORMS`` for
  ``train_pipeline``/``test_pipeline`` configs (MMDetection 2.x and 3.x spellings);
  :mod:`.pipelines_mmdet3` — the 3.x-only steps (``PackDetInputs``, ``TestTimeAug``, resize
  variants); :mod:`.pipelines_tta` — test-time augmentation wrappers (``MultiScaleFlipAug``,
  ``TestTimeAug``); :mod:`.pipelines_proposals` — precomputed proposals (``LoadProposals``,
  ``ProposalBroadcaster``); :mod:`.dialect` — which generation a pipeline is written in.

The MM step ``RandomFlip``/``Resize``/``RandomCrop`` share names with augmentations; here the
package exports the augmentations under their names and the pipeline steps are reached through
``TRANSFORMS`` (or :mod:`.pipelines_geometric`).
"""

from . import (  # noqa: F401  (register TRANSFORMS)
    pipelines,
    pipelines_expand,
    pipelines_geometric,
    pipelines_mmdet3,
    pipelines_proposals,
    pipelines_tta,
)
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
from .pipelines_expand import Expand
from .pipelines_geometric import MinIoURandomCrop, Pad, apply_geometry
from .pipelines_mmdet3 import FilterAnnotations, PackDetInputs, RandomChoiceResize, RandomResize
from .pipelines_proposals import LoadProposals, ProposalBroadcaster, ToDataContainer
from .pipelines_tta import MultiScaleFlipAug, TestTimeAug
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
    "DefaultFormatBundle", "FilterAnnotations", "FixedSizeCrop", "HFlipTransform", "HueSaturationTransform",
    "ImageToTensor",
    "LoadAnnotations", "LoadImageFromFile", "LoadProposals", "MinIoURandomCrop", "MultiScaleFlipAug",
    "Expand",
    "NoOpTransform",
    "Normalize", "PackDetInputs", "Pad", "PadTransform", "RandomChoiceResize", "RandomResize",
    "TestTimeAug", "PhotoMetricDistortion", "ProposalBroadcaster", "RandomApply", "RandomBrightness",
    "RandomContrast", "RandomCrop", "RandomFlip", "RandomRotation", "RandomSaturation", "Resize",
    "ResizeScale", "ResizeShortestEdge", "ResizeTransform", "RotationTransform", "ToDataContainer",
    "ToTensor", "Transform",
    "TransformList", "VFlipTransform", "apply_augmentations", "apply_geometry", "clip_boxes",
]
