"""MM-style config pipeline steps: loading, photometric, formatting, and ``Compose``.

A pipeline is a list of ``dict(type=..., ...)`` steps (seed 001 ``train_pipeline``), each a
callable ``results -> results`` (or ``None`` to reject the sample). The input ``results`` from a
dataset (MM convention) holds ``img_info`` (``filename``, ``height``, ``width``, ``id``),
``img_prefix``, ``ann_info`` (``bboxes`` N x 4 XYXY float32, ``labels`` int64, ``bboxes_ignore``,
optional ``masks``) and ``image_id``. ``Collect`` produces the batch contract of
``docs/architecture.md``. Geometric steps live in :mod:`.pipelines_geometric`.

Bookkeeping keys a step may add: ``img_fields``/``bbox_fields``/``mask_fields``/``seg_fields``
name which entries are images, box arrays, instance masks and label maps, so geometric steps
move all of them with one :class:`~kiln.data.transforms.transform.Transform`.
"""

from __future__ import annotations

import logging
import os
import os.path as osp
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from kiln.image.io import CorruptImageError
from kiln.registry import TRANSFORMS

from .dialect import pipeline_dialect, prepare_steps
from .transform import BlendTransform, ChannelPermuteTransform, HueSaturationTransform

logger = logging.getLogger(__name__)

__all__ = [
    "Compose",
    "LoadImageFromFile",
    "LoadAnnotations",
    "Normalize",
    "PhotoMetricDistortion",
    "DefaultFormatBundle",
    "ImageToTensor",
    "ToTensor",
    "Collect",
    "DEFAULT_META_KEYS",
    "read_image_file",
]

DEFAULT_META_KEYS = ("filename", "ori_filename", "image_id", "ori_shape", "img_shape", "pad_shape",
                     "scale_factor", "flip", "flip_direction", "img_norm_cfg")


@TRANSFORMS.register_module()
class Compose:
    """Run steps in order; a step returning ``None`` rejects the sample (``Compose`` returns ``None``).

    The step list is read as a whole first (:mod:`.dialect`): a pipeline written for MMDetection 3.x
    (ending in ``PackDetInputs``) and one written for 2.x (ending in ``Collect``) each mean what they
    meant there, and a list mixing both generations is refused.

    Args:
        transforms: config dicts (built from ``TRANSFORMS``) or callables.
        cfg_path: where these steps sit in the config (e.g. ``'data.train.pipeline'``), for errors.
        dialect: ``'mmdet3'``/``'mmdet2'`` when the caller knows (steps nested in ``TestTimeAug``);
            ``None`` reads it from the steps.
    """

    def __init__(self, transforms: Sequence[Mapping | Callable], cfg_path: str = "pipeline",
                 dialect: str | None = None) -> None:
        if isinstance(transforms, Mapping) or not isinstance(transforms, Sequence):
            raise TypeError(f"{cfg_path} must be a list of transform dicts or callables, got "
                            f"{type(transforms).__name__}")
        detected = pipeline_dialect(transforms, cfg_path)
        if dialect is not None and detected is not None and detected != dialect:
            outer = {"mmdet2": "MMDetection 2.x (MultiScaleFlipAug)",
                     "mmdet3": "MMDetection 3.x (TestTimeAug)"}
            raise ValueError(f"{cfg_path}: these steps are written for {detected}, inside a {outer[dialect]} "
                             "wrapper; write the wrapper and its steps in one generation.")
        self.dialect = detected or dialect
        transforms = prepare_steps(transforms, self.dialect, cfg_path)
        self.transforms: list[Callable] = []
        for i, t in enumerate(transforms):
            if isinstance(t, Mapping):
                t = TRANSFORMS.build(t, cfg_path=f"{cfg_path}[{i}]")
            if not callable(t):
                raise TypeError(f"{cfg_path}[{i}] must be a dict(type=...) or a callable, got {t!r}")
            self.transforms.append(t)

    def __call__(self, results: dict) -> dict | None:
        for t in self.transforms:
            results = t(results)
            if results is None:
                return None
        return results

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


