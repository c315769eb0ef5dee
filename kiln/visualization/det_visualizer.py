"""``DetLocalVisualizer``: MMDetection 3.x's detection visualizer, drawn with OpenCV.

MMDetection configs name it at the top level::

    vis_backends = [dict(type='LocalVisBackend')]
    visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')

:meth:`DetLocalVisualizer.add_datasample` draws one image's ground truth (left) and predictions
(right, scores above a threshold) side by side, each box in its class colour (the dataset
``palette``) with ``"<class name>: <score in %>"``, then writes the picture to ``out_file`` or hands
it to every backend (:mod:`kiln.visualization.vis_backends`). Images are **RGB** H×W×3 uint8, as
in MMDetection; colours (palette, ``bbox_color``, ``text_color``) are RGB tuples too.

Instance ``masks`` (bool N×H×W at the image's size, or a kiln mask structure) are blended in under
the boxes, in the boxes' colours unless ``mask_color`` says otherwise, with an outline.

Differences from MMDetection (which draws through matplotlib): boxes are drawn with OpenCV,
``line_width`` is in pixels, label text uses OpenCV's Hershey font, and mask colours are exactly the
box colours (MMDetection jitters them a little).

Example::

    >>> import numpy as np, torch
    >>> from kiln.structures import DetDataSample, InstanceData
    >>> vis = DetLocalVisualizer(line_width=2, alpha=1.0)
    >>> vis.dataset_meta = dict(classes=('cat',), palette=[(255, 0, 0)])
    >>> s = DetDataSample(gt_instances=InstanceData(bboxes=torch.tensor([[2., 2., 20., 20.]]),
    ...                                             labels=torch.tensor([0])))
    >>> vis.add_datasample('demo', np.zeros((32, 32, 3), np.uint8), s, draw_pred=False)
    >>> vis.get_image()[20, 10].tolist()   # on the bottom edge: the class colour
    [255, 0, 0]
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from kiln.registry import VIS_BACKENDS, VISUALIZERS

from .draw import blend_mask, mask_array
from .vis_backends import BaseVisBackend

__all__ = ["DetLocalVisualizer", "get_palette", "has_display"]

logger = logging.getLogger(__name__)

# mmcv's colour names, as RGB.
_NAMED_COLORS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "cyan": (0, 255, 255),
    "yellow": (255, 255, 0), "magenta": (255, 0, 255), "white": (255, 255, 255), "black": (0, 0, 0),
}


def _rgb(color: Any, what: str) -> tuple[int, int, int]:
    if isinstance(color, str):
        if color not in _NAMED_COLORS:
            raise ValueError(f"{what}={color!r}: unknown colour name; use one of {sorted(_NAMED_COLORS)} or "
                             "an (R, G, B) tuple of ints 0-255.")
        return _NAMED_COLORS[color]
    try:
        values = tuple(int(c) for c in color)
    except TypeError:
        values = ()
    if len(values) != 3 or not all(0 <= c <= 255 for c in values):
        raise ValueError(f"{what}: colour {color!r} is not an (R, G, B) tuple of ints 0-255.")
    return values  # type: ignore[return-value]


def get_palette(palette: Any, num_classes: int, what: str = "palette") -> list[tuple[int, int, int]]:
    """RGB colours for labels ``0 .. num_classes - 1`` (MMDetection's ``get_palette`` rules).

    ``palette`` is a list of colours (one per class, at least ``num_classes``), one colour tuple (all
    classes), a colour name (``'red'``, ...), or ``None``/``'random'`` (fixed random colours, seed 42,
    the same every run). The dataset-named palettes (``'coco'``, ``'voc'``, ``'citys'``) are refused:
    give the dataset's ``metainfo`` palette instead.
    """
    if isinstance(palette, list):
        colors = [_rgb(c, f"{what}[{i}]") for i, c in enumerate(palette)]
    elif isinstance(palette, tuple):
        colors = [_rgb(palette, what)] * num_classes
    elif palette is None or palette == "random":
        random = np.random.RandomState(42).randint(0, 256, (num_classes, 3))
        colors = [tuple(int(v) for v in c) for c in random]
    elif palette in ("coco", "voc", "citys"):
        raise ValueError(f"{what}={palette!r}: kiln does not ship the named dataset palettes; set the "
                         "dataset's metainfo=dict(classes=..., palette=[...]) (the visualizer reads "
                         "dataset_meta) or leave the colour None.")
    elif isinstance(palette, str):
        colors = [_rgb(palette, what)] * num_classes
    else:
        raise TypeError(f"{what}: expected a list of colours, a colour tuple, a colour name or None, "
                        f"got {type(palette).__name__}.")
    if len(colors) < num_classes:
        raise ValueError(f"{what} has {len(colors)} colours but labels go up to {num_classes - 1}; give one "
                         "colour per class.")
    return colors  # type: ignore[return-value]


def has_display() -> bool:
    """Whether a window can be opened (Windows/macOS, or ``DISPLAY``/``WAYLAND_DISPLAY`` set)."""
    if os.name == "nt" or os.uname().sysname == "Darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "tensor"):  # kiln.structures.Boxes
        x = _numpy(x.tensor)
    return np.asarray(x)


def _adaptive_scales(areas: np.ndarray, min_area: float = 800, max_area: float = 30000) -> np.ndarray:
    """Text scale per box in [0.5, 1]: small boxes get small labels (MMDetection's rule)."""
    return np.clip(0.5 + (areas - min_area) // (max_area - min_area), 0.5, 1.0)


@VISUALIZERS.register_module()
class DetLocalVisualizer:
    """Draws detection ground truth and predictions; records the pictures through its backends.

    Args:
        name: the instance name (``get_instance(name)`` returns it).
        image: an RGB image to start from (``set_image``).
        vis_backends: backend configs (``dict(type='LocalVisBackend')``, an optional ``name`` key) or
            backend objects. A backend config without ``save_dir`` gets ``<save_dir>/vis_data``.
        save_dir: the run's log folder; backends write into its ``vis_data`` subfolder. Without it,
            backends that need a folder are left out (with a warning), as MMEngine does.
        bbox_color: box colour for every class (RGB tuple or name); ``None``: the dataset palette.
        text_color: label text colour (default light gray).
        mask_color: mask colour for every class (RGB tuple, name or list per class); ``None``: the
            boxes' colours.
        line_width: box line width in pixels.
        alpha: box line opacity (1: the exact colour; 0.8 blends 20% of the image in).
    """

    _instances: dict[str, DetLocalVisualizer] = {}
    _current: DetLocalVisualizer | None = None

    def __init__(self, name: str = "visualizer", image: np.ndarray | None = None,
                 vis_backends: Any = None, save_dir: str | os.PathLike | None = None,
                 bbox_color: Any = None, text_color: Any = (200, 200, 200), mask_color: Any = None,
                 line_width: float = 3, alpha: float = 0.8) -> None:
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"DetLocalVisualizer(alpha={alpha!r}): expected a value in [0, 1].")
        if float(line_width) <= 0:
            raise ValueError(f"DetLocalVisualizer(line_width={line_width!r}): expected a positive width.")
        if bbox_color is not None:
            get_palette(bbox_color, 1, "bbox_color")  # validate now, not at the first drawing
        if mask_color is not None:
            get_palette(mask_color, 1, "mask_color")
        get_palette(text_color, 1, "text_color")
        self.instance_name = name
        self.bbox_color = bbox_color
        self.text_color = text_color
        self.mask_color = mask_color
        self.line_width = line_width
        self.alpha = float(alpha)
        self.save_dir = None if save_dir is None else os.fspath(save_dir)
        self._dataset_meta: dict[str, Any] = {}
        self._image: np.ndarray | None = None
        self._vis_backends: dict[str, BaseVisBackend] = self._build_backends(vis_backends)
        if image is not None:
            self.set_image(image)
        DetLocalVisualizer._instances[name] = self
        DetLocalVisualizer._current = self

    # ------------------------------------------------------------------ instances (MMEngine ManagerMixin)
    @classmethod
    def get_current_instance(cls) -> DetLocalVisualizer:
        """The visualizer built last (MMDetection code: ``Visualizer.get_current_instance()``)."""
        if cls._current is None:
            raise RuntimeError("No DetLocalVisualizer has been built yet: add visualizer=dict(type="
                               "'DetLocalVisualizer', ...) to the config, or build one.")
        return cls._current

    @classmethod
    def get_instance(cls, name: str, **kwargs: Any) -> DetLocalVisualizer:
        """The visualizer named ``name``, built with ``kwargs`` when there is none yet."""
        if name in cls._instances:
            return cls._instances[name]
        return cls(name=name, **kwargs)

    # ------------------------------------------------------------------ backends
    def _build_backends(self, specs: Any) -> dict[str, BaseVisBackend]:
        if specs is None:
            specs = []
        if isinstance(specs, (Mapping, BaseVisBackend)):
            specs = [specs]
        if not isinstance(specs, (list, tuple)):
            raise TypeError(f"DetLocalVisualizer(vis_backends=...): expected a list of backend configs "
                            f"(dict(type='LocalVisBackend')) or backend objects, got {type(specs).__name__}.")
        vis_dir = None if self.save_dir is None else os.path.join(self.save_dir, "vis_data")
        backends: dict[str, BaseVisBackend] = {}
        for i, spec in enumerate(specs):
            name = None
            if isinstance(spec, Mapping):
                spec = dict(spec)
                name = spec.pop("name", None)
                spec.setdefault("save_dir", vis_dir)
                backend = VIS_BACKENDS.build(spec, cfg_path=f"visualizer.vis_backends.{i}")
            elif isinstance(spec, BaseVisBackend):
                backend = spec
            else:
                raise TypeError(f"visualizer.vis_backends.{i}: expected a backend config dict or a backend "
                                f"object, got {type(spec).__name__}.")
            if backend.save_dir is None:
                msg = (f"visualizer.vis_backends.{i} ({type(backend).__name__}) is left out: it has no "
                       "save_dir. Give the visualizer save_dir=... (the runner passes its work_dir) or the "
                       "backend one.")
                warnings.warn(msg, stacklevel=3)
                logger.warning(msg)
                continue
            name = name or type(backend).__name__
            if name in backends:
                raise ValueError(f"visualizer.vis_backends: two backends are named {name!r}; give one a "
                                 "distinct name='...'.")
            backends[name] = backend
        return backends

    def get_backend(self, name: str) -> BaseVisBackend | None:
        """The backend registered as ``name`` (its ``name`` key, or its class name)."""
        return self._vis_backends.get(name)

    @property
    def vis_backends(self) -> dict[str, BaseVisBackend]:
        """The backends by name (a copy)."""
        return dict(self._vis_backends)

    # ------------------------------------------------------------------ state
    @property
    def dataset_meta(self) -> dict[str, Any]:
        """The dataset's ``metainfo``: ``classes`` (names by label) and ``palette`` (RGB per label)."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: Mapping[str, Any] | None) -> None:
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"dataset_meta must be a dict like dict(classes=(...), palette=[...]), "
                            f"got {type(meta).__name__}.")
        self._dataset_meta = dict(meta or {})

    def set_image(self, image: np.ndarray) -> None:
        """Start drawing on ``image`` (RGB uint8; a copy is kept)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"DetLocalVisualizer.set_image: expected an H×W×3 RGB image, got shape "
                             f"{image.shape}.")
        self._image = np.ascontiguousarray(image.clip(0, 255).astype(np.uint8))

    def get_image(self) -> np.ndarray:
        """The last drawn picture (RGB uint8)."""
        if self._image is None:
            raise RuntimeError("DetLocalVisualizer.get_image: nothing drawn yet (call add_datasample or "
                               "set_image).")
        return self._image

    # ------------------------------------------------------------------ drawing
    def draw_instances(self, image: np.ndarray, instances: Any) -> np.ndarray:
        """A copy of RGB ``image`` with ``instances`` (``bboxes`` XYXY, ``labels``, optional ``scores``
        and ``masks``) drawn: masks blended in (with an outline), box outlines in the class colour,
        ``"<name>: <score %>"`` on a dark label at the top-left of the box (of the mask without boxes)."""
        out = np.ascontiguousarray(image.copy())
        has_masks = "masks" in instances
        bboxes = (_numpy(instances.bboxes).reshape(-1, 4).astype(np.float64) if "bboxes" in instances
                  else np.zeros((0, 4)))
        dummy_boxes = len(bboxes) == 0 or bboxes.sum() <= 0  # MMDetection's "dummy boxes" rule
        if dummy_boxes and not has_masks:
            return out
        labels = _numpy(instances.labels).reshape(-1).astype(np.int64)
        scores = _numpy(instances.scores).reshape(-1) if "scores" in instances else None
        classes = self._dataset_meta.get("classes")
        n_colors = int(labels.max()) + 1 if len(labels) else 1
        box_source = self.bbox_color if self.bbox_color is not None else self._dataset_meta.get("palette")
        box_what = "bbox_color" if self.bbox_color is not None else "dataset_meta['palette']"
        box_colors = get_palette(box_source, n_colors, box_what)
        text_colors = get_palette(self.text_color, n_colors, "text_color")
        h, w = out.shape[:2]
        if has_masks:
            masks = mask_array(instances.masks, len(labels), h, w, "DetLocalVisualizer masks")
            mask_colors = (box_colors if self.mask_color is None
                           else get_palette(self.mask_color, n_colors, "mask_color"))
            for mask, label in zip(masks, labels):
                blend_mask(out, mask, mask_colors[label], self.alpha)
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                               cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(out, contours, -1, mask_colors[label], 1, cv2.LINE_8)
            if dummy_boxes:  # labels go to the masks' top-left corners
                from kiln.structures import BitmapMasks

                bboxes = BitmapMasks(masks, h, w).get_bboxes().astype(np.float64)
        thickness = max(1, int(round(self.line_width)))
        if not dummy_boxes:
            for box, label in zip(bboxes, labels):
                outline = np.zeros((h, w), np.uint8)
                x0, y0, x1, y1 = (int(round(v)) for v in box)
                cv2.rectangle(outline, (x0, y0), (x1, y1), 1, thickness, cv2.LINE_8)
                blend_mask(out, outline, box_colors[label], self.alpha)
        areas = (bboxes[:, 3] - bboxes[:, 1]) * (bboxes[:, 2] - bboxes[:, 0])
        for i, (box, label, scale) in enumerate(zip(bboxes, labels, _adaptive_scales(areas))):
            if "label_names" in instances:
                text = str(instances.label_names[i])
            elif classes is not None and 0 <= label < len(classes):
                text = str(classes[label])
            else:
                text = f"class {label}"
            if scores is not None:
                text += f": {round(float(scores[i]) * 100, 1)}"
            corner = (int(round(box[0] + self.line_width)), int(round(box[1] + self.line_width)))
            self._draw_label(out, text, corner, text_colors[label], float(scale))
        return out

    def _draw_label(self, img: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int],
                    scale: float) -> None:
        """Text on a dark (80% black) box whose top-left is ``corner``; 13 pt at scale 1 as MMDetection."""
        font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 13 * scale / 16
        (tw, th), base = cv2.getTextSize(text, font, font_scale, 1)
        h, w = img.shape[:2]
        x0, y0 = min(max(corner[0], 0), w - 1), min(max(corner[1], 0), h - 1)
        x1, y1 = min(x0 + tw + 2, w), min(y0 + th + base + 2, h)
        region = img[y0:y1, x0:x1]
        region[:] = np.round(region.astype(np.float32) * 0.2).astype(np.uint8)
        cv2.putText(img, text, (x0 + 1, y0 + th + 1), font, font_scale, color, 1, cv2.LINE_AA)

    def draw_datasample(self, image: np.ndarray, data_sample: Any = None, draw_gt: bool = True,
                        draw_pred: bool = True, pred_score_thr: float = 0.3) -> np.ndarray:
        """The picture :meth:`add_datasample` records, without recording it: ground truth on the left,
        predictions scoring above ``pred_score_thr`` on the right (only one of them when the other is
        off or absent; the plain image when ``data_sample`` is ``None``)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"add_datasample: expected an H×W×3 RGB image, got shape {image.shape}.")
        image = np.ascontiguousarray(image.clip(0, 255).astype(np.uint8))
        gt_img = pred_img = None
        if data_sample is not None and draw_gt:
            gt = data_sample.get("gt_instances") if hasattr(data_sample, "get") else None
            gt_img = self.draw_instances(image, gt) if gt is not None else image
        if data_sample is not None and draw_pred:
            pred = data_sample.get("pred_instances") if hasattr(data_sample, "get") else None
            if pred is not None:
                if "scores" in pred:
                    pred = pred[_numpy(pred.scores).reshape(-1) > pred_score_thr]
                pred_img = self.draw_instances(image, pred)
            else:
                pred_img = image
        if gt_img is not None and pred_img is not None:
            return np.concatenate((gt_img, pred_img), axis=1)
        return gt_img if gt_img is not None else pred_img if pred_img is not None else image

    def add_datasample(self, name: str, image: np.ndarray, data_sample: Any = None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: str | os.PathLike | None = None, pred_score_thr: float = 0.3,
                       step: int = 0) -> None:
        """Draw one image's ground truth and predictions (see :meth:`draw_datasample`), then record it.

        Args:
            name: the image's tag (backends save ``<name>_<step>.png``).
            image: the image, RGB H×W×3.
            data_sample: a :class:`~kiln.structures.DetDataSample` with ``gt_instances`` and/or
                ``pred_instances`` (``bboxes`` XYXY in ``image`` pixels, ``labels``, ``scores``,
                optional ``masks`` at ``image``'s size).
            draw_gt / draw_pred: draw either side.
            show: also show it in a window (needs a display: otherwise a RuntimeError).
            wait_time: seconds the window stays (0: until a key is pressed).
            out_file: write the picture there (png/jpg by suffix) instead of to the backends.
            pred_score_thr: predictions scoring at or below this are not drawn.
            step: the step the backends record it at.
        """
        drawn = self.draw_datasample(image, data_sample, draw_gt, draw_pred, pred_score_thr)
        self._image = drawn
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            from kiln.image.io import imwrite

            imwrite(drawn, out_file, channel_order="rgb")
        else:
            self.add_image(name, drawn, step)

    def show(self, drawn_img: np.ndarray | None = None, win_name: str = "image",
             wait_time: float = 0) -> None:
        """Show the picture in an OpenCV window for ``wait_time`` seconds (0: until a key is pressed)."""
        img = self.get_image() if drawn_img is None else drawn_img
        if not has_display():
            raise RuntimeError(
                "show=True needs a display, and this machine has none (DISPLAY is not set). Write the "
                "pictures to files instead: DetVisualizationHook(test_out_dir=...) / "
                "`kiln test --show-dir DIR`, or add_datasample(out_file=...).")
        try:
            cv2.imshow(win_name, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            cv2.waitKey(int(wait_time * 1000))
        except cv2.error as exc:
            raise RuntimeError(f"show=True: OpenCV cannot open a window ({exc}); a headless OpenCV build "
                               "has no GUI. Write the pictures to files instead (test_out_dir / "
                               "--show-dir).") from None

    # ------------------------------------------------------------------ recording
    def add_image(self, name: str, image: np.ndarray, step: int = 0) -> None:
        """Record an RGB image in every backend."""
        for backend in self._vis_backends.values():
            backend.add_image(name, image, step)

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Record a scalar in every backend."""
        for backend in self._vis_backends.values():
            backend.add_scalar(name, value, step, **kwargs)

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0, file_path: str | None = None,
                    **kwargs: Any) -> None:
        """Record several scalars in every backend (``file_path``: an extra JSON file for LocalVisBackend)."""
        for backend in self._vis_backends.values():
            backend.add_scalars(scalar_dict, step, file_path, **kwargs)

    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Record the run's config in every backend."""
        for backend in self._vis_backends.values():
            backend.add_config(config, **kwargs)

    def close(self) -> None:
        """Close every backend (flush event files, finish runs)."""
        for backend in self._vis_backends.values():
            backend.close()

    def __repr__(self) -> str:
        return (f"DetLocalVisualizer(name={self.instance_name!r}, save_dir={self.save_dir!r}, "
                f"vis_backends={list(self._vis_backends)})")
