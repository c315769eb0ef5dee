"""``DetVisualizationHook``: MMDetection 3.x's hook that draws validation and test images.

Every MMDetection 3.x config has it in ``default_hooks``::

    visualization=dict(type='DetVisualizationHook')            # draw=False: off by default
    visualization=dict(type='DetVisualizationHook', draw=True, interval=50, test_out_dir='show')

With ``draw=True``:

* validation: the first image of every ``interval``-th batch (counted as MMDetection does,
  ``runner.iter + batch_idx``) is drawn, ground truth left and predictions right, and recorded by the
  visualizer's backends as ``val_img`` at that step (LocalVisBackend:
  ``vis_data/vis_image/val_img_<step>.png``);
* test: every image is drawn; with ``test_out_dir`` to ``<work_dir>/<test_out_dir>/<image file name>``
  (what MMDetection's ``--show-dir`` sets), otherwise to the backends as ``test_img`` at steps 1, 2, ...

The image is read from the sample's file (3.x ``data_samples.img_path``, 2.x ``img_metas['filename']``,
Detectron2 ``file_name``); predictions are the model's boxes in original pixels; ground truth comes from
the batch (3.x: as is, since 3.x test pipelines load annotations after ``Resize``; 2.x/Detectron2:
mapped back from input pixels; see :mod:`kiln.visualization.datasample`).
The visualizer is ``runner.visualizer`` (the config's top-level ``visualizer``); without one the hook
builds a ``DetLocalVisualizer`` with a ``LocalVisBackend`` writing to ``<work_dir>/vis_data``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kiln.registry import HOOKS

from .. import comm
from .base import Hook, Priority

__all__ = ["DetVisualizationHook"]


def _dataset_meta(loader: Any) -> dict[str, Any] | None:
    """``classes``/``palette`` of a loader's dataset (:func:`kiln.visualization.datasample.dataset_meta`)."""
    from kiln.visualization.datasample import dataset_meta

    return dataset_meta(getattr(loader, "dataset", None))