def read_image_file(path: str, flag: str = "color") -> np.ndarray:
    """Decode an image file (BGR for ``'color'``), the fast way for local files.

    Local paths go straight to ``cv2.imread`` (measured ~1.5 ms/image faster than reading bytes
    and decoding them); URIs (``s3://``, ``memory://``...) and any file cv2 cannot read go
    through :func:`kiln.image.imread`, whose errors name the file and say whether it is missing
    or corrupt.
    """
    flags = {"color": cv2.IMREAD_COLOR, "grayscale": cv2.IMREAD_GRAYSCALE,
             "unchanged": cv2.IMREAD_UNCHANGED}
    if flag not in flags:
        raise ValueError(f"flag must be one of {sorted(flags)}, got {flag!r}")
    if "://" not in path:
        img = cv2.imread(path, flags[flag])
        if img is not None or osp.isfile(path):
            check_image_complete(path)  # (a clearer message than "cannot decode" for a cut file)
        if img is not None:
            return img
    from kiln.image import imread

    return imread(path, flag=flag)


def check_image_complete(path: str) -> None:
    """Raise :class:`CorruptImageError` for a JPEG or PNG file that was cut short.

    OpenCV decodes a truncated JPEG into a partly grey image with only libjpeg's "Premature end of
    JPEG file" on stderr (no file name, no error); training would go on on a half image. A complete
    JPEG ends with the EOI marker (FF D9, maybe followed by padding), a complete PNG with its IEND
    chunk; reading the first and last bytes costs one small read, not a decode.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read()
    except OSError:
        return  # (the decoder already read it; nothing more to say)
    if head[:3] == b"\xff\xd8\xff":
        if b"\xff\xd9" not in tail:
            raise CorruptImageError(
                f"Image '{path}' is truncated: a JPEG file ends with the EOI marker (FF D9) and this one "
                f"({size} bytes) does not, so it would decode only partly. Re-create or re-download it, "
                "remove it from the annotations, or set skip_corrupt=True on LoadImageFromFile to skip such "
                "images (and count them) during training.")
    elif head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail[-12:]:
        raise CorruptImageError(
            f"Image '{path}' is truncated: a PNG file ends with an IEND chunk and this one ({size} bytes) "
            "does not. Re-create or re-download it, remove it from the annotations, or set "
            "skip_corrupt=True on LoadImageFromFile to skip such images (and count them) during training.")


def check_backend(owner: str, key: str, args: Mapping | None) -> None:
    """Refuse a storage backend other than local files (``backend_args``/``file_client_args``).

    kiln reads local paths (and fsspec URIs through :func:`kiln.image.imread`); MMEngine's
    petrel/memcached/lmdb/http clients are not available, and reading with a local reader what the
    config says lives elsewhere would silently read the wrong thing.
    """
    if args is None:
        return
    if not isinstance(args, Mapping):
        raise TypeError(f"{owner} {key} must be None or a dict, got {type(args).__name__}")
    backend = args.get("backend", "local")
    extra = sorted(set(args) - {"backend"})
    if backend not in ("local", "disk") or extra:
        raise ValueError(
            f"{owner} {key}={dict(args)!r}: kiln reads local files only (backend 'local'/'disk' with no "
            "other options); remote or mapped backends (petrel, memcached, lmdb, http, path_mapping) are "
            f"not supported. Copy the data to a local folder and set {key}=None.")


def _decode_pillow(path: str, flag: str) -> np.ndarray:
    """Decode with Pillow as MMCV's 'pillow' backend does: colour images come back BGR."""
    from PIL import Image

    with Image.open(path) as im:
        if flag == "color":
            return np.asarray(im.convert("RGB"))[..., ::-1].copy()
        if flag == "grayscale":
            return np.asarray(im.convert("L")).copy()
        return np.asarray(im).copy()


