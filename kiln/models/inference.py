"""Single-image inference: build a detector from a config + checkpoint, run it on images, draw results.

Example::

    >>> from kiln.models.inference import init_detector, inference_detector, show_result
    >>> model = init_detector('configs/faster_rcnn_shapes.py', 'work_dirs/model_final.pth')  # doctest: +SKIP
    >>> result = inference_detector(model, 'demo.jpg')                                       # doctest: +SKIP
    >>> show_result('demo.jpg', result, model.CLASSES, out_file='demo_pred.png')             # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .utils import cfg_get

__all__ = ["init_detector", "inference_detector", "show_result", "Predictor", "DefaultPredictor"]

_IMAGENET_NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def _load_config(config: Any) -> Any:
    from kiln.config import Config

    if isinstance(config, (str, os.PathLike)):
        if not os.path.isfile(config):
            raise FileNotFoundError(f"init_detector: config file '{config}' does not exist.")
        return Config.fromfile(config)
    if isinstance(config, Config):
        return copy.deepcopy(config)
    if isinstance(config, Mapping):
        return Config(copy.deepcopy(dict(config)))
    raise TypeError(f"init_detector: config must be a file path, a Config or a dict, "
                    f"got {type(config).__name__}.")


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x) if isinstance(x, tuple) else [_plain(v) for v in x]
    return x


def _class_names(cfg: Any, meta: Mapping[str, Any] | None) -> list[str] | None:
    if meta:
        for key in ("CLASSES", "classes", "thing_classes"):
            if meta.get(key):
                return list(meta[key])
    data = cfg_get(cfg, "data")
    for split in ("test", "val", "train"):
        # MMCV layout data.<split>, canonical layout <split>_dataloader.dataset
        for ds in (cfg_get(data, split), cfg_get(cfg_get(cfg, f"{split}_dataloader"), "dataset")):
            names = cfg_get(ds, "classes")
            if names:
                return list(names)
    names = cfg_get(cfg, "classes")
    return list(names) if names else None


def init_detector(config: Any, checkpoint: str | None = None, device: str | torch.device = "cpu",
                  cfg_options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build the detector of ``config`` for inference and load ``checkpoint`` into it.

    Args:
        config: config file path, :class:`kiln.config.Config` or dict (seed-001 layout with top-level
            ``test_cfg``, or ``model.test_cfg``).
        checkpoint: a checkpoint written by kiln (or an MMEngine/Detectron2 one); ``None`` keeps the
            random initialisation. Loaded with ``weights_only=True``.
        device: where the model runs.
        cfg_options: overrides merged into the config first (``{'model.test_cfg.rcnn.score_thr': 0.3}``).

    Returns:
        The model in eval mode, with ``model.cfg`` (the config) and ``model.CLASSES`` (class names
        from the checkpoint's meta or the config's dataset, else ``None``) attached. The backbone's
        ``pretrained`` weights are not loaded (the checkpoint has all weights).
    """
    from .builder import build_detector

    cfg = _load_config(config)
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    model_cfg = _plain(cfg_get(cfg, "model"))
    if model_cfg is None:
        raise KeyError("init_detector: the config has no 'model' entry.")
    model_cfg.pop("pretrained", None)
    model_cfg.pop("train_cfg", None)
    if isinstance(model_cfg.get("backbone"), dict):
        model_cfg["backbone"].pop("pretrained", None)
        model_cfg["backbone"].pop("init_cfg", None)
    model = build_detector(model_cfg, train_cfg=None, test_cfg=_plain(cfg_get(cfg, "test_cfg")))
    meta: dict[str, Any] = {}
    if checkpoint is not None:
        from kiln.engine.checkpoint import Checkpointer

        extra = Checkpointer(model, save_to_disk=False).load(checkpoint, checkpointables=[])
        meta = dict(extra.get("meta") or {})
    model.cfg = cfg
    model.CLASSES = _class_names(cfg, meta)
    return model.to(device).eval()


