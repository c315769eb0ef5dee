# FCOS with the improvements of the official repository: centre sampling, distances normalised by the
# stride, centerness on the regression branch, GIoU loss, conv bias in the head (MMDetection: +~2.5 AP).
_base_ = 'fcos_r50_caffe_fpn_gn-head_1x_coco.py'
model = dict(
    bbox_head=dict(
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        conv_bias=True,
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0)),
    test_cfg=dict(nms=dict(type='nms', iou_threshold=0.6)))
optimizer_config = dict(_delete_=True, grad_clip=None)
lr_config = dict(warmup='linear')