@TRANSFORMS.register_module()
class LoadImageFromFile:
    """Read ``img_prefix/img_info['filename']`` into ``results['img']`` (BGR uint8, H x W x 3).

    Sets ``filename``, ``ori_filename``, ``img``, ``img_shape``, ``ori_shape``, ``img_fields``.

    Args:
        to_float32: convert to float32 right away (MM compatibility).
        color_type: ``'color'`` (3-channel BGR), ``'grayscale'`` or ``'unchanged'``.
        imdecode_backend: ``'cv2'`` or ``'pillow'`` (MMDetection 3.x; others refused).
        ignore_empty: a missing file rejects the sample (``None``) instead of raising (3.x).
        skip_corrupt: a corrupt or truncated file rejects the sample (``None``: a training dataset
            then draws another one) with a warning naming it and counting the skips, instead of
            raising :class:`CorruptImageError`.
        backend_args / file_client_args: storage backend (3.x / 2.x spelling); local files only,
            anything else is refused (:func:`check_backend`).
    """

    def __init__(self, to_float32: bool = False, color_type: str = "color",
                 file_client_args: Mapping | None = None, *, backend_args: Mapping | None = None,
                 imdecode_backend: str = "cv2", ignore_empty: bool = False,
                 skip_corrupt: bool = False) -> None:
        if color_type not in ("color", "grayscale", "unchanged"):
            raise ValueError(f"LoadImageFromFile color_type must be 'color', 'grayscale' or 'unchanged', "
                             f"got {color_type!r}")
        if imdecode_backend not in ("cv2", "pillow"):
            raise ValueError(f"LoadImageFromFile imdecode_backend={imdecode_backend!r}: kiln decodes with "
                             "'cv2' or 'pillow'; turbojpeg/tifffile are not available.")
        check_backend("LoadImageFromFile", "file_client_args", file_client_args)
        check_backend("LoadImageFromFile", "backend_args", backend_args)
        self.to_float32, self.color_type = to_float32, color_type
        self.imdecode_backend, self.ignore_empty = imdecode_backend, ignore_empty
        self.skip_corrupt = bool(skip_corrupt)
        self.skipped = 0  # corrupt images skipped by this (worker's copy of the) transform

    def __call__(self, results: dict) -> dict | None:
        if "img_info" not in results or "filename" not in results["img_info"]:
            raise KeyError(f"LoadImageFromFile needs results['img_info']['filename']; got keys "
                           f"{sorted(results)}. The dataset must provide img_info (MM convention).")
        prefix = results.get("img_prefix")
        rel = results["img_info"]["filename"]
        filename = osp.join(prefix, rel) if prefix else rel
        try:
            if self.imdecode_backend == "pillow":
                if not osp.isfile(filename):
                    raise FileNotFoundError(filename)
                img = _decode_pillow(filename, self.color_type)
            else:
                img = read_image_file(filename, self.color_type)
        except (CorruptImageError, ValueError, OSError) as e:
            if isinstance(e, FileNotFoundError):
                if self.ignore_empty:
                    return None
                raise FileNotFoundError(
                    f"LoadImageFromFile could not read image '{filename}' (img_prefix={prefix!r}, "
                    f"filename={rel!r}): the file does not exist; check img_prefix and the annotation's "
                    "file_name.") from None
            if not self.skip_corrupt:
                if isinstance(e, CorruptImageError):
                    raise
                raise CorruptImageError(f"LoadImageFromFile could not decode '{filename}': {e}. Set "
                                        "skip_corrupt=True to skip such images during training.") from e
            self.skipped += 1
            logger.warning("LoadImageFromFile: skipping corrupt image %s (%d skipped so far in this "
                           "process): %s", filename, self.skipped, str(e).splitlines()[0])
            return None
        if self.to_float32:
            img = img.astype(np.float32)
        results["filename"] = filename
        results["ori_filename"] = rel
        results["img"] = img
        results["img_shape"] = img.shape
        results["ori_shape"] = img.shape
        results["img_fields"] = ["img"]
        return results

    def __repr__(self) -> str:
        return (f"LoadImageFromFile(to_float32={self.to_float32}, color_type={self.color_type!r}, "
                f"imdecode_backend={self.imdecode_backend!r})")


