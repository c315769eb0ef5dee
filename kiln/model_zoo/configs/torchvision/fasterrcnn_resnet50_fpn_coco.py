# torchvision's fasterrcnn_resnet50_fpn in kiln's spelling: its COCO checkpoint
# (torchvision://fasterrcnn_resnet50_fpn_coco) loads into this model with every weight used
# (torchvision's 91 class slots become kiln's 80 COCO classes with the background last).
# torchvision pools RoIs with sampling_ratio=2 and without the half-pixel alignment.
_base_ = [
    '../_base_/models/faster_rcnn_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(
    pretrained=None,
    roi_head=dict(bbox_roi_extractor=dict(
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2, aligned=False))))
