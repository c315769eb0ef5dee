# torchvision's fcos_resnet50_fpn in kiln's spelling: its COCO checkpoint
# (torchvision://fcos_resnet50_fpn_coco) loads into this model with every weight used (the 91 class slots
# become kiln's 80 COCO classes). torchvision's FCOS is MMDetection's centre-sampling / normalised-distance /
# centerness-on-regression / GIoU variant with a pytorch-style ResNet, conv bias before GroupNorm, P6 from
# P5 and its points at the top-left corner of each cell (prior_offset=0). Its test score is
# sqrt(cls * centerness) > 0.2; kiln's is cls > score_thr, then times centerness (the same ranking).
_base_ = [
    '../_base_/models/fcos_r50_caffe_fpn_gn-head.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(style='pytorch', norm_cfg=dict(type='BN', requires_grad=True),
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    bbox_head=dict(norm_on_bbox=True, centerness_on_reg=True, center_sampling=True, conv_bias=True,
                   prior_offset=0.0, loss_bbox=dict(type='GIoULoss', loss_weight=1.0)),
    test_cfg=dict(nms=dict(type='nms', iou_threshold=0.6)))
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