def load_masks(entries: Sequence[Any], h: int, w: int, poly2mask: bool, where: str) -> Any:
    """One image's COCO ``segmentation`` entries as :class:`~kiln.structures.BitmapMasks`
    (``poly2mask``: polygons rasterized, RLE decoded) or :class:`~kiln.structures.PolygonMasks`.

    Polygon parts with fewer than 3 points are dropped, as MMDetection's loader does. Polygons cannot
    be made from an RLE, so ``poly2mask=False`` refuses one, naming it.
    """
    from kiln.structures import BitmapMasks, PolygonMasks
    from kiln.structures.polygon_ops import segmentation_to_bitmask, valid_polygons

    for i, segm in enumerate(entries):
        if segm is None:
            raise KeyError(f"{where}: instance {i} has no 'segmentation'; with_mask=True needs one per "
                           "instance (drop with_mask, or fix the annotation).")
    if poly2mask:
        arrays = [segmentation_to_bitmask(segm, h, w) for segm in entries]
        return BitmapMasks(np.stack(arrays) if arrays else np.zeros((0, h, w), np.uint8), h, w)
    rle = [i for i, segm in enumerate(entries) if not isinstance(segm, (list, tuple))]
    if rle:
        raise ValueError(f"{where}: instances {rle[:5]} are RLE masks, which cannot be kept as polygons "
                         "(LoadAnnotations poly2mask=False); set poly2mask=True.")
    return PolygonMasks([valid_polygons(segm) for segm in entries], h, w)


@TRANSFORMS.register_module()
class LoadAnnotations:
    """Copy boxes/labels (and optionally masks) from ``results['ann_info']`` into ``gt_*`` keys.

    Args:
        with_bbox: load ``gt_bboxes`` (N x 4 float32) and ``gt_bboxes_ignore``.
        with_label: load ``gt_labels`` (int64).
        with_mask: load ``gt_masks`` from ``ann_info['masks']`` (a COCO polygon list, uncompressed or
            compressed RLE per instance): ``poly2mask=True`` gives :class:`~kiln.structures.BitmapMasks`
            (uint8), ``False`` :class:`~kiln.structures.PolygonMasks` (moved exactly by geometric
            steps; RLE is refused). Crowd masks (``ann_info['masks_ignore']``, next to
            ``bboxes_ignore``) load as ``gt_masks_ignore`` bitmaps.
        with_seg: load ``gt_semantic_seg`` (H x W class indices) from
            ``seg_prefix/ann_info['seg_map']``; geometric steps move it with nearest-neighbour
            resampling and ``Pad`` fills it with 255 (ignore).
        empty_without_ann: results without ``ann_info`` (an image without annotations, e.g.
            inference or a test-dev split) get empty ground truth instead of an error, as
            MMDetection 3.x's ``LoadAnnotations`` does; :class:`Compose` turns it on in 3.x pipelines.
        backend_args / file_client_args: local files only; box_type ``'hbox'`` only;
            ``with_keypoints``/``reduce_zero_label``/other ``imdecode_backend`` are refused.
    """

    def __init__(self, with_bbox: bool = True, with_label: bool = True, with_mask: bool = False,
                 with_seg: bool = False, poly2mask: bool = True,
                 file_client_args: Mapping | None = None, *, backend_args: Mapping | None = None,
                 box_type: str | None = "hbox", with_keypoints: bool = False,
                 reduce_zero_label: bool = False, imdecode_backend: str = "cv2",
                 empty_without_ann: bool = False) -> None:
        self.empty_without_ann = empty_without_ann
        check_backend("LoadAnnotations", "file_client_args", file_client_args)
        check_backend("LoadAnnotations", "backend_args", backend_args)
        if box_type not in ("hbox", None):
            raise ValueError(f"LoadAnnotations box_type={box_type!r}: kiln's boxes are horizontal XYXY "
                             "('hbox'); rotated/quadrilateral boxes are not implemented.")
        if with_keypoints:
            raise ValueError("LoadAnnotations with_keypoints=True: keypoints are not implemented in kiln; "
                             "remove the key.")
        if reduce_zero_label:
            raise ValueError("LoadAnnotations reduce_zero_label=True is not implemented in kiln (label maps "
                             "are read as stored); remove the key or relabel the maps.")
        if imdecode_backend != "cv2":
            raise ValueError(f"LoadAnnotations imdecode_backend={imdecode_backend!r}: kiln decodes label "
                             "maps with cv2 only.")
        self.with_seg = with_seg
        self.with_bbox, self.with_label = with_bbox, with_label
        self.with_mask, self.poly2mask = with_mask, poly2mask

    def __call__(self, results: dict) -> dict:
        ann = results.get("ann_info")
        if ann is None and self.empty_without_ann:
            ann = dict(bboxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64), masks=[])
        if ann is None:
            raise KeyError(f"LoadAnnotations needs results['ann_info'] (keys: {sorted(results)}); "
                           "test-mode datasets do not provide it, so drop LoadAnnotations from test "
                           "pipelines.")
        if self.with_bbox:
            boxes = np.asarray(ann["bboxes"], dtype=np.float32).reshape(-1, 4)
            results["gt_bboxes"] = boxes.copy()
            results.setdefault("bbox_fields", [])
            results["bbox_fields"].append("gt_bboxes")
            ignore = ann.get("bboxes_ignore")
            if ignore is not None:
                results["gt_bboxes_ignore"] = np.asarray(ignore, dtype=np.float32).reshape(-1, 4).copy()
                results["bbox_fields"].append("gt_bboxes_ignore")
                if self.with_label and ann.get("labels_ignore") is not None:
                    # Kept in step with gt_bboxes_ignore (crops drop both) for PackDetInputs.
                    labels_ignore = np.asarray(ann["labels_ignore"], np.int64).reshape(-1)
                    results["gt_labels_ignore"] = labels_ignore.copy()
        if self.with_label:
            results["gt_labels"] = np.asarray(ann["labels"], dtype=np.int64).reshape(-1).copy()
        if self.with_mask:
            if "masks" not in ann:
                raise KeyError("LoadAnnotations(with_mask=True) needs ann_info['masks'] (one polygon list "
                               "or RLE per box); the dataset did not provide it.")
            h, w = results["img_info"]["height"], results["img_info"]["width"]
            where = f"LoadAnnotations(with_mask=True) on image {results.get('image_id', '?')}"
            results["gt_masks"] = load_masks(ann["masks"], h, w, self.poly2mask, where)
            results.setdefault("mask_fields", []).append("gt_masks")
            if ann.get("masks_ignore") is not None and "gt_bboxes_ignore" in results:
                # Crowd regions are pixel regions (usually RLE): always bitmaps.
                results["gt_masks_ignore"] = load_masks(ann["masks_ignore"], h, w, True, where + " (crowd)")
                results["mask_fields"].append("gt_masks_ignore")
        if self.with_seg:
            self._load_seg(results, ann)
        return results

    @staticmethod
    def _load_seg(results: dict, ann: Mapping) -> None:
        if "seg_map" not in ann:
            raise KeyError("LoadAnnotations(with_seg=True) needs ann_info['seg_map'] (the label-map file "
                           "name); the dataset did not provide it.")
        prefix = results.get("seg_prefix")
        path = osp.join(prefix, ann["seg_map"]) if prefix else ann["seg_map"]
        seg = read_image_file(path, "unchanged")
        if seg.ndim == 3:
            raise ValueError(f"Semantic label map '{path}' has {seg.shape[2]} channels; expected a "
                             "single-channel image of class indices.")
        results["gt_semantic_seg"] = seg
        results.setdefault("seg_fields", []).append("gt_semantic_seg")

    def __repr__(self) -> str:
        return (f"LoadAnnotations(with_bbox={self.with_bbox}, with_label={self.with_label}, "
                f"with_mask={self.with_mask}, with_seg={self.with_seg}, poly2mask={self.poly2mask})")


