# Cascade R-CNN X101-32x4d-FPN (20e), COCO 2017: ResNeXt-101, 32 groups of width 4.
_base_ = './cascade_rcnn_r50_fpn_20e_coco.py'
model = dict(
    pretrained='open-mmlab://resnext101_32x4d',
    backbone=dict(type='ResNeXt', depth=101, groups=32, base_width=4))