def _test_pipeline(cfg: Any, from_array: bool) -> Any:
    from kiln.data.transforms import Compose

    data = cfg_get(cfg, "data")
    pipeline = None
    for split in ("test", "val"):
        pipeline = cfg_get(cfg_get(data, split), "pipeline")
        if pipeline:
            break
    pipeline = _plain(pipeline or cfg_get(cfg, "test_pipeline"))
    if not pipeline:
        # No MM test pipeline in the config: normalise and pad like the MM defaults.
        norm = _plain(cfg_get(cfg, "img_norm_cfg")) or _IMAGENET_NORM
        pipeline = [dict(type="LoadImageFromFile"), dict(type="Normalize", **norm),
                    dict(type="Pad", size_divisor=32), dict(type="ImageToTensor", keys=["img"]),
                    dict(type="Collect", keys=["img"])]
    pipeline = copy.deepcopy(pipeline)
    if from_array and pipeline and pipeline[0].get("type") == "LoadImageFromFile":
        pipeline = pipeline[1:]  # the image is already in memory
    return Compose(pipeline)


def _prepare(cfg: Any, image: Any, index: int) -> dict[str, Any]:
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"inference_detector: image '{path}' does not exist.")
        results = dict(img_info=dict(filename=path, id=index), img_prefix=None, image_id=index)
        return _test_pipeline(cfg, from_array=False)(results)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"inference_detector: an image array must be H×W×3 uint8 BGR (as cv2.imread gives), "
                         f"got shape {arr.shape} dtype {arr.dtype}.")
    results = dict(img=arr.copy(), img_shape=arr.shape, ori_shape=arr.shape, img_fields=["img"],
                   filename=None, ori_filename=None, img_info=dict(filename=None, id=index), image_id=index)
    return _test_pipeline(cfg, from_array=True)(results)


