"""Visualization: boxes, class names and scores drawn on images (cv2), training curves (matplotlib),
and MMDetection 3.x's visualizer with its backends (``DetLocalVisualizer``, ``LocalVisBackend``,
``TensorboardVisBackend``, ...).

``kiln.visualization`` loads cv2 on import; matplotlib only when a curve is plotted; TensorBoard,
W&B and MLflow only when a backend first writes.
"""

from .builder import build_visualizer
from .det_visualizer import DetLocalVisualizer, get_palette
from .draw import Visualizer, color_for_label, draw_boxes, image_from_tensor
from .plot import load_metrics, metric_series, plot_metrics
from .vis_backends import (
    BaseVisBackend,
    LocalVisBackend,
    MLflowVisBackend,
    TensorboardVisBackend,
    WandbVisBackend,
)

__all__ = [
    "BaseVisBackend",
    "DetLocalVisualizer",
    "LocalVisBackend",
    "MLflowVisBackend",
    "TensorboardVisBackend",
    "Visualizer",
    "WandbVisBackend",
    "build_visualizer",
    "color_for_label",
    "draw_boxes",
    "get_palette",
    "image_from_tensor",
    "load_metrics",
    "metric_series",
    "plot_metrics",
]
