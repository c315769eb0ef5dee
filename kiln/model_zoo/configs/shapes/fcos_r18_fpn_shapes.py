# A small FCOS (ResNet-18 at half width + FPN, GN head, trained from scratch) on 128x128 generated shapes,
# with the official-repository improvements (centre sampling, stride-normalised distances, centerness
# on the regression branch, GIoU). Sized to train in minutes on 2 CPU cores, like the RetinaNet demo.
_base_ = [
    '../_base_/models/fcos_r50_caffe_fpn_gn-head.py',
    '../_base_/datasets/shapes.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False, style='pytorch',
                  norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    # Objects are 19-80 px: the regress ranges put them on P3-P5 (max side distance up to 64 on P3).
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, stacked_convs=2,
                   norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
                   norm_on_bbox=True, centerness_on_reg=True, center_sampling=True, conv_bias=True,
                   loss_bbox=dict(type='GIoULoss', loss_weight=1.0)),
    test_cfg=dict(nms=dict(type='nms', iou_threshold=0.6)))
# AdamW from scratch, as the RetinaNet shapes model (SGD barely moves a from-scratch head in 6 epochs).
optimizer = dict(type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=100, warmup_ratio=0.1, step=[5])
total_epochs = 6
checkpoint_config = dict(interval=1, max_keep_ckpts=2)
log_config = dict(interval=20, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
seed = 0
work_dir = './work_dirs/fcos_r18_fpn_shapes'