@TRANSFORMS.register_module()
class Normalize:
    """``img = (img[..., ::-1 if to_rgb] - mean) / std`` as float32; records ``img_norm_cfg``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_rgb: bool = True) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize mean {list(mean)} and std {list(std)} must have the same length")
        if np.any(self.std == 0):
            raise ValueError(f"Normalize std must be non-zero, got {list(std)}")
        self.to_rgb = to_rgb
        # cv2's arithmetic takes a 4-tuple of float64 as a per-channel scalar.
        self._mean64 = np.asarray(mean, np.float64).reshape(1, -1)
        self._inv_std64 = 1.0 / np.asarray(std, np.float64).reshape(1, -1)

    def _normalize(self, img: np.ndarray) -> np.ndarray:
        channels = 1 if img.ndim == 2 else img.shape[2]
        if channels != self.mean.size and self.mean.size != 1:
            raise ValueError(f"Normalize has {self.mean.size} mean values but the image has "
                             f"{channels} channels")
        if channels > 4:
            out = img.astype(np.float32)
            if self.to_rgb and channels == 3:
                out = out[..., ::-1]
            return np.ascontiguousarray((out - self.mean) / self.std, dtype=np.float32)
        if self.to_rgb and channels == 3:
            # Swap channels while the image is still uint8 (a quarter of the bytes of float32).
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if img.dtype == np.uint8:
            # uint8 -> float32 and the mean subtraction in one pass; always a fresh buffer.
            out = cv2.subtract(img, self._mean64, dtype=cv2.CV_32F)
        else:
            out = img.astype(np.float32, copy=not (self.to_rgb and channels == 3))
            cv2.subtract(out, self._mean64, out)
        cv2.multiply(out, self._inv_std64, out)
        return out.reshape(img.shape)

    def __call__(self, results: dict) -> dict:
        for key in results.get("img_fields", ["img"]):
            results[key] = self._normalize(results[key])
        results["img_norm_cfg"] = dict(mean=self.mean.copy(), std=self.std.copy(), to_rgb=self.to_rgb)
        return results

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()}, to_rgb={self.to_rgb})"


@TRANSFORMS.register_module()
class PhotoMetricDistortion:
    """SSD-style colour jitter on a BGR image, each step with probability 1/2: brightness delta,
    contrast (before or after the HSV steps), saturation scale, hue shift, channel shuffle.
    Works in float32 (uint8 inputs are converted), like MMDetection's."""

    def __init__(self, brightness_delta: float = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: float = 18) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def __call__(self, results: dict) -> dict:
        img = results["img"].astype(np.float32)
        rand = np.random
        if rand.randint(2):
            delta = rand.uniform(-self.brightness_delta, self.brightness_delta)
            img = BlendTransform(delta, 1.0, 1.0).apply_image(img)
        contrast_first = rand.randint(2) == 1

        def contrast(im: np.ndarray) -> np.ndarray:
            if rand.randint(2):
                alpha = rand.uniform(self.contrast_lower, self.contrast_upper)
                im = BlendTransform(0.0, 0.0, alpha).apply_image(im)
            return im

        if contrast_first:
            img = contrast(img)
        sat = rand.uniform(self.saturation_lower, self.saturation_upper) if rand.randint(2) else 1.0
        hue = rand.uniform(-self.hue_delta, self.hue_delta) if rand.randint(2) else 0.0
        if sat != 1.0 or hue != 0.0:
            img = HueSaturationTransform(hue, sat, "BGR").apply_image(img)
        if not contrast_first:
            img = contrast(img)
        if rand.randint(2):
            img = ChannelPermuteTransform(rand.permutation(3)).apply_image(img)
        results["img"] = img
        return results

    def __repr__(self) -> str:
        return (f"PhotoMetricDistortion(brightness_delta={self.brightness_delta}, contrast_range="
                f"({self.contrast_lower}, {self.contrast_upper}), saturation_range=({self.saturation_lower}, "
                f"{self.saturation_upper}), hue_delta={self.hue_delta})")


