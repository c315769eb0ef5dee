"""Drawing detections while a dataset is evaluated (``kiln test --show-dir``, ``kiln infer``)."""

from __future__ import annotations

import os
from typing import Any

from kiln.evaluation.evaluator import DatasetEvaluator

__all__ = ["ShowPredictions", "ShowWithVisualizer"]


def _plain(pred: dict[str, Any]) -> tuple[list, list, list]:
    def as_list(x: Any) -> list:
        return x.detach().cpu().tolist() if hasattr(x, "detach") else [v for v in x]

    return as_list(pred["boxes"]), as_list(pred["scores"]), as_list(pred["labels"])


def _file_name(sample: dict[str, Any]) -> str | None:
    if "file_name" in sample:
        return sample["file_name"]
    packed = sample.get("data_samples")  # MMDetection 3.x PackDetInputs (a list under TestTimeAug)
    if isinstance(packed, (list, tuple)):
        packed = packed[0] if packed else None
    if packed is not None and hasattr(packed, "metainfo"):
        return packed.metainfo.get("img_path")
    metas = sample.get("img_metas")
    if isinstance(metas, (list, tuple)):
        metas = metas[0]
    if hasattr(metas, "data"):  # a DataContainer-like wrapper
        metas = metas.data
    if isinstance(metas, dict):
        return metas.get("filename") or metas.get("file_name")
    return None


class ShowPredictions(DatasetEvaluator):
    """A DatasetEvaluator sink that draws each image's detections into ``out_dir``.

    Also keeps the detections (original-image pixels) for :meth:`evaluate` to return as records.
    """

    def __init__(self, out_dir: str, score_thr: float = 0.3, class_names: list[str] | None = None) -> None:
        self.out_dir = out_dir
        self.score_thr = score_thr
        self.class_names = class_names
        self.records: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget previous records."""
        self.records = []

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        """Draw every image of the batch with its predictions."""
        import cv2

        from kiln.visualization import draw_boxes

        os.makedirs(self.out_dir, exist_ok=True)
        for sample, pred in zip(inputs, outputs):
            path = _file_name(sample)
            if not path:
                continue
            boxes, scores, labels = _plain(pred)
            keep = [i for i, s in enumerate(scores) if s >= self.score_thr]
            names = self.class_names
            masks = pred.get("masks") if isinstance(pred, dict) else None  # a mask model's, original pixels
            self.records.append({
                "file_name": path,
                "boxes": [[round(v, 2) for v in boxes[i]] for i in keep],
                "scores": [round(scores[i], 4) for i in keep],
                "labels": [int(labels[i]) for i in keep],
                "label_names": [names[int(labels[i])] if names and int(labels[i]) < len(names) else
                                str(labels[i]) for i in keep],
            })
            if masks is not None:  # the kept detections' masks as COCO RLE, as in a result json
                from kiln.evaluation.coco_results import encode_masks, prediction_masks

                self.records[-1]["segmentations"] = encode_masks(prediction_masks(pred)[keep])
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                continue
            drawn = draw_boxes(image, boxes, labels, scores, class_names=names, score_thr=self.score_thr,
                               masks=masks)
            stem = os.path.splitext(os.path.basename(path))[0]
            cv2.imwrite(os.path.join(self.out_dir, f"{stem}.png"), drawn)

    def evaluate(self) -> dict[str, float]:
        """No metrics: drawing is the point."""
        return {}


class ShowWithVisualizer(DatasetEvaluator):
    """``kiln test --show-dir`` for configs with MMDetection 3.x's ``DetVisualizationHook``: each test image
    drawn by a ``DetLocalVisualizer`` as MMDetection's ``tools/test.py --show-dir`` does (ground truth left,
    predictions above ``score_thr`` right, dataset palette) into ``out_dir/<image file name>``.

    Args:
        out_dir: folder for the pictures.
        score_thr: lowest prediction score drawn.
        dataset_meta: ``classes``/``palette`` of the evaluated dataset.
        visualizer_cfg: the config's ``visualizer`` entry (its drawing settings are used; its backends
            are not: the pictures go to ``out_dir`` only).
    """

    def __init__(self, out_dir: str, score_thr: float = 0.3, dataset_meta: dict | None = None,
                 visualizer_cfg: dict | None = None) -> None:
        from kiln.visualization.det_visualizer import DetLocalVisualizer

        drawing = {k: v for k, v in dict(visualizer_cfg or {}).items()
                   if k in ("bbox_color", "text_color", "line_width", "alpha")}
        self.visualizer = DetLocalVisualizer(name="kiln_test_show_dir", **drawing)
        if dataset_meta:
            self.visualizer.dataset_meta = dataset_meta
        self.out_dir = out_dir
        self.score_thr = score_thr

    def reset(self) -> None:
        """Nothing to forget: every image is written when processed."""

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        """Draw every image of the batch with its ground truth and predictions."""
        from kiln.image.io import imread
        from kiln.visualization.datasample import drawable_sample

        os.makedirs(self.out_dir, exist_ok=True)
        for sample, pred in zip(inputs, outputs):
            item = drawable_sample(sample, pred)
            image = imread(item.img_path, channel_order="rgb")
            out_file = os.path.join(self.out_dir, os.path.basename(item.img_path))
            name = os.path.basename(item.img_path)
            self.visualizer.add_datasample(name, image, data_sample=item.data_sample, out_file=out_file,
                                           pred_score_thr=self.score_thr)

    def evaluate(self) -> dict[str, float]:
        """No metrics: drawing is the point."""
        return {}
