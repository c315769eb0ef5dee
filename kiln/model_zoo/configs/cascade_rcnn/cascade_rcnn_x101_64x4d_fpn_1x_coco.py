# Cascade R-CNN X101-64x4d-FPN (1x), COCO 2017: ResNeXt-101, 64 groups of width 4.
_base_ = './cascade_rcnn_r50_fpn_1x_coco.py'
model = dict(
    pretrained='open-mmlab://resnext101_64x4d',
    backbone=dict(type='ResNeXt', depth=101, groups=64, base_width=4))
