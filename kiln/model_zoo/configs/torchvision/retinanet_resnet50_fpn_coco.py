# torchvision's retinanet_resnet50_fpn in kiln's spelling: its COCO checkpoint
# (torchvision://retinanet_resnet50_fpn_coco) loads into this model with every weight used.
# Differences from MMDetection's RetinaNet: P6 is computed from P5 (not C5) and ReLU precedes P7.
# torchvision rounds anchor sizes to whole pixels; kiln does not (boxes differ by < 1 px).
_base_ = [
    '../_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(
    pretrained=None,
    backbone=dict(out_indices=(1, 2, 3)),
    neck=dict(in_channels=[512, 1024, 2048], start_level=0, add_extra_convs='on_output',
              relu_before_extra_convs=True),
    test_cfg=dict(nms_pre=1000, score_thr=0.05, nms=dict(type='nms', iou_thr=0.5), max_per_img=300))
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
