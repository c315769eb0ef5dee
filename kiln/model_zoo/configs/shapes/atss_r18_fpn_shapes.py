# A small ATSS (ResNet-18 at half width + FPN, GN head, trained from scratch) on 128x128 generated
# shapes. Sized to train in minutes on 2 CPU cores, like the RetinaNet demo.
_base_ = [
    '../_base_/models/atss_r50_fpn.py',
    '../_base_/datasets/shapes.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    # One anchor per location; octave_base_scale 4 gives 32 px anchors on P3 (objects are 19-80 px), where
    # ATSS's default 8 (64 px) would start every small shape with a poor IoU.
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, stacked_convs=2,
                   norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
                   anchor_generator=dict(octave_base_scale=4)))
optimizer = dict(type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=100, warmup_ratio=0.1, step=[5])
total_epochs = 6
checkpoint_config = dict(interval=1, max_keep_ckpts=2)
log_config = dict(interval=20, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
seed = 0
work_dir = './work_dirs/atss_r18_fpn_shapes'
