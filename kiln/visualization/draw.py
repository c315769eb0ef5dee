"""Draw detection boxes (and instance masks, blended in the box's colour) with class names and scores
on images (OpenCV, BGR uint8).

Example::

    >>> import numpy as np
    >>> img = np.zeros((64, 64, 3), np.uint8)
    >>> out = draw_boxes(img, [[4, 4, 40, 30]], labels=[1], scores=[0.9], class_names=['cat', 'dog'])
    >>> out.shape, bool(out.any()), bool(img.any())
    ((64, 64, 3), True, False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

__all__ = ["Visualizer", "color_for_label", "draw_boxes", "image_from_tensor", "mask_array"]

# Distinct, saturated BGR colours; labels cycle through them.
_PALETTE = [
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
]


def color_for_label(label: int) -> tuple[int, int, int]:
    """A stable BGR colour for class index ``label``."""
    return _PALETTE[int(label) % len(_PALETTE)]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "tensor") and hasattr(x.tensor, "detach"):  # kiln.structures.Boxes
        x = x.tensor.detach().cpu().numpy()
    return np.asarray(x)


def mask_array(masks: Any, n: int, height: int, width: int, what: str = "masks") -> np.ndarray:
    """``masks`` (a bool/0-1 ``(N, H, W)`` tensor or array, or a kiln mask structure) as a bool array,
    checked to hold ``n`` masks of the image's ``height x width``."""
    if hasattr(masks, "to_ndarray"):  # BitmapMasks / PolygonMasks / BitMasks
        arr = masks.to_ndarray()
    else:
        arr = _to_numpy(masks)
    arr = np.asarray(arr).astype(bool, copy=False)
    if arr.ndim != 3 or len(arr) != n or arr.shape[1:] != (height, width):
        raise ValueError(f"{what}: expected {n} masks of the image's size {height}x{width} (N x H x W), got "
                         f"shape {arr.shape}. Predicted masks must be pasted at the original image size.")
    return arr


def blend_mask(image: np.ndarray, mask: np.ndarray, color: Sequence[int], alpha: float) -> None:
    """Paint ``color`` over ``mask`` in ``image`` (in place), ``alpha`` of it over the pixels below."""
    sel = mask.astype(bool, copy=False)
    if alpha >= 1.0:
        image[sel] = color
    else:
        mixed = alpha * np.asarray(color, np.float32) + (1.0 - alpha) * image[sel].astype(np.float32)
        image[sel] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def image_from_tensor(img: Any, img_norm_cfg: Mapping | None = None,
                      image_format: str = "BGR") -> np.ndarray:
    """Turn a model-input image back into a displayable ``H x W x 3`` BGR uint8 array.

    Accepts C x H x W tensors/arrays or H x W x C arrays; undoes ``Normalize`` when its
    ``img_norm_cfg`` is given (``to_rgb=True`` means the tensor is RGB).
    """
    arr = _to_numpy(img).astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    rgb = image_format == "RGB"
    if img_norm_cfg is not None:
        std = np.asarray(img_norm_cfg["std"], np.float32)
        arr = arr * std + np.asarray(img_norm_cfg["mean"], np.float32)
        rgb = bool(img_norm_cfg.get("to_rgb", False))
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif rgb:
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(np.clip(arr, 0, 255).round().astype(np.uint8))


def draw_boxes(image: np.ndarray, boxes: Any, labels: Any = None, scores: Any = None,
               class_names: Sequence[str] | None = None, score_thr: float = 0.0,
               color: tuple[int, int, int] | None = None, thickness: int | None = None,
               font_scale: float | None = None, masks: Any = None, mask_alpha: float = 0.5) -> np.ndarray:
    """Return a copy of BGR ``image`` with XYXY ``boxes`` drawn, each labelled
    ``"<class name> <score>"`` (names from ``class_names`` when given, else the index).

    ``masks`` (one ``H x W`` mask per box, at the image's size) are blended under their boxes in the
    same colour, ``mask_alpha`` opaque. Boxes scoring below ``score_thr`` are skipped with their masks.
    Line width and font scale default to values proportional to the image size, so labels stay
    readable on small and large images.
    """
    out = np.ascontiguousarray(image.copy() if image.dtype == np.uint8 else image_from_tensor(image))
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    boxes = _to_numpy(boxes).reshape(-1, 4).astype(np.float64)
    n = len(boxes)
    labels = None if labels is None else _to_numpy(labels).reshape(-1).astype(int)
    scores = None if scores is None else _to_numpy(scores).reshape(-1).astype(float)
    for name, arr in (("labels", labels), ("scores", scores)):
        if arr is not None and len(arr) != n:
            raise ValueError(f"draw_boxes: {n} boxes but {len(arr)} {name}")
    h, w = out.shape[:2]
    thickness = thickness or max(1, round(min(h, w) / 200))
    font_scale = font_scale or max(0.3, min(h, w) / 600)
    masks = None if masks is None else mask_array(masks, n, h, w, "draw_boxes masks")

    def colour(i: int) -> tuple[int, int, int]:
        label = None if labels is None else int(labels[i])
        return color or (color_for_label(label) if label is not None else (0, 255, 0))

    shown = [i for i in range(n) if scores is None or scores[i] >= score_thr]
    if masks is not None:  # under the boxes and labels, so those stay readable
        for i in shown:
            blend_mask(out, masks[i], colour(i), mask_alpha)
    for i in shown:
        label = None if labels is None else int(labels[i])
        c = colour(i)
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[i])
        cv2.rectangle(out, (x0, y0), (x1, y1), c, thickness, cv2.LINE_8)  # crisp, exact colour
        parts = []
        if label is not None:
            if class_names is not None and 0 <= label < len(class_names):
                parts.append(str(class_names[label]))
            else:
                parts.append(str(label))
        if scores is not None:
            parts.append(f"{scores[i]:.2f}")
        if parts:
            _put_label(out, " ".join(parts), (x0, y0), c, font_scale)
    return out


