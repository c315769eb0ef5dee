"""Framework defaults for Detectron2-style configs (the schema ``merge_from_file`` checks).

:func:`get_cfg` returns every key of Detectron2's ``detectron2/config/defaults.py`` (commit 02b5c4e2)
with Detectron2's values, so any Detectron2 yaml merges; two keys differ on purpose (``MODEL.DEVICE``,
see below; ``DATALOADER.RANDOM_SUBSET_RATIO`` is a key Detectron2 reads but never declares). What kiln
does with each key (mapped or refused) is in :mod:`kiln.config.dialects.detectron2` and
docs/from_detectron2.md. Projects add their own keys with functions like::

    def add_my_project_config(cfg):
        cfg.MODEL.MY_HEAD = CfgNode({'NUM_CONVS': 4})

called on ``get_cfg()`` before ``merge_from_file``.
"""

from __future__ import annotations

from .cfg_node import CfgNode

__all__ = ["get_default_cfg", "get_cfg", "global_cfg", "set_global_cfg", "add_defrcn_config",
           "apply_defrcn_project_values"]


def _default_device() -> str:
    import torch  # (here, not at import: `import kiln.config` stays free of torch)

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_core(_C: CfgNode) -> None:
    _C.MODEL = CfgNode()
    _C.MODEL.LOAD_PROPOSALS = False
    _C.MODEL.MASK_ON = False
    _C.MODEL.KEYPOINT_ON = False
    # Detectron2's default is 'cuda'; kiln's is the GPU when there is one, else the CPU, spelled as
    # a real device because user models do `torch.device(cfg.MODEL.DEVICE)` (seed 002). Asking for
    # 'cuda' where there is none is an error (kiln.engine.device.resolve_device).
    _C.MODEL.DEVICE = _default_device()
    _C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    _C.MODEL.WEIGHTS = ""
    # BGR order, matching INPUT.FORMAT's default.
    _C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
    _C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]


def _input_data(_C: CfgNode) -> None:
    _C.INPUT = CfgNode()
    _C.INPUT.MIN_SIZE_TRAIN = (800,)
    _C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    _C.INPUT.MAX_SIZE_TRAIN = 1333
    _C.INPUT.MIN_SIZE_TEST = 800
    _C.INPUT.MAX_SIZE_TEST = 1333
    _C.INPUT.RANDOM_FLIP = "horizontal"
    _C.INPUT.CROP = CfgNode({"ENABLED": False, "TYPE": "relative_range", "SIZE": [0.9, 0.9]})
    _C.INPUT.FORMAT = "BGR"
    _C.INPUT.MASK_FORMAT = "polygon"

    _C.DATASETS = CfgNode()
    _C.DATASETS.TRAIN = ()
    _C.DATASETS.PROPOSAL_FILES_TRAIN = ()
    _C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
    _C.DATASETS.TEST = ()
    _C.DATASETS.PROPOSAL_FILES_TEST = ()
    _C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000

    _C.DATALOADER = CfgNode()
    _C.DATALOADER.NUM_WORKERS = 4
    _C.DATALOADER.ASPECT_RATIO_GROUPING = True
    _C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
    _C.DATALOADER.REPEAT_THRESHOLD = 0.0
    _C.DATALOADER.REPEAT_SQRT = True
    # Read by Detectron2's build_detection_train_loader for RandomSubsetTrainingSampler but missing
    # from its defaults (a yaml setting it fails there); declared here so the sampler is usable.
    _C.DATALOADER.RANDOM_SUBSET_RATIO = 1.0
    _C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True


def _backbone_rpn(_C: CfgNode) -> None:
    _C.MODEL.BACKBONE = CfgNode()
    _C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    _C.MODEL.BACKBONE.FREEZE_AT = 2

    _C.MODEL.FPN = CfgNode()
    _C.MODEL.FPN.IN_FEATURES = []
    _C.MODEL.FPN.OUT_CHANNELS = 256
    _C.MODEL.FPN.NORM = ""
    _C.MODEL.FPN.FUSE_TYPE = "sum"

    _C.MODEL.PROPOSAL_GENERATOR = CfgNode()
    _C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    _C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0

    _C.MODEL.ANCHOR_GENERATOR = CfgNode()
    _C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
    _C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
    _C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
    _C.MODEL.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]
    _C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0

    _C.MODEL.RPN = CfgNode()
    _C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
    _C.MODEL.RPN.IN_FEATURES = ["res4"]
    _C.MODEL.RPN.BOUNDARY_THRESH = -1
    _C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
    _C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
    _C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
    _C.MODEL.RPN.POSITIVE_FRACTION = 0.5
    _C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
    _C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
    _C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    _C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
    _C.MODEL.RPN.LOSS_WEIGHT = 1.0
    _C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
    _C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
    _C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
    _C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
    _C.MODEL.RPN.NMS_THRESH = 0.7
    _C.MODEL.RPN.CONV_DIMS = [-1]