def inference_detector(model: nn.Module, images: Any) -> Any:
    """Run ``model`` on one image or a list of them (file paths or H×W×3 uint8 BGR arrays).

    The config's test pipeline (``data.test.pipeline``) prepares each image, so resizing, padding and
    normalisation match evaluation. Returns a dict ``{'boxes' (N×4 XYXY, original pixels), 'scores',
    'labels'}`` per image (one dict for one image, a list for a list), on CPU; a Mask R-CNN adds ``'masks'``
    (N×H×W bool at the original image size).
    """
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise AttributeError("inference_detector: the model has no .cfg; build it with "
                             "init_detector(config, ...) or set model.cfg to its config.")
    batch = [_prepare(cfg, image, i) for i, image in enumerate(items)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(batch)
    finally:
        model.train(was_training)
    outputs = [{k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in o.items()}
               for o in outputs]
    return outputs[0] if single else outputs


def show_result(image: Any, result: Mapping[str, Any], class_names: Sequence[str] | None = None,
                out_file: str | None = None, score_thr: float = 0.3) -> np.ndarray:
    """Draw ``result`` (boxes, class names, scores above ``score_thr``) on ``image``; save to ``out_file``.

    Returns the drawing as an H×W×3 uint8 BGR array.
    """
    from kiln.visualization import Visualizer

    if isinstance(image, (str, os.PathLike)):
        import cv2

        arr = cv2.imread(os.fspath(image), cv2.IMREAD_COLOR)
        if arr is None:
            raise FileNotFoundError(f"show_result: cannot read image '{image}'.")
    else:
        arr = np.asarray(image)
    vis = Visualizer(arr, class_names=class_names).draw_instance_predictions(result, score_thr=score_thr)
    if out_file is not None:
        vis.save(out_file)
    return vis.get_image()


class Predictor:
    """Config + checkpoint → a callable that detects objects in one image (Detectron2's DefaultPredictor).

    Example::

        >>> predictor = Predictor('configs/faster_rcnn_shapes.py', 'model_final.pth')   # doctest: +SKIP
        >>> out = predictor(cv2.imread('img.jpg'))                                      # doctest: +SKIP
        >>> predictor.visualize('img.jpg', out, 'pred.png')                             # doctest: +SKIP
    """

    def __init__(self, config: Any, checkpoint: str | None = None, device: str | torch.device = "cpu",
                 score_thr: float = 0.3, cfg_options: Mapping[str, Any] | None = None) -> None:
        self.model = init_detector(config, checkpoint, device, cfg_options)
        self.score_thr = score_thr

    @property
    def class_names(self) -> list[str] | None:
        """Class names of the model's labels (from checkpoint meta or config), if known."""
        return getattr(self.model, "CLASSES", None)

    def __call__(self, image: Any) -> dict[str, torch.Tensor]:
        """Detections for one image (path or H×W×3 uint8 BGR array) in original pixels."""
        return inference_detector(self.model, image)

    def visualize(self, image: Any, result: Mapping[str, Any] | None = None, out_file: str | None = None,
                  score_thr: float | None = None) -> np.ndarray:
        """Draw ``result`` (computed when ``None``) on ``image``; save to ``out_file`` when given."""
        if result is None:
            result = self(image)
        thr = self.score_thr if score_thr is None else score_thr
        return show_result(image, result, self.class_names, out_file, thr)


class DefaultPredictor:
    """Detectron2's ``DefaultPredictor``: a Detectron2 ``CfgNode`` -> a callable on one BGR image.

    The model is ``DefaultTrainer.build_model(cfg)`` with ``MODEL.WEIGHTS`` loaded, in eval mode on
    ``MODEL.DEVICE``; each image is resized as ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` say and given
    in ``INPUT.FORMAT`` order, and the detections come back in the image's own pixels.

    Example::

        >>> cfg = get_cfg(); cfg.merge_from_file('faster_rcnn.yaml')            # doctest: +SKIP
        >>> cfg.MODEL.WEIGHTS = 'output/model_final.pth'                         # doctest: +SKIP
        >>> out = DefaultPredictor(cfg)(cv2.imread('img.jpg'))                   # doctest: +SKIP
        >>> out['instances'].pred_boxes, out['instances'].scores, out['instances'].pred_classes
    """

    def __init__(self, cfg: Any) -> None:
        from kiln.data import MetadataCatalog
        from kiln.data.transforms.augmentation import ResizeShortestEdge
        from kiln.engine.trainer import DefaultTrainer
        from kiln.model_zoo import load_weights

        self.cfg = cfg.clone()
        self.model = DefaultTrainer.build_model(self.cfg)
        self.model.eval()
        test_sets = list(cfg_get(self.cfg, "DATASETS.TEST", ()) or ())
        self.metadata = MetadataCatalog.get(test_sets[0]) if test_sets else None
        weights = cfg_get(self.cfg, "MODEL.WEIGHTS", "")
        if weights:
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"DefaultPredictor: MODEL.WEIGHTS '{weights}' does not exist; give "
                                        f"the checkpoint to predict with (e.g. OUTPUT_DIR/model_final.pth).")
            load_weights(self.model, weights)
        size = int(cfg_get(self.cfg, "INPUT.MIN_SIZE_TEST"))
        self.aug = ResizeShortestEdge([size, size], float(cfg_get(self.cfg, "INPUT.MAX_SIZE_TEST")))
        self.input_format = cfg_get(self.cfg, "INPUT.FORMAT", "BGR")
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"DefaultPredictor: INPUT.FORMAT={self.input_format!r}; kiln predicts on 'BGR' "
                             f"or 'RGB' images.")

    def __call__(self, original_image: np.ndarray) -> dict[str, Any]:
        """Detections for one H×W×3 uint8 BGR image (as ``cv2.imread`` gives): ``{'instances': Instances}``
        with ``pred_boxes`` (:class:`~kiln.structures.Boxes`, XYXY), ``scores`` and ``pred_classes`` (and
        ``pred_masks``, N×H×W bool, for a model with a mask head)."""
        from kiln.structures import Boxes, Instances

        arr = np.asarray(original_image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"DefaultPredictor: expected an H×W×3 uint8 BGR image (as cv2.imread gives), "
                             f"got shape {arr.shape} dtype {arr.dtype}.")
        if self.input_format == "RGB":
            arr = arr[:, :, ::-1]
        height, width = arr.shape[:2]
        image = self.aug.get_transform(arr).apply_image(arr)
        tensor = torch.as_tensor(np.ascontiguousarray(image).astype("float32").transpose(2, 0, 1))
        with torch.no_grad():
            out = self.model([{"image": tensor, "height": height, "width": width}])[0]
        instances = Instances((height, width))
        instances.pred_boxes = Boxes(out["boxes"].detach().cpu())
        instances.scores = out["scores"].detach().cpu()
        instances.pred_classes = out["labels"].detach().cpu()
        if "masks" in out:
            instances.pred_masks = out["masks"].detach().cpu()
        return {"instances": instances}
