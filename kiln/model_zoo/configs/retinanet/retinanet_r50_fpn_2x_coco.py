# RetinaNet R50-FPN, 2x schedule (24 epochs, lr x0.1 after 16 and 22), COCO 2017.
_base_ = './retinanet_r50_fpn_1x_coco.py'
lr_config = dict(step=[16, 22])
total_epochs = 24
