"""``BBoxHead``: MMDetection's plain box head, a classifier and a regressor straight on the RoI features.

C4 Faster R-CNN uses it after the res5 shared head: ``with_avg_pool=True`` averages the 7×7×2048 res5
output to a 2048-vector (Detectron2's ``Res5ROIHeads`` does ``mean(dim=[2, 3])``), then ``fc_cls`` and
``fc_reg`` predict (Detectron2's ``FastRCNNOutputLayers``).
"""

from __future__ import annotations

from typing import Any

from kiln.registry import MODELS

from .bbox_head import ConvFCBBoxHead

__all__ = ["BBoxHead"]


@MODELS.register_module()
class BBoxHead(ConvFCBBoxHead):
    """A :class:`ConvFCBBoxHead` without shared convs or FCs: ``fc_cls`` and ``fc_reg`` on the (pooled)
    RoI features; parameter names ``fc_cls.*``/``fc_reg.*`` as MMDetection's.

    Args:
        with_avg_pool: average-pool the features to 1×1 first (C4); otherwise they are flattened
            (``in_channels × roi_feat_size²`` inputs).
        with_cls, with_reg: both predictors are always built; ``False`` (a head without one of them) is
            not implemented and refused.
        predict_box_type: ``'hbox'`` (axis-aligned boxes) only.
        **kwargs: :class:`ConvFCBBoxHead` arguments (``in_channels``, ``roi_feat_size``, ``num_classes``,
            ``bbox_coder``, ``reg_class_agnostic``, ``loss_cls``, ``loss_bbox``...).
    """

    def __init__(
        self,
        with_avg_pool: bool = False,
        with_cls: bool = True,
        with_reg: bool = True,
        predict_box_type: str = "hbox",
        **kwargs: Any,
    ) -> None:
        for key, value in (("with_cls", with_cls), ("with_reg", with_reg)):
            if not value:
                raise NotImplementedError(
                    f"roi_head.bbox_head (BBoxHead): {key}=False is not supported: kiln's box heads always "
                    f"classify and regress; remove {key}."
                )
        if predict_box_type != "hbox":
            raise NotImplementedError(
                f"roi_head.bbox_head (BBoxHead): predict_box_type={predict_box_type!r} is not supported; "
                "kiln predicts axis-aligned boxes ('hbox')."
            )
        for key in ("num_shared_convs", "num_shared_fcs"):
            if kwargs.pop(key, 0):
                raise ValueError(
                    f"roi_head.bbox_head (BBoxHead) has no shared layers ({key}); use "
                    "ConvFCBBoxHead for shared convs/FCs."
                )
        super().__init__(num_shared_convs=0, num_shared_fcs=0, with_avg_pool=with_avg_pool, **kwargs)
