"""Few-shot detection data: base/novel class splits (VOC 1/2/3, COCO 60/20), K-shot seed files (read as
TFA/DeFRCN publish them, or generated), and catalog names such as ``voc_2007_trainval_novel1_1shot_seed0``
and ``voc_2007_test_all1`` (:mod:`.register`)."""

from .register import COCO_SHOTS, VOC_SHOTS, fewshot_name, register_all_fewshot, register_fewshot_coco
from .seeds import (
    generate_coco_seed_files,
    generate_voc_seed_files,
    read_coco_seed_files,
    read_voc_seed_files,
    sample_class_kshot,
    seed_dir,
)
from .splits import (
    COCO_NOVEL_IDS,
    VOC_ALL_CLASSES,
    VOC_BASE_CLASSES,
    VOC_NOVEL_CLASSES,
    coco_split_ids,
    voc_classes,
)

__all__ = [
    "COCO_NOVEL_IDS", "COCO_SHOTS", "VOC_ALL_CLASSES", "VOC_BASE_CLASSES", "VOC_NOVEL_CLASSES", "VOC_SHOTS",
    "coco_split_ids", "fewshot_name", "generate_coco_seed_files", "generate_voc_seed_files",
    "read_coco_seed_files", "read_voc_seed_files", "register_all_fewshot", "register_fewshot_coco",
    "sample_class_kshot", "seed_dir", "voc_classes",
]
