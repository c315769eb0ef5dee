# The generated shapes dataset (circle, square, triangle on textured backgrounds), kiln's built-in
# data: ShapesDataset generates the images + COCO json on first use into $KILN_DATA
# (default ~/.cache/kiln/data) and reuses them afterwards. Nothing is downloaded.
dataset_type = 'ShapesDataset'
classes = ('circle', 'square', 'triangle')
image_size = 128
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale=(image_size, image_size),
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
data = dict(
    samples_per_gpu=8,
    workers_per_gpu=1,
    train=dict(
        type=dataset_type,
        split='train',
        num_images=1000,
        image_size=image_size,
        classes=classes,
        pipeline=train_pipeline),
    val=dict(
        type=dataset_type,
        split='val',
        num_images=200,
        image_size=image_size,
        classes=classes,
        pipeline=test_pipeline),
    test=dict(
        type=dataset_type,
        split='val',
        num_images=200,
        image_size=image_size,
        classes=classes,
        pipeline=test_pipeline))
evaluation = dict(interval=1, metric='bbox')
