# Cascade R-CNN R50-FPN, 20 epochs (lr x0.1 after 16 and 19), COCO 2017.
_base_ = [
    '../_base_/models/cascade_rcnn_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_20e.py',
    '../_base_/default_runtime.py',
]
