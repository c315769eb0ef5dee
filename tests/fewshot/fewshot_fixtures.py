"""Tiny DeFRCN Detectron2 configs for the few-shot tests (ResNet-18 FPN, 64-pixel images)."""

from __future__ import annotations

BASE_CLASSES = ["circle", "square"]
NOVEL_CLASSES = ["triangle"]

_MODEL = """\
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  DEVICE: "cpu"
  BACKBONE:
    NAME: "build_resnet_fpn_backbone"
    FREEZE: {backbone_freeze}
  RESNETS:
    DEPTH: 18
    RES2_OUT_CHANNELS: 64
    NORM: "BN"
    OUT_FEATURES: ["res2", "res3", "res4", "res5"]
  FPN:
    IN_FEATURES: ["res2", "res3", "res4", "res5"]
    OUT_CHANNELS: 32
  ANCHOR_GENERATOR:
    SIZES: [[8], [16], [32], [64], [128]]
  RPN:
    IN_FEATURES: ["p2", "p3", "p4", "p5", "p6"]
    POST_NMS_TOPK_TRAIN: 64
    POST_NMS_TOPK_TEST: 32
    ENABLE_DECOUPLE: True
    BACKWARD_SCALE: 0.0
    FREEZE: {rpn_freeze}
  ROI_HEADS:
    NAME: "StandardROIHeads"
    IN_FEATURES: ["p2", "p3", "p4", "p5"]
    NUM_CLASSES: {num_classes}
    BATCH_SIZE_PER_IMAGE: 32
    ENABLE_DECOUPLE: True
    BACKWARD_SCALE: {rcnn_scale}
    FREEZE_FEAT: {freeze_feat}
    CLS_DROPOUT: {dropout}
  ROI_BOX_HEAD:
    NAME: "FastRCNNConvFCHead"
    NUM_FC: 2
    FC_DIM: 64
    POOLER_RESOLUTION: 7
INPUT:
  MIN_SIZE_TRAIN: (64,)
  MAX_SIZE_TRAIN: 64
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 64
DATALOADER:
  NUM_WORKERS: 0
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.002
  STEPS: ()
  WARMUP_ITERS: 0
  MAX_ITER: {iters}
  CHECKPOINT_PERIOD: 1
TEST:
  EVAL_PERIOD: 0
  PCB_ENABLE: {pcb}
SEED: 0
"""


def defrcn_yaml(num_classes: int, *, finetune: bool, iters: int) -> str:
    """A tiny DeFRCN config: base training (GDL on) or a fine-tune (GDL, frozen RoI features and RPN,
    classifier dropout, PCB)."""
    return _MODEL.format(num_classes=num_classes, iters=iters, backbone_freeze=False,
                         rpn_freeze=finetune, freeze_feat=finetune, dropout=finetune, pcb=finetune,
                         rcnn_scale=0.001 if finetune else 0.75)