def _image_to_tensor(img: Any):
    import torch

    if isinstance(img, torch.Tensor):
        return img
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _to_tensor(data: Any):
    import torch

    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, (int, float)):
        return torch.tensor(data)
    if isinstance(data, Sequence) and not isinstance(data, str):
        return torch.as_tensor(data)
    raise TypeError(f"Cannot convert {type(data).__name__} to a tensor")


def _default_meta(results: dict) -> None:
    """Fill the meta keys of the batch contract that earlier steps may not have set."""
    img = results.get("img")
    shape = getattr(img, "shape", None)
    if shape is not None and "img_shape" not in results:
        results["img_shape"] = shape
    if "img_shape" in results:
        results.setdefault("pad_shape", results["img_shape"])
    results.setdefault("scale_factor", np.ones(4, dtype=np.float32))
    results.setdefault("flip", False)
    results.setdefault("flip_direction", None)
    channels = 1 if shape is None or len(shape) < 3 else shape[2]
    results.setdefault("img_norm_cfg", dict(mean=np.zeros(channels, np.float32),
                                            std=np.ones(channels, np.float32), to_rgb=False))
    if "image_id" not in results and "img_info" in results and "id" in results["img_info"]:
        results["image_id"] = results["img_info"]["id"]


@TRANSFORMS.register_module()
class DefaultFormatBundle:
    """Convert ``img`` to a float32 C x H x W tensor, ``gt_bboxes``/``gt_bboxes_ignore`` to float32
    and ``gt_labels`` to int64 tensors (``gt_masks`` stay mask structures, as in MMDetection),
    ``gt_semantic_seg`` to an int64 1 x H x W tensor; fill default
    ``pad_shape``, ``scale_factor``, ``flip`` and ``img_norm_cfg`` when no step set them."""

    def __call__(self, results: dict) -> dict:
        import torch

        _default_meta(results)
        if "img" in results:
            img = np.asarray(results["img"])
            if img.dtype != np.float32:
                img = img.astype(np.float32)
            results["img"] = _image_to_tensor(img)
        for key in ("gt_bboxes", "gt_bboxes_ignore"):
            if key in results:
                results[key] = torch.as_tensor(np.asarray(results[key], np.float32).reshape(-1, 4))
        if "gt_labels" in results:
            results["gt_labels"] = torch.as_tensor(np.asarray(results["gt_labels"], np.int64).reshape(-1))
        if isinstance(results.get("gt_semantic_seg"), np.ndarray):
            seg = results["gt_semantic_seg"].astype(np.int64)
            results["gt_semantic_seg"] = torch.from_numpy(np.ascontiguousarray(seg[None]))  # 1 x H x W
        return results

    def __repr__(self) -> str:
        return "DefaultFormatBundle()"