def _put_label(img: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int],
               font_scale: float) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, font_scale, 1)
    x, y = max(0, corner[0]), corner[1]
    top = y - th - base - 2
    if top < 0:  # no room above the box: put the label inside it
        top = y
    cv2.rectangle(img, (x, top), (x + tw + 2, top + th + base + 2), color, -1)
    # Dark text on light backgrounds, white on dark ones.
    text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
    cv2.putText(img, text, (x + 1, top + th + 1), font, font_scale, text_color, 1, cv2.LINE_AA)


class Visualizer:
    """Accumulates drawings on one image (Detectron2's ``Visualizer`` in spirit).

    Args:
        image: ``H x W x 3`` uint8 array in ``image_format`` order, or a model-input tensor.
        class_names: names for label indices (e.g. ``MetadataCatalog.get(name).thing_classes``).
        image_format: ``'BGR'`` (OpenCV, default) or ``'RGB'``.

    Example::

        vis = Visualizer(cv2.imread(path), class_names=meta.thing_classes)
        vis.draw_instance_predictions(model_output).save('out.png')
    """

    def __init__(self, image: Any, class_names: Sequence[str] | None = None,
                 image_format: str = "BGR") -> None:
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"Visualizer image_format must be 'BGR' or 'RGB', got {image_format!r}")
        arr = np.asarray(image) if isinstance(image, np.ndarray) else None
        if arr is not None and arr.dtype == np.uint8 and arr.ndim == 3:
            self.image = np.ascontiguousarray(arr[:, :, ::-1] if image_format == "RGB" else arr.copy())
        else:
            self.image = image_from_tensor(image, image_format=image_format)
        self.class_names = list(class_names) if class_names is not None else None

    def draw_boxes(self, boxes: Any, labels: Any = None, scores: Any = None, score_thr: float = 0.0,
                   color: tuple[int, int, int] | None = None, masks: Any = None) -> Visualizer:
        """Draw XYXY boxes with optional labels/scores and masks (blended in the box colours);
        returns ``self`` for chaining."""
        self.image = draw_boxes(self.image, boxes, labels, scores, self.class_names, score_thr, color,
                                masks=masks)
        return self

    def draw_instance_predictions(self, predictions: Any, score_thr: float = 0.0) -> Visualizer:
        """Draw a model's eval output for one image: a dict with ``boxes``/``scores``/``labels`` and
        optional ``masks`` (kiln's model contract) or an ``Instances`` with ``pred_boxes``/``scores``/
        ``pred_classes``/optional ``pred_masks``."""
        if isinstance(predictions, Mapping):
            return self.draw_boxes(predictions["boxes"], predictions.get("labels"),
                                   predictions.get("scores"), score_thr, masks=predictions.get("masks"))
        if hasattr(predictions, "pred_boxes"):
            get = predictions.get if hasattr(predictions, "has") else lambda k: getattr(predictions, k)
            has = predictions.has if hasattr(predictions, "has") else lambda k: hasattr(predictions, k)
            return self.draw_boxes(get("pred_boxes"), get("pred_classes") if has("pred_classes") else None,
                                   get("scores") if has("scores") else None, score_thr,
                                   masks=get("pred_masks") if has("pred_masks") else None)
        raise TypeError("draw_instance_predictions expects a dict with 'boxes' (and 'labels', "
                        f"'scores') or Instances with 'pred_boxes'; got {type(predictions).__name__}")

    def draw_dataset_dict(self, record: Mapping[str, Any]) -> Visualizer:
        """Draw the ground truth of a standard dataset dict (``annotations`` with ``bbox``,
        ``bbox_mode``, ``category_id``, optional ``segmentation``); crowd regions are drawn gray."""
        from kiln.structures import BoxMode
        from kiln.structures.polygon_ops import segmentation_to_bitmask

        annos = record.get("annotations", [])
        boxes = [BoxMode.convert(list(a["bbox"]), BoxMode(a.get("bbox_mode", BoxMode.XYXY_ABS)),
                                 BoxMode.XYXY_ABS) for a in annos]
        h, w = self.image.shape[:2]

        def masks(idx: list[int]) -> np.ndarray | None:
            if not idx or any(annos[i].get("segmentation") is None for i in idx):
                return None  # boxes only unless every drawn annotation has a mask
            return np.stack([segmentation_to_bitmask(annos[i]["segmentation"], h, w) for i in idx])

        normal = [i for i, a in enumerate(annos) if not a.get("iscrowd", 0)]
        crowd = [i for i, a in enumerate(annos) if a.get("iscrowd", 0)]
        if normal:
            self.draw_boxes([boxes[i] for i in normal], [annos[i]["category_id"] for i in normal],
                            masks=masks(normal))
        if crowd:
            self.draw_boxes([boxes[i] for i in crowd], color=(128, 128, 128), masks=masks(crowd))
        return self

    def get_image(self, image_format: str = "BGR") -> np.ndarray:
        """The drawing as ``H x W x 3`` uint8 in ``image_format`` order."""
        return self.image if image_format == "BGR" else np.ascontiguousarray(self.image[:, :, ::-1])

    def save(self, path: str) -> str:
        """Write the drawing to ``path`` (format from the extension); returns the path."""
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        if not cv2.imwrite(str(path), self.image):
            raise OSError(f"Visualizer.save could not write '{path}'; check the extension (.png, .jpg) "
                          "and that the folder is writable.")
        return str(path)
