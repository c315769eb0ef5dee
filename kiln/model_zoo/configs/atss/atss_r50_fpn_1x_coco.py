# ATSS R50-FPN, 1x schedule, COCO 2017 (MMDetection's atss_r50_fpn_1x_coco: lr 0.01 for 16 images).
_base_ = [
    '../_base_/models/atss_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