def _roi_heads(_C: CfgNode) -> None:
    _C.MODEL.ROI_HEADS = CfgNode()
    _C.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
    _C.MODEL.ROI_HEADS.NUM_CLASSES = 80
    _C.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
    _C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
    _C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
    _C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
    _C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
    _C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
    _C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
    _C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True

    _C.MODEL.ROI_BOX_HEAD = CfgNode()
    _C.MODEL.ROI_BOX_HEAD.NAME = ""
    _C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
    _C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
    _C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    _C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
    _C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
    _C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
    _C.MODEL.ROI_BOX_HEAD.NUM_FC = 0
    _C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
    _C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
    _C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
    _C.MODEL.ROI_BOX_HEAD.NORM = ""
    _C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
    _C.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = False
    _C.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = False
    _C.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = False
    _C.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
    _C.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 50

    _C.MODEL.ROI_BOX_CASCADE_HEAD = CfgNode()
    _C.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = (
        (10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0),
    )
    _C.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = (0.5, 0.6, 0.7)


def _other_heads(_C: CfgNode) -> None:
    # Mask, keypoint, semantic and panoptic heads: the schema is Detectron2's so their yaml files load;
    # translation refuses MASK_ON / KEYPOINT_ON / those meta-architectures by name.
    _C.MODEL.ROI_MASK_HEAD = CfgNode()
    _C.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    _C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    _C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.ROI_MASK_HEAD.NUM_CONV = 0
    _C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
    _C.MODEL.ROI_MASK_HEAD.NORM = ""
    _C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False
    _C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"

    _C.MODEL.ROI_KEYPOINT_HEAD = CfgNode()
    _C.MODEL.ROI_KEYPOINT_HEAD.NAME = "KRCNNConvDeconvUpsampleHead"
    _C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
    _C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS = (512,) * 8
    _C.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 17
    _C.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE = 1
    _C.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = True
    _C.MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT = 1.0
    _C.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE = "ROIAlignV2"

    _C.MODEL.SEM_SEG_HEAD = CfgNode()
    _C.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
    _C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    _C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
    _C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 54
    _C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
    _C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
    _C.MODEL.SEM_SEG_HEAD.NORM = "GN"
    _C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0

    _C.MODEL.PANOPTIC_FPN = CfgNode()
    _C.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 1.0
    _C.MODEL.PANOPTIC_FPN.COMBINE = CfgNode({"ENABLED": True})
    _C.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.5
    _C.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT = 4096
    _C.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5


def _retinanet_resnets(_C: CfgNode) -> None:
    _C.MODEL.RETINANET = CfgNode()
    _C.MODEL.RETINANET.NUM_CLASSES = 80
    _C.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    _C.MODEL.RETINANET.NUM_CONVS = 4
    _C.MODEL.RETINANET.IOU_THRESHOLDS = [0.4, 0.5]
    _C.MODEL.RETINANET.IOU_LABELS = [0, -1, 1]
    _C.MODEL.RETINANET.PRIOR_PROB = 0.01
    _C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
    _C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000
    _C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5
    _C.MODEL.RETINANET.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    _C.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 2.0
    _C.MODEL.RETINANET.FOCAL_LOSS_ALPHA = 0.25
    _C.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = 0.1
    _C.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = "smooth_l1"
    _C.MODEL.RETINANET.NORM = ""

    _C.MODEL.RESNETS = CfgNode()
    _C.MODEL.RESNETS.DEPTH = 50
    _C.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    _C.MODEL.RESNETS.NUM_GROUPS = 1
    _C.MODEL.RESNETS.NORM = "FrozenBN"
    _C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
    _C.MODEL.RESNETS.STRIDE_IN_1X1 = True
    _C.MODEL.RESNETS.RES5_DILATION = 1
    _C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
    _C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
    _C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
    _C.MODEL.RESNETS.DEFORM_MODULATED = False
    _C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1


def _solver_test(_C: CfgNode) -> None:
    _C.SOLVER = CfgNode()
    _C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
    _C.SOLVER.MAX_ITER = 40000
    _C.SOLVER.BASE_LR = 0.001
    _C.SOLVER.BASE_LR_END = 0.0
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.NESTEROV = False
    _C.SOLVER.WEIGHT_DECAY = 0.0001
    _C.SOLVER.WEIGHT_DECAY_NORM = 0.0
    _C.SOLVER.GAMMA = 0.1
    _C.SOLVER.STEPS = (30000,)
    _C.SOLVER.NUM_DECAYS = 3
    _C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
    _C.SOLVER.WARMUP_ITERS = 1000
    _C.SOLVER.WARMUP_METHOD = "linear"
    _C.SOLVER.RESCALE_INTERVAL = False
    _C.SOLVER.CHECKPOINT_PERIOD = 5000
    _C.SOLVER.IMS_PER_BATCH = 16
    _C.SOLVER.REFERENCE_WORLD_SIZE = 0
    _C.SOLVER.BIAS_LR_FACTOR = 1.0
    _C.SOLVER.WEIGHT_DECAY_BIAS = None  # None: same as WEIGHT_DECAY
    _C.SOLVER.CLIP_GRADIENTS = CfgNode({"ENABLED": False})
    _C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
    _C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    _C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
    _C.SOLVER.AMP = CfgNode({"ENABLED": False})

    _C.TEST = CfgNode()
    _C.TEST.EXPECTED_RESULTS = []
    _C.TEST.EVAL_PERIOD = 0
    _C.TEST.KEYPOINT_OKS_SIGMAS = []
    _C.TEST.DETECTIONS_PER_IMAGE = 100
    _C.TEST.AUG = CfgNode({"ENABLED": False})
    _C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
    _C.TEST.AUG.MAX_SIZE = 4000
    _C.TEST.AUG.FLIP = True
    _C.TEST.PRECISE_BN = CfgNode({"ENABLED": False})
    _C.TEST.PRECISE_BN.NUM_ITER = 200


