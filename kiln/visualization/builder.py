"""``build_visualizer``: the top-level ``visualizer`` config key → the run's visualizer.

The runner builder calls it once with the config's ``visualizer`` entry and the run's log folder;
the result becomes ``runner.visualizer``, which :class:`~kiln.engine.hooks.DetVisualizationHook`
draws into. kiln writes its logs straight into ``work_dir`` (there is no ``<timestamp>`` folder as
in MMEngine), so ``save_dir`` is the work_dir and backends write to ``<work_dir>/vis_data``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kiln.registry import VISUALIZERS

__all__ = ["build_visualizer"]


def build_visualizer(cfg: Mapping[str, Any] | Any | None, save_dir: str | os.PathLike | None) -> Any:
    """Build the visualizer a config's top-level ``visualizer`` key describes, or return ``None``.

    Args:
        cfg: ``dict(type='DetLocalVisualizer', vis_backends=[...], name=..., ...)``, an already built
            visualizer (returned as is), or ``None`` (no visualizer: ``None``).
        save_dir: the run's log folder (kiln: the work_dir); filled in as the visualizer's
            ``save_dir`` unless the config gives one, so backends write to ``<save_dir>/vis_data``.

    Example::

        >>> vis = build_visualizer(dict(type='DetLocalVisualizer',
        ...                             vis_backends=[dict(type='LocalVisBackend')]), '/tmp/run')
        >>> vis.get_backend('LocalVisBackend').save_dir
        '/tmp/run/vis_data'
    """
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        if hasattr(cfg, "add_datasample"):
            return cfg
        raise TypeError(f"config key 'visualizer': expected a dict like dict(type='DetLocalVisualizer', "
                        f"vis_backends=[dict(type='LocalVisBackend')]) or None, got {type(cfg).__name__}.")
    args = dict(cfg)
    if save_dir is not None:
        args.setdefault("save_dir", os.fspath(save_dir))
    return VISUALIZERS.build(args, cfg_path="visualizer")
