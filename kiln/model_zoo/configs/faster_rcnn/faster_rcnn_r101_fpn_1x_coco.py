# Faster R-CNN R101-FPN (1x), COCO 2017: the R50 config with ImageNet ResNet-101.
_base_ = './faster_rcnn_r50_fpn_1x_coco.py'
model = dict(pretrained='torchvision://resnet101', backbone=dict(depth=101))
