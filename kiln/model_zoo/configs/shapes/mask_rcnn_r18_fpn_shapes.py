# A small Mask R-CNN (ResNet-18 at half width + FPN, from scratch) on 128x128 generated shapes: the
# Faster R-CNN shapes recipe plus a mask branch, evaluated by box and mask AP.
_base_ = [
    '../_base_/models/mask_rcnn_r50_fpn.py',
    '../_base_/datasets/shapes_instance.py',
    '../_base_/default_runtime.py',
]
model = dict(
    pretrained=None,
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=3)))
# As the Faster R-CNN shapes recipe: AdamW learns much faster from scratch here than SGD.
optimizer = dict(type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=100, warmup_ratio=0.1, step=[5])
total_epochs = 6
checkpoint_config = dict(interval=1, max_keep_ckpts=2)
log_config = dict(interval=20, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
seed = 0
work_dir = './work_dirs/mask_rcnn_r18_fpn_shapes'
