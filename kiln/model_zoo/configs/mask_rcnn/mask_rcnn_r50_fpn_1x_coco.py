# Mask R-CNN R50-FPN, 1x schedule, COCO 2017 (boxes + instance masks).
_base_ = [
    '../_base_/models/mask_rcnn_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
