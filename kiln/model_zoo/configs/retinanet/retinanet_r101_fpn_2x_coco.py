# RetinaNet R101-FPN (2x), COCO 2017: the R50 config with ImageNet ResNet-101.
_base_ = './retinanet_r50_fpn_2x_coco.py'
model = dict(pretrained='torchvision://resnet101', backbone=dict(depth=101))
