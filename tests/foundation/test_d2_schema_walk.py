"""The schema walk: every key of Detectron2's schema is honoured by the translator or refused by name.

For each leaf key of ``get_cfg()`` (plus the few-shot project keys) the test sets a value of the same
type that differs from the default, in a context where Detectron2 reads the key (an RetinaNet config
for ``MODEL.RETINANET.*``, an FPN config for ``MODEL.FPN.*``, crops enabled for ``INPUT.CROP.*``, ...),
and asserts that the canonical config changes or that translation raises an error naming the key.
"""

from __future__ import annotations

import logging

import pytest

from kiln.cli.d2_config import add_fewshot_defaults
from kiln.config import get_cfg
from kiln.config.dialects.detectron2 import d2_to_canonical

FPN = {
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32], [64], [128], [256], [512]],
    "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
}
RETINA = {
    "MODEL.META_ARCHITECTURE": "RetinaNet",
    "MODEL.BACKBONE.NAME": "build_retinanet_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES": ["res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES": ["res3", "res4", "res5"],
    "MODEL.ANCHOR_GENERATOR.SIZES": [[x, x * 1.26, x * 1.59] for x in (32, 64, 128, 256, 512)],
}
CASCADE = {**FPN, "MODEL.ROI_HEADS.NAME": "CascadeROIHeads", "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True}
PROPOSALS = {
    **FPN,
    "MODEL.LOAD_PROPOSALS": True,
    "MODEL.PROPOSAL_GENERATOR.NAME": "PrecomputedProposals",
    "DATASETS.PROPOSAL_FILES_TRAIN": ("train_props.pkl",),
    "DATASETS.PROPOSAL_FILES_TEST": ("val_props.pkl",),
}

C5 = {
    "MODEL.RESNETS.OUT_FEATURES": ["res5"],
    "MODEL.RPN.IN_FEATURES": ["res5"],
    "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["res5"],
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
}
FPN_RES3 = {
    "MODEL.FPN.IN_FEATURES": ["res3", "res4", "res5"],
    "MODEL.RESNETS.OUT_FEATURES": ["res3", "res4", "res5"],
    "MODEL.RPN.IN_FEATURES": ["p3", "p4", "p5", "p6"],
    "MODEL.ROI_HEADS.IN_FEATURES": ["p3", "p4", "p5"],
    "MODEL.ANCHOR_GENERATOR.SIZES": [[64], [128], [256], [512]],
}

#: (key prefix, context) - the first matching prefix gives the context a key is walked in
CONTEXTS = [
    ("MODEL.RESNETS.RES5_DILATION", C5),
    ("MODEL.RESNETS.NUM_GROUPS", FPN),
    ("MODEL.RESNETS.WIDTH_PER_GROUP", {**FPN, "MODEL.RESNETS.NUM_GROUPS": 32}),
    ("MODEL.ROI_HEADS.NAME", FPN),
    ("MODEL.ROI_HEADS.IN_FEATURES", FPN),
    ("MODEL.RPN.IN_FEATURES", FPN),
    ("MODEL.LOAD_PROPOSALS", FPN),
    ("MODEL.PROPOSAL_GENERATOR.NAME", FPN),
    ("MODEL.RETINANET.", RETINA),
    ("MODEL.FPN.", FPN),
    ("MODEL.ROI_BOX_CASCADE_HEAD.", CASCADE),
    ("MODEL.ROI_MASK_HEAD.", {**FPN, "MODEL.MASK_ON": True}),
    ("INPUT.MASK_FORMAT", {**FPN, "MODEL.MASK_ON": True}),
    ("MODEL.ROI_BOX_HEAD.NAME", {**FPN, "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead"}),
    ("MODEL.ROI_BOX_HEAD.NUM_", FPN),
    ("MODEL.ROI_BOX_HEAD.FC_DIM", FPN),
    ("MODEL.ROI_BOX_HEAD.CONV_DIM", FPN),
    ("MODEL.ROI_BOX_HEAD.NORM", FPN),
    ("DATASETS.PROPOSAL_FILES_", PROPOSALS),
    ("DATASETS.PRECOMPUTED_PROPOSAL_TOPK_", PROPOSALS),
    ("INPUT.CROP.", {"INPUT.CROP.ENABLED": True}),
    ("TEST.AUG.", {"TEST.AUG.ENABLED": True}),
    ("SOLVER.BASE_LR_END", {"SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR"}),
    ("SOLVER.NUM_DECAYS", {"SOLVER.LR_SCHEDULER_NAME": "WarmupStepWithFixedGammaLR"}),
    ("SOLVER.CLIP_GRADIENTS.ENABLED", {}),
    (
        "SOLVER.CLIP_GRADIENTS.",
        {"SOLVER.CLIP_GRADIENTS.ENABLED": True, "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "full_model"},
    ),
    ("DATALOADER.REPEAT_", {"DATALOADER.SAMPLER_TRAIN": "RepeatFactorTrainingSampler"}),
    ("DATALOADER.RANDOM_SUBSET_RATIO", {"DATALOADER.SAMPLER_TRAIN": "RandomSubsetTrainingSampler"}),
    ("INPUT.MIN_SIZE_TRAIN", {"INPUT.MIN_SIZE_TRAIN": (640, 800)}),
    ("MODEL.RPN.BACKWARD_SCALE", {"MODEL.RPN.ENABLE_DECOUPLE": True}),
    ("MODEL.ROI_HEADS.BACKWARD_SCALE", {"MODEL.ROI_HEADS.ENABLE_DECOUPLE": True}),
    ("MODEL.ROI_HEADS.DROPOUT_RATIO", {"MODEL.ROI_HEADS.CLS_DROPOUT": True}),
    ("TEST.PCB_", {"TEST.PCB_ENABLE": True, "TEST.PCB_MODELPATH": "/weights/resnet101.pth"}),
]

#: structural keys changed together with the keys that must agree with them (the key's own new value
#: is in the set); the canonical config must change, or the error must name the key
COHERENT = {
    "MODEL.BACKBONE.NAME": FPN,
    "MODEL.RESNETS.OUT_FEATURES": C5,
    "MODEL.FPN.IN_FEATURES": FPN_RES3,
    "MODEL.RPN.IN_FEATURES": FPN_RES3,
    "MODEL.RETINANET.IN_FEATURES": {
        "MODEL.FPN.IN_FEATURES": ["res4", "res5"],
        "MODEL.RESNETS.OUT_FEATURES": ["res4", "res5"],
        "MODEL.RETINANET.IN_FEATURES": ["p4", "p5", "p6", "p7"],
        "MODEL.ANCHOR_GENERATOR.SIZES": [[x, x * 1.26, x * 1.59] for x in (64, 128, 256, 512)],
    },
    "MODEL.LOAD_PROPOSALS": PROPOSALS,
    "MODEL.PROPOSAL_GENERATOR.NAME": PROPOSALS,
}

#: values for keys whose generic "next value" would only test an error path
ALTERNATES = {
    "MODEL.META_ARCHITECTURE": "ProposalNetwork",
    "MODEL.RESNETS.RES5_DILATION": 2,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 8,
    "MODEL.RESNETS.NORM": "GN",
    "MODEL.RESNETS.DEPTH": 101,
    "MODEL.RESNETS.NUM_GROUPS": 32,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
    "MODEL.FPN.NORM": "GN",
    "MODEL.RETINANET.NORM": "GN",
    "MODEL.ROI_BOX_HEAD.NORM": "GN",
    "MODEL.ROI_HEADS.NAME": "CascadeROIHeads",
    "MODEL.RPN.BBOX_REG_LOSS_TYPE": "giou",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": "giou",
    "MODEL.RETINANET.BBOX_REG_LOSS_TYPE": "giou",
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlign",
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE": "ROIAlign",
    "MODEL.ROI_MASK_HEAD.NORM": "GN",
    "INPUT.MASK_FORMAT": "bitmask",
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": "range",
    "INPUT.RANDOM_FLIP": "vertical",
    "INPUT.FORMAT": "RGB",
    "INPUT.CROP.TYPE": "absolute",
    "DATALOADER.SAMPLER_TRAIN": "RepeatFactorTrainingSampler",
    "SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR",
    "SOLVER.WARMUP_METHOD": "constant",
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "value",
    "SOLVER.REFERENCE_WORLD_SIZE": 2,
    "DATASETS.TRAIN": ("walk_val",),
    "DATASETS.TEST": ("walk_train",),
    "MODEL.WEIGHTS": "/weights/model.pth",
    "MODEL.DEVICE": "cuda:3",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4"],
    "MODEL.RPN.CONV_DIMS": [512],
    "MODEL.ROI_BOX_CASCADE_HEAD.IOUS": (0.5, 0.6, 0.75),
    "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS": (
        (10.0, 10.0, 5.0, 5.0),
        (20.0, 20.0, 10.0, 10.0),
        (40.0, 40.0, 20.0, 20.0),
    ),
    "SOLVER.STEPS": (20000,),
    "MODEL.RETINANET.IOU_THRESHOLDS": [0.3, 0.6],
    "MODEL.RPN.IOU_THRESHOLDS": [0.2, 0.8],
}

#: Keys Detectron2 itself reads only for heads kiln refuses up front (KEYPOINT_ON, the
#: segmentation meta-architectures; test_refused_heads checks those switches), or never reads at all.
EXEMPT = {
    "VERSION": "consumed while merging (version-1 files are upgraded); test_d2_yaml covers it",
    "GLOBAL.HACK": "Detectron2's scratch value for users' own code (read through global_cfg), never by "
    "the framework",
    "TEST.KEYPOINT_OKS_SIGMAS": "read only by keypoint evaluation (MODEL.KEYPOINT_ON, refused)",
}
EXEMPT_PREFIXES = {
    "MODEL.ROI_KEYPOINT_HEAD.": "keypoint head (MODEL.KEYPOINT_ON, refused)",
    "MODEL.SEM_SEG_HEAD.": "semantic head (SemanticSegmentor/PanopticFPN, refused)",
    "MODEL.PANOPTIC_FPN.": "panoptic fusion (PanopticFPN, refused)",
}

#: the keys issue 17 found silently ignored, which must now change the canonical config (not be refused)
HONOURED = [
    "MODEL.ANCHOR_GENERATOR.SIZES",
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
    "MODEL.ANCHOR_GENERATOR.OFFSET",
    "MODEL.RESNETS.NUM_GROUPS",
    "MODEL.RESNETS.WIDTH_PER_GROUP",
    "MODEL.RESNETS.STRIDE_IN_1X1",
    "MODEL.RESNETS.OUT_FEATURES",
    "MODEL.RESNETS.STEM_OUT_CHANNELS",
    "MODEL.ROI_BOX_HEAD.NUM_FC",
    "MODEL.ROI_BOX_HEAD.NUM_CONV",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",
    "MODEL.ROI_BOX_HEAD.NORM",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS",
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT",
    "MODEL.ROI_HEADS.IN_FEATURES",
    "MODEL.FPN.NORM",
    "MODEL.FPN.IN_FEATURES",
    "MODEL.FPN.OUT_CHANNELS",
    "MODEL.RPN.IN_FEATURES",
    "MODEL.RPN.BBOX_REG_WEIGHTS",
    "MODEL.RPN.LOSS_WEIGHT",
    "MODEL.RPN.BOUNDARY_THRESH",
    "MODEL.RPN.SMOOTH_L1_BETA",
    "MODEL.RPN.CONV_DIMS",
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE",
    "MODEL.RETINANET.PRIOR_PROB",
    "MODEL.RETINANET.BBOX_REG_WEIGHTS",
    "MODEL.RETINANET.SMOOTH_L1_LOSS_BETA",
    "MODEL.RETINANET.NORM",
    "MODEL.RETINANET.IN_FEATURES",
    "MODEL.RETINANET.IOU_THRESHOLDS",
    "MODEL.RPN.IOU_THRESHOLDS",
    "SOLVER.CLIP_GRADIENTS.ENABLED",
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
    "MODEL.ROI_BOX_CASCADE_HEAD.IOUS",
    "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS",
    "MODEL.LOAD_PROPOSALS",
    "MODEL.META_ARCHITECTURE",
    "SOLVER.LR_SCHEDULER_NAME",
    "SOLVER.BIAS_LR_FACTOR",
    "SOLVER.WEIGHT_DECAY_NORM",
    "SOLVER.WEIGHT_DECAY_BIAS",
    "SOLVER.BASE_LR_END",
    "SOLVER.NUM_DECAYS",
    "SOLVER.REFERENCE_WORLD_SIZE",
    "SOLVER.WARMUP_METHOD",
    "INPUT.CROP.ENABLED",
    "INPUT.CROP.TYPE",
    "INPUT.CROP.SIZE",
    "TEST.AUG.ENABLED",
    "TEST.AUG.MIN_SIZES",
    "TEST.AUG.MAX_SIZE",
    "TEST.AUG.FLIP",
    "DATALOADER.SAMPLER_TRAIN",
    "DATALOADER.REPEAT_THRESHOLD",
    "DATALOADER.RANDOM_SUBSET_RATIO",
    "DATALOADER.ASPECT_RATIO_GROUPING",
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
    "DATASETS.PROPOSAL_FILES_TRAIN",
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN",
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST",
    "VIS_PERIOD",
    "MODEL.MASK_ON",
    "MODEL.ROI_MASK_HEAD.NUM_CONV",
    "MODEL.ROI_MASK_HEAD.CONV_DIM",
    "MODEL.ROI_MASK_HEAD.NORM",
    "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION",
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO",
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE",
    "INPUT.MASK_FORMAT",
]


@pytest.fixture(scope="module", autouse=True)
def catalog(tmp_path_factory):
    """Two small COCO-format splits registered as walk_train / walk_val."""
    from kiln.data import DatasetCatalog
    from kiln.data.datasets import generate_shapes_dataset, register_coco_instances

    root = tmp_path_factory.mktemp("walk")
    for split in ("train", "val"):
        if f"walk_{split}" not in DatasetCatalog.list():
            p = generate_shapes_dataset(str(root), num_images=2, image_size=32, split=split)
            register_coco_instances(f"walk_{split}", {}, p["ann_file"], p["img_prefix"])


def _leaves(node, prefix=""):
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, full + ".")
        else:
            yield full, value


def _set(cfg, key, value):
    *parents, last = key.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[last] = value


def _get(cfg, key):
    node = cfg
    for p in key.split("."):
        node = node[p]
    return node


def _other(value):
    """A value of the same type that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value - 0.1 if value >= 0.5 else value + 0.1
    if isinstance(value, str):
        return value + "_other" if value else "other"
    if value is None:
        return 0.0
    if isinstance(value, (list, tuple)):
        if not value:
            return type(value)(["x"])
        return type(value)(_other(v) for v in value)
    raise TypeError(value)


def _context(key):
    for prefix, ctx in CONTEXTS:
        if key.startswith(prefix):
            return ctx
    return {}


def _base(context):
    d2 = add_fewshot_defaults(get_cfg())
    d2.DATASETS.TRAIN = ("walk_train",)
    d2.DATASETS.TEST = ("walk_val",)
    d2.MODEL.DEVICE = "cpu"
    for k, v in context.items():
        _set(d2, k, v)
    return d2


def _translate(d2):
    d2.freeze()
    try:
        return d2_to_canonical(d2)
    finally:
        d2.defrost()


def _exempt(key):
    return key in EXEMPT or any(key.startswith(p) for p in EXEMPT_PREFIXES)


ALL_KEYS = [k for k, _ in _leaves(add_fewshot_defaults(get_cfg()))]


def _walk_one(key):
    """'changed', or 'refused' (error naming the key); fails on a silent no-op or a wrong error."""
    context = _context(key)
    base = _translate(_base(context))
    d2 = _base(context)
    if key in COHERENT:
        for k, v in COHERENT[key].items():
            _set(d2, k, v)
        new = COHERENT[key][key]
    else:
        new = ALTERNATES.get(key, _other(_get(d2, key)))
        _set(d2, key, new)
    try:
        changed = _translate(d2)
    except (ValueError, KeyError) as exc:
        assert key in str(exc), f"{key}={new!r} was refused by an error that does not name it: {exc}"
        return "refused"
    assert changed != base, f"{key}={new!r} changed nothing in the canonical config (silently ignored)"
    return "changed"


@pytest.mark.parametrize("key", [k for k in ALL_KEYS if not _exempt(k)])
def test_every_key_is_honoured_or_refused_by_name(key):
    _walk_one(key)


@pytest.mark.parametrize("key", HONOURED)
def test_keys_issue_17_found_ignored_are_honoured(key):
    assert key in ALL_KEYS
    assert _walk_one(key) == "changed"


def test_the_walk_covers_the_whole_schema():
    # Every Detectron2 key is in the schema, the walk visits all but the documented exemptions.
    walked = [k for k in ALL_KEYS if not _exempt(k)]
    assert len(ALL_KEYS) >= 190 and len(walked) >= len(ALL_KEYS) - 40
    for key in EXEMPT:
        assert key in ALL_KEYS
    for prefix in EXEMPT_PREFIXES:
        assert any(k.startswith(prefix) for k in ALL_KEYS)


@pytest.mark.parametrize(
    "switch, value, head",
    [
        ("MODEL.KEYPOINT_ON", True, "keypoint head"),
        ("MODEL.META_ARCHITECTURE", "SemanticSegmentor", "semantic segmentation"),
        ("MODEL.META_ARCHITECTURE", "PanopticFPN", "panoptic segmentation"),
    ],
)
def test_refused_heads(switch, value, head):
    # The switches that make the exempt sub-trees (mask, keypoint, segmentation heads) matter are refused.
    d2 = _base({})
    _set(d2, switch, value)
    with pytest.raises(ValueError, match=f"{switch}.*{head}"):
        _translate(d2)


def test_subtrees_a_meta_architecture_does_not_read_are_named_in_a_warning(caplog):
    # As in Detectron2 a RetinaNet never reads MODEL.ROI_HEADS; kiln says so instead of staying silent.
    d2 = _base(RETINA)
    d2.MODEL.ROI_HEADS.NUM_CLASSES = 3
    with caplog.at_level(logging.WARNING, logger="kiln.config"):
        _translate(d2)
    assert "MODEL.ROI_HEADS.NUM_CLASSES" in caplog.text and "RetinaNet" in caplog.text


@pytest.mark.parametrize(
    "context, key, value",
    [
        ({}, "INPUT.CROP.SIZE", [0.5, 0.5]),
        ({}, "TEST.AUG.MIN_SIZES", (600,)),
        ({"SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR"}, "SOLVER.STEPS", (100,)),
        ({}, "DATALOADER.REPEAT_THRESHOLD", 0.1),
        ({}, "MODEL.ROI_BOX_CASCADE_HEAD.IOUS", (0.5, 0.6)),
        ({}, "MODEL.FPN.OUT_CHANNELS", 128),
    ],
)
def test_options_of_a_feature_that_is_off_are_named_in_a_warning(caplog, context, key, value):
    # Detectron2 ignores them; kiln does too (the config stays valid) but says so.
    d2 = _base(context)
    base = _translate(_base(context))
    _set(d2, key, value)
    with caplog.at_level(logging.WARNING, logger="kiln.config"):
        assert _translate(d2) == base
    assert f"{key}=" in caplog.text and "has no effect" in caplog.text
