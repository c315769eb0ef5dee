# The `make demo` model: a small RetinaNet (ResNet-18 at half width + FPN, trained from scratch)
# on 128x128 generated shapes. Sized to train in a few minutes on 2 CPU cores.
_base_ = [
    '../_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/shapes.py',
    '../_base_/default_runtime.py',
]
model = dict(
    pretrained=None,  # from scratch: nothing to download, and shapes are far from ImageNet
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    # Anchors sized to the shapes: objects are 0.15-0.45 of the 128 px side (19-58 px, boxes up to
    # ~80 px when rotated), but the RetinaNet default octave_base_scale=4 makes the smallest anchors
    # 32 px (stride 8). 3 gives 24/30/38 px at stride 8, 48-76 px at stride 16, and so on.
    # Measured (6 epochs, 200 val images, seed 0): bbox AP 45.3 / AP50 66.0 with 3, against 35.1 /
    # 51.5 with 4 and 35.3 / 56.9 with 2 (too small: AP75 and APm fell). With 2, dropping the lr
    # after epoch 4 instead of 5 (AP 31.2) and AdamW lr 2e-3 (AP 5.2 after 4 epochs) were worse.
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, stacked_convs=2,
                   anchor_generator=dict(octave_base_scale=3)))
# AdamW: from scratch it learns much faster than SGD here (RetinaNet, measured: bbox AP after
# epoch 1 0.66 vs 0.08 with SGD lr 0.02, whose classification loss had barely moved).
optimizer = dict(type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(policy='step', warmup='linear', warmup_iters=100, warmup_ratio=0.1, step=[5])
total_epochs = 6
checkpoint_config = dict(interval=1, max_keep_ckpts=2)
log_config = dict(interval=20, hooks=[dict(type='TextLoggerHook'), dict(type='TensorboardLoggerHook')])
seed = 0
work_dir = './work_dirs/retinanet_r18_fpn_shapes'