@HOOKS.register_module()
class DetVisualizationHook(Hook):
    """Draws ground truth and predictions of validation/test images (MMDetection 3.x).

    Args:
        draw: draw at all (MMDetection's default is ``False``: the hook is listed but idle).
        interval: in validation, draw every ``interval``-th batch (its first image).
        score_thr: predictions scoring at or below this are not drawn.
        show: show each picture in a window (needs a display; a clear error without one). As in
            MMDetection, shown pictures are not also sent to the backends.
        wait_time: seconds a shown picture stays (0: until a key is pressed).
        test_out_dir: in test, write every picture to ``<work_dir>/<test_out_dir>/<file name>``
            (an absolute path is used as is).
        backend_args: how to read image files: ``None`` or ``dict(backend='local')``
            (paths and fsspec URLs); other backends are refused.
    """

    priority = Priority.NORMAL

    def __init__(self, draw: bool = False, interval: int = 50, score_thr: float = 0.3, show: bool = False,
                 wait_time: float = 0.0, test_out_dir: str | None = None,
                 backend_args: Mapping[str, Any] | None = None) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"DetVisualizationHook(interval={interval!r}): expected an int >= 1.")
        if backend_args is not None and dict(backend_args) != {"backend": "local"}:
            raise ValueError(f"DetVisualizationHook(backend_args={backend_args!r}): kiln reads images from "
                             "local paths and fsspec URLs only; use backend_args=None (or "
                             "dict(backend='local')).")
        self.draw = bool(draw)
        self.interval = interval
        self.score_thr = float(score_thr)
        self.show = bool(show)
        self.wait_time = float(wait_time)
        self.test_out_dir = test_out_dir
        self.backend_args = backend_args
        self._visualizer: Any = None
        self._own_visualizer: Any = None
        self._test_dir: str | None = None
        self._test_index = 0

    # ------------------------------------------------------------------ setup
    def _prepare(self, runner: Any, loader: Any, needs_backends: bool) -> None:
        from kiln.visualization.det_visualizer import has_display

        if self.show and not has_display():
            raise RuntimeError("DetVisualizationHook(show=True) needs a display, and this machine has none "
                               "(DISPLAY is not set). Write the pictures to files instead: test_out_dir=... "
                               "(`kiln test --show-dir DIR`), or draw=True without show.")
        vis = getattr(runner, "visualizer", None)
        if vis is None:
            if self._own_visualizer is None:
                if needs_backends and not getattr(runner, "work_dir", None):
                    raise ValueError("DetVisualizationHook(draw=True) has nowhere to write: the config "
                                     "has no `visualizer` and the runner no work_dir. Set work_dir, or add "
                                     "visualizer=dict(type='DetLocalVisualizer', vis_backends=[...]).")
                from kiln.visualization.det_visualizer import DetLocalVisualizer

                work_dir = getattr(runner, "work_dir", None)
                # Without a work_dir only test_out_dir files are written: no backend to build.
                backends = [dict(type="LocalVisBackend")] if work_dir else []
                self._own_visualizer = DetLocalVisualizer(vis_backends=backends, save_dir=work_dir)
            vis = self._own_visualizer
        meta = _dataset_meta(loader)
        if meta is not None:  # as MMEngine's loops do: the running split's classes and palette
            vis.dataset_meta = meta
        self._visualizer = vis

    def before_val(self, runner: Any) -> None:
        """Pick the visualizer and give it the validation dataset's classes and palette."""
        if self.draw:
            self._prepare(runner, getattr(runner, "val_dataloader", None), needs_backends=not self.show)

    def before_test(self, runner: Any) -> None:
        """Pick the visualizer, the test dataset's classes, and create ``test_out_dir``."""
        if not self.draw:
            return
        self._test_dir = None
        if self.test_out_dir is not None:
            self._test_dir = os.path.join(getattr(runner, "work_dir", None) or "", self.test_out_dir)
            os.makedirs(self._test_dir, exist_ok=True)
        self._prepare(runner, getattr(runner, "test_dataloader", None),
                      needs_backends=self._test_dir is None and not self.show)

    # ------------------------------------------------------------------ drawing
    def _draw(self, sample: Any, output: Any, name: str | None, step: int, out_file_dir: str | None) -> None:
        from kiln.image.io import imread
        from kiln.visualization.datasample import drawable_sample

        item = drawable_sample(sample, output)
        image = imread(item.img_path, channel_order="rgb")
        base = os.path.basename(item.img_path)
        out_file = os.path.join(out_file_dir, base) if out_file_dir is not None else None
        vis = self._visualizer
        name = base if self.show else name
        if self.show and out_file is None:
            # MMDetection drops the backends when showing: the picture is only shown.
            vis.show(vis.draw_datasample(image, item.data_sample, pred_score_thr=self.score_thr),
                     win_name=name, wait_time=self.wait_time)
            return
        vis.add_datasample(name, image, data_sample=item.data_sample, show=self.show,
                           wait_time=self.wait_time, out_file=out_file, pred_score_thr=self.score_thr,
                           step=step)

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                       outputs: Any = None) -> None:
        """Draw the batch's first image when ``runner.iter + batch_idx`` is a multiple of ``interval``."""
        if not self.draw or not data_batch:
            return
        step = runner.iter + batch_idx
        if step % self.interval or not comm.is_main_process():
            return
        if self._visualizer is None:  # validation run without before_val (a loop that skips it)
            self.before_val(runner)
        self._draw(data_batch[0], outputs[0], "val_img", step, None)

    def after_test_iter(self, runner: Any, batch_idx: int, data_batch: Any = None,
                        outputs: Any = None) -> None:
        """Draw every image of the batch (to ``test_out_dir`` when set, else to the backends)."""
        if not self.draw or not data_batch:
            return
        if self._visualizer is None:
            self.before_test(runner)
        for sample, output in zip(data_batch, outputs):
            self._test_index += 1
            if self._test_dir is None and not self.show and not comm.is_main_process():
                continue  # backends record on the main process only
            self._draw(sample, output, "test_img", self._test_index, self._test_dir)