@TRANSFORMS.register_module()
class ImageToTensor:
    """Convert each H x W x C image under ``keys`` to a C x H x W tensor (dtype kept)."""

    def __init__(self, keys: Sequence[str] = ("img",)) -> None:
        self.keys = list(keys)

    def __call__(self, results: dict) -> dict:
        for key in self.keys:
            results[key] = _image_to_tensor(results[key])
        return results

    def __repr__(self) -> str:
        return f"ImageToTensor(keys={self.keys})"


@TRANSFORMS.register_module()
class ToTensor:
    """Convert each value under ``keys`` to a tensor (numpy arrays, numbers, sequences)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)

    def __call__(self, results: dict) -> dict:
        for key in self.keys:
            results[key] = _to_tensor(results[key])
        return results

    def __repr__(self) -> str:
        return f"ToTensor(keys={self.keys})"


@TRANSFORMS.register_module()
class Collect:
    """Keep ``keys`` and gather ``meta_keys`` into ``img_metas``: the batch contract's per-image dict.

    ``img`` always leaves as a float32 C x H x W tensor and ``gt_bboxes``/``gt_labels`` as float32 /
    int64 tensors, whatever formatting step (if any) ran before.
    """

    def __init__(self, keys: Sequence[str], meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        self.keys, self.meta_keys = list(keys), list(meta_keys)

    def __call__(self, results: dict) -> dict:
        import torch

        _default_meta(results)
        data: dict[str, Any] = {}
        metas: dict[str, Any] = {}
        for key in self.meta_keys:
            if key not in results:
                raise KeyError(f"Collect: meta key '{key}' is not in the results (keys: {sorted(results)}); "
                               "remove it from meta_keys or add the step that sets it.")
            metas[key] = results[key]
        data["img_metas"] = metas
        for key in self.keys:
            if key not in results:
                hint = (" Add dict(type='LoadAnnotations', with_bbox=True) before it."
                        if key.startswith("gt_") else "")
                raise KeyError(f"Collect: key '{key}' is not in the results (keys: {sorted(results)}).{hint}")
            value = results[key]
            if key == "img":
                if not isinstance(value, torch.Tensor):
                    value = _image_to_tensor(np.asarray(value, dtype=np.float32))
                elif value.dtype != torch.float32:
                    value = value.float()
            elif key in ("gt_bboxes", "gt_bboxes_ignore") and not isinstance(value, torch.Tensor):
                value = torch.as_tensor(np.asarray(value, np.float32).reshape(-1, 4))
            elif key == "gt_labels" and not isinstance(value, torch.Tensor):
                value = torch.as_tensor(np.asarray(value, np.int64).reshape(-1))
            data[key] = value
        return data

    def __repr__(self) -> str:
        return f"Collect(keys={self.keys}, meta_keys={self.meta_keys})"
