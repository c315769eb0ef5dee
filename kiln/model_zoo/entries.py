"""The shipped zoo table: published checkpoints of the detectors kiln implements, with their figures.

``box_ap`` is the figure the publisher reports: box AP on COCO val2017 unless ``metric`` says it is
something else (proposal recall) or ``dataset`` names another test set (VOC 2007 test), so a user can
check a downloaded and converted model with ``kiln test``.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ZooEntry", "SHIPPED"]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """One zoo row. ``config`` is a ``kiln::`` path (or ``None`` for backbone weights only)."""

    name: str
    config: str | None
    url: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    note: str = ""
    box_ap: float | None = None
    metric: str = "box AP"
    publisher: str = ""
    dataset: str = "COCO val2017"

    @property
    def cache_name(self) -> str | None:
        """File name of the checkpoint inside the cache directory."""
        if self.file_name:
            return self.file_name
        if self.url:
            return self.url.rstrip("/").rsplit("/", 1)[-1]
        return None


_TV = "https://download.pytorch.org/models/"
_MM = "https://download.openmmlab.com/mmdetection/v2.0/"
_D2 = "https://dl.fbaipublicfiles.com/detectron2/"


def _mmdet(name: str, config: str, file: str, ap: float, metric: str = "box AP") -> ZooEntry:
    # MMDetection's file names end in the first 8 hex digits of the file's sha256.
    arch = config.split("/", 1)[0]
    return ZooEntry(name, f"kiln::{config}", f"{_MM}{arch}/{name}/{file}", file.rsplit("-", 1)[1][:8],
                    box_ap=ap, metric=metric, publisher="MMDetection")


def _mm(arch: str, name: str, stamp: str, ap: float, metric: str = "box AP") -> ZooEntry:
    # The config has the entry's name; the file is NAME_STAMP.pth, STAMP ending in the sha256 prefix.
    return _mmdet(name, f"{arch}/{name}.py", f"{name}_{stamp}.pth", ap, metric)


def _d2(name: str, run: str, file: str, ap: float, metric: str = "box AP", group: str = "COCO-Detection",
        dataset: str = "COCO val2017") -> ZooEntry:
    # Detectron2's 6-hex file suffix is not a documented digest: no checksum is recorded.
    return ZooEntry(f"{group}/{name}", f"kiln::detectron2/{group}/{name}.yaml",
                    f"{_D2}{group}/{name}/{run}/{file}", box_ap=ap, metric=metric,
                    publisher="Detectron2", dataset=dataset)


SHIPPED: list[ZooEntry] = [
    # ------------------------------------------------------------------ MMDetection (COCO, v2.0 weights)
    _mmdet("retinanet_r50_fpn_1x_coco", "retinanet/retinanet_r50_fpn_1x_coco.py",
           "retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth", 36.5),
    _mmdet("retinanet_r50_fpn_2x_coco", "retinanet/retinanet_r50_fpn_2x_coco.py",
           "retinanet_r50_fpn_2x_coco_20200131-fdb43119.pth", 37.4),
    _mmdet("faster_rcnn_r50_fpn_1x_coco", "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
           "faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth", 37.4),
    _mmdet("faster_rcnn_r50_fpn_2x_coco", "faster_rcnn/faster_rcnn_r50_fpn_2x_coco.py",
           "faster_rcnn_r50_fpn_2x_coco_bbox_mAP-0.384_20200504_210434-a5d8aa15.pth", 38.4),
    # figures and files: MMDetection 2.28.2's configs/*/metafile.yml (RPN R101: configs/rpn/README.md)
    _mm("faster_rcnn", "faster_rcnn_r50_caffe_c4_1x_coco", "20220316_150152-3f885b85", 35.6),
    _mm("faster_rcnn", "faster_rcnn_r50_caffe_dc5_1x_coco", "20201030_151909-531f0f43", 37.2),
    _mm("faster_rcnn", "faster_rcnn_r101_fpn_1x_coco", "20200130-f513f705", 39.4),
    _mm("faster_rcnn", "faster_rcnn_r101_fpn_2x_coco", "bbox_mAP-0.398_20200504_210455-1d2dac9c", 39.8),
    _mm("faster_rcnn", "faster_rcnn_x101_32x4d_fpn_1x_coco", "20200203-cff10310", 41.2),
    _mm("faster_rcnn", "faster_rcnn_x101_32x4d_fpn_2x_coco", "bbox_mAP-0.412_20200506_041400-64a12c0b", 41.2),
    _mm("faster_rcnn", "faster_rcnn_x101_64x4d_fpn_1x_coco", "20200204-833ee192", 42.1),
    _mm("faster_rcnn", "faster_rcnn_x101_64x4d_fpn_2x_coco", "20200512_161033-5961fa95", 41.6),
    _mm("retinanet", "retinanet_r101_fpn_1x_coco", "20200130-7a93545f", 38.5),
    _mm("retinanet", "retinanet_r101_fpn_2x_coco", "20200131-5560aee8", 38.9),
    _mm("retinanet", "retinanet_x101_32x4d_fpn_1x_coco", "20200130-5c8b7ec4", 39.9),
    _mm("retinanet", "retinanet_x101_32x4d_fpn_2x_coco", "20200131-237fc5e1", 40.1),
    _mm("retinanet", "retinanet_x101_64x4d_fpn_1x_coco", "20200130-366f5af1", 41.0),
    _mm("retinanet", "retinanet_x101_64x4d_fpn_2x_coco", "20200131-bca068ab", 40.8),
    _mm("cascade_rcnn", "cascade_rcnn_r50_fpn_1x_coco", "20200316-3dc56deb", 40.3),
    _mm("cascade_rcnn", "cascade_rcnn_r50_fpn_20e_coco", "bbox_mAP-0.41_20200504_175131-e9872a90", 41.0),
    _mm("cascade_rcnn", "cascade_rcnn_r101_fpn_1x_coco", "20200317-0b6a2fbf", 42.0),
    _mm("cascade_rcnn", "cascade_rcnn_r101_fpn_20e_coco", "bbox_mAP-0.425_20200504_231812-5057dcc5", 42.5),
    _mm("cascade_rcnn", "cascade_rcnn_x101_32x4d_fpn_1x_coco", "20200316-95c2deb6", 43.7),
    _mm("cascade_rcnn", "cascade_rcnn_x101_32x4d_fpn_20e_coco", "20200906_134608-9ae0a720", 43.7),
    _mm("cascade_rcnn", "cascade_rcnn_x101_64x4d_fpn_1x_coco", "20200515_075702-43ce6a30", 44.7),
    _mm("cascade_rcnn", "cascade_rcnn_x101_64x4d_fpn_20e_coco", "20200509_224357-051557b1", 44.5),
    _mm("rpn", "rpn_r50_fpn_1x_coco", "20200218-5525fa2e", 58.2, metric="proposal AR@1000"),
    _mm("rpn", "rpn_r101_fpn_1x_coco", "20200131-2ace2249", 59.7, metric="proposal AR@1000"),
    _mm("rpn", "rpn_x101_32x4d_fpn_1x_coco", "20200219-b02646c6", 60.6, metric="proposal AR@1000"),
    _mm("rpn", "rpn_x101_64x4d_fpn_1x_coco", "20200208-cde6f7dd", 61.0, metric="proposal AR@1000"),
    # ------------------------------------------------------------------ Detectron2 (COCO-Detection table)
    _d2("faster_rcnn_R_50_C4_1x", "137257644", "model_final_721ade.pkl", 35.7),
    _d2("faster_rcnn_R_50_DC5_1x", "137847829", "model_final_51d356.pkl", 37.3),
    _d2("faster_rcnn_R_50_FPN_1x", "137257794", "model_final_b275ba.pkl", 37.9),
    _d2("faster_rcnn_R_50_C4_3x", "137849393", "model_final_f97cb7.pkl", 38.4),
    _d2("faster_rcnn_R_50_DC5_3x", "137849425", "model_final_68d202.pkl", 39.0),
    _d2("faster_rcnn_R_50_FPN_3x", "137849458", "model_final_280758.pkl", 40.2),
    _d2("faster_rcnn_R_101_C4_3x", "138204752", "model_final_298dad.pkl", 41.1),
    _d2("faster_rcnn_R_101_DC5_3x", "138204841", "model_final_3e0943.pkl", 40.6),
    _d2("faster_rcnn_R_101_FPN_3x", "137851257", "model_final_f6e8b1.pkl", 42.0),
    _d2("faster_rcnn_X_101_32x8d_FPN_3x", "139173657", "model_final_68b088.pkl", 43.0),
    _d2("retinanet_R_50_FPN_1x", "190397773", "model_final_bfca0b.pkl", 37.4),
    _d2("retinanet_R_50_FPN_3x", "190397829", "model_final_5bd44e.pkl", 38.7),
    _d2("retinanet_R_101_FPN_3x", "190397697", "model_final_971ab9.pkl", 40.4),
    _d2("rpn_R_50_C4_1x", "137258005", "model_final_450694.pkl", 51.6, metric="proposal AR@1000"),
    _d2("rpn_R_50_FPN_1x", "137258492", "model_final_02ce48.pkl", 58.0, metric="proposal AR@1000"),
    _d2("fast_rcnn_R_50_FPN_1x", "137635226", "model_final_e5f7ce.pkl", 37.8),
    _d2("faster_rcnn_R_50_FPN_noaug_1x", "137781054", "model_final_7ab50c.pkl", 36.9,
        group="Detectron1-Comparisons"),
    _d2("faster_rcnn_R_50_C4", "142202221", "model_final_b1acc2.pkl", 51.9, group="PascalVOC-Detection",
        dataset="VOC2007 test"),
    # ------------------------------------------------------------------ torchvision (COCO, 91 class slots)
    ZooEntry("torchvision/retinanet_resnet50_fpn_coco", "kiln::torchvision/retinanet_resnet50_fpn_coco.py",
             _TV + "retinanet_resnet50_fpn_coco-eeacb38b.pth", "eeacb38b", box_ap=36.4,
             publisher="torchvision"),
    ZooEntry("torchvision/fasterrcnn_resnet50_fpn_coco", "kiln::torchvision/fasterrcnn_resnet50_fpn_coco.py",
             _TV + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", "258fb6c6", box_ap=37.0,
             publisher="torchvision"),
    ZooEntry("torchvision/fcos_resnet50_fpn_coco", "kiln::torchvision/fcos_resnet50_fpn_coco.py",
             _TV + "fcos_resnet50_fpn_coco-99b0c9b7.pth", "99b0c9b7", box_ap=39.2, publisher="torchvision"),
    # ------------------------------------------------------------------ kiln's own small models
    ZooEntry("shapes_retinanet_r18_fpn", "kiln::shapes/retinanet_r18_fpn_shapes.py",
             note="the `make demo` model; add its checkpoint with `kiln zoo add`"),
    ZooEntry("shapes_faster_rcnn_r18_fpn", "kiln::shapes/faster_rcnn_r18_fpn_shapes.py",
             note="small Faster R-CNN on the generated shapes data"),
    ZooEntry("shapes_fcos_r18_fpn", "kiln::shapes/fcos_r18_fpn_shapes.py",
             note="small FCOS on the generated shapes data"),
    ZooEntry("shapes_atss_r18_fpn", "kiln::shapes/atss_r18_fpn_shapes.py",
             note="small ATSS on the generated shapes data"),
    # ------------------------------------------------------------------ ImageNet backbones
    *[ZooEntry(f"torchvision/{n}", None, f"{_TV}{n}-{h}.pth", h, note=f"ImageNet backbone (torchvision://{n})",
               publisher="torchvision")
      for n, h in (("resnet18", "f37072fd"), ("resnet34", "b627a593"), ("resnet50", "0676ba61"),
                   ("resnet101", "63fe2227"), ("resnet152", "394f9c45"))],
    *[ZooEntry(f"detectron2/ImageNetPretrained/MSRA/{n}", None, f"{_D2}ImageNetPretrained/MSRA/{n}.pkl",
               note=f"MSRA caffe-style ImageNet backbone, Caffe2 blob names "
                    f"(detectron2://ImageNetPretrained/MSRA/{n}.pkl)", publisher="Detectron2")
      for n in ("R-50", "R-101")],
    ZooEntry("open-mmlab/detectron2/resnet50_caffe", None,
             "https://download.openmmlab.com/pretrain/third_party/resnet50_msra-5891d200.pth", "5891d200",
             note="MSRA R-50 in MMDetection names (open-mmlab://detectron2/resnet50_caffe)",
             publisher="MMDetection"),
]
