"""Visualization: boxes, class names and scores drawn on images (cv2), training curves (matplotlib).

``kiln.visualization`` loads cv2 on import; matplotlib only when a curve is plotted.
"""

from .draw import Visualizer, color_for_label, draw_boxes, image_from_tensor
from .plot import load_metrics, metric_series, plot_metrics

__all__ = [
    "Visualizer",
    "color_for_label",
    "draw_boxes",
    "image_from_tensor",
    "load_metrics",
    "metric_series",
    "plot_metrics",
]
