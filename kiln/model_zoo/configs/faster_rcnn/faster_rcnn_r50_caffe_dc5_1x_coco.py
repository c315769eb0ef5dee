# Faster R-CNN R50-DC5 (caffe-style ResNet, dilated stage 4), 1x schedule, COCO 2017.
_base_ = [
    '../_base_/models/faster_rcnn_r50_caffe_dc5.py',
    '../_base_/datasets/coco_detection_caffe.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