def _build_defaults() -> CfgNode:
    _C = CfgNode()
    # Config format version: files saying VERSION 1 (or written with version-1 key names) are upgraded
    # on merge as Detectron2 does (kiln.config.d2_compat).
    _C.VERSION = 2
    _model_core(_C)
    _input_data(_C)
    _backbone_rpn(_C)
    _roi_heads(_C)
    _other_heads(_C)
    _retinanet_resnets(_C)
    _solver_test(_C)
    _C.OUTPUT_DIR = "./output"
    _C.SEED = -1
    _C.CUDNN_BENCHMARK = False
    _C.FLOAT32_PRECISION = ""
    _C.VIS_PERIOD = 0
    # A scratch node for users' own quick experiments (read through global_cfg), never by kiln.
    _C.GLOBAL = CfgNode()
    _C.GLOBAL.HACK = 1.0
    return _C


def get_default_cfg() -> CfgNode:
    """A fresh (unfrozen) copy of kiln's framework defaults for Detectron2-style configs."""
    return _build_defaults()


get_cfg = get_default_cfg
"""Detectron2 name for :func:`get_default_cfg`."""

global_cfg = CfgNode()
"""Process-wide config that :func:`set_global_cfg` fills (Detectron2's ``global_cfg``): code deep in a
project reads ``global_cfg.MODEL...`` without the cfg being passed down (seed 002)."""


def set_global_cfg(cfg: CfgNode) -> None:
    """Make ``cfg``'s keys readable as ``kiln.config.global_cfg.KEY`` (replacing what was there).

    The same object is updated in place, so modules that imported ``global_cfg`` earlier see the values.
    """
    global_cfg.defrost()
    dict.clear(global_cfg)
    global_cfg.update(cfg.clone() if isinstance(cfg, CfgNode) else CfgNode(cfg))


def add_defrcn_config(cfg: CfgNode) -> CfgNode:
    """Add DeFRCN's project keys (its ``defrcn/config/defaults.py``) with DeFRCN's default values.

    Only keys Detectron2 lacks are added, so a Detectron2 config means the same with or without them;
    DeFRCN's defaults.py also changes four Detectron2 values (``MODEL.BACKBONE.FREEZE_AT`` 3,
    ``MODEL.ROI_HEADS.NAME`` Res5ROIHeads, ``MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION`` 7,
    ``SOLVER.WEIGHT_DECAY`` 5e-5): :func:`apply_defrcn_project_values` sets those when asked. What
    kiln does with each key: :mod:`kiln.config.dialects.d2_defrcn`.
    """
    m = cfg.MODEL
    m.BACKBONE.FREEZE = False
    m.RPN.FREEZE = False
    m.RPN.ENABLE_DECOUPLE = False
    m.RPN.BACKWARD_SCALE = 1.0
    m.ROI_HEADS.FREEZE_FEAT = False
    m.ROI_HEADS.ENABLE_DECOUPLE = False
    m.ROI_HEADS.BACKWARD_SCALE = 1.0
    m.ROI_HEADS.OUTPUT_LAYER = "FastRCNNOutputLayers"
    m.ROI_HEADS.CLS_DROPOUT = False
    m.ROI_HEADS.DROPOUT_RATIO = 0.8
    # the seed's project adds this one (how many of NUM_CLASSES are novel); kiln checks it against the
    # few-shot test set's own novel classes
    m.ROI_HEADS.NUM_CLASSES_NOVEL = 5
    cfg.TEST.PCB_ENABLE = False
    cfg.TEST.PCB_MODELTYPE = "resnet"
    cfg.TEST.PCB_MODELPATH = ""
    cfg.TEST.PCB_ALPHA = 0.50
    cfg.TEST.PCB_UPPER = 1.0
    cfg.TEST.PCB_LOWER = 0.05
    cfg.MUTE_HEADER = True
    return cfg


def apply_defrcn_project_values(cfg: CfgNode) -> CfgNode:
    """Set the four Detectron2 keys whose defaults DeFRCN's defaults.py changes (before a DeFRCN yaml is
    merged, to run DeFRCN's configs exactly as its ``main.py`` does)."""
    cfg.MODEL.BACKBONE.FREEZE_AT = 3
    cfg.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    cfg.SOLVER.WEIGHT_DECAY = 5e-5
    return cfg
