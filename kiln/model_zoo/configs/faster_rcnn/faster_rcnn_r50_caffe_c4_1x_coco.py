# Faster R-CNN R50-C4 (caffe-style ResNet, stage 4 as the RoI head), 1x schedule, COCO 2017.
_base_ = [
    '../_base_/models/faster_rcnn_r50_caffe_c4.py',
    '../_base_/datasets/coco_detection_caffe.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
