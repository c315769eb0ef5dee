# A small YOLOv3 on 128x128 generated shapes: Darknet-53 at 1/8 width (4..128 channels, trained from
# scratch, batch norm statistics learned: norm_eval=False), the neck and head at the same scale, and
# anchors sized to the shapes (objects 19-58 px, up to ~80 px rotated) instead of COCO's 608 px k-means.
# Sized to train in minutes on 2 CPU cores.
_base_ = [
    '../_base_/models/yolov3_d53.py',
    '../_base_/datasets/shapes.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(widen_factor=0.125, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[128, 64, 32], out_channels=[64, 32, 16]),
    bbox_head=dict(
        num_classes=3,
        in_channels=[64, 32, 16],
        out_channels=[128, 64, 32],
        anchor_generator=dict(base_sizes=[[(64, 64), (84, 56), (56, 84)],
                                          [(38, 38), (46, 30), (30, 46)],
                                          [(20, 20), (26, 17), (17, 26)]])))
img_norm_cfg = dict(mean=[0, 0, 0], std=[255., 255., 255.], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Expand', mean=img_norm_cfg['mean'], to_rgb=img_norm_cfg['to_rgb'], ratio_range=(1, 1.5)),
    dict(type='MinIoURandomCrop', min_ious=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9), min_crop_size=0.5),
    dict(type='Resize', img_scale=[(112, 112), (144, 144)], keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(128, 128),
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='Pad', size_divisor=32),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ]),
]
data = dict(train=dict(pipeline=train_pipeline), val=dict(pipeline=test_pipeline),
            test=dict(pipeline=test_pipeline))
# AdamW from scratch (as the shapes RetinaNet): the published SGD lr 1e-3 is for a pretrained Darknet.
optimizer = dict(type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=100, warmup_ratio=0.1, step=[10])
total_epochs = 12
checkpoint_config = dict(interval=1, max_keep_ckpts=2)
log_config = dict(interval=20, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
seed = 0
work_dir = './work_dirs/yolov3_d53_shapes'
