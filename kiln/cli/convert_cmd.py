"""``kiln convert SRC DST [--config CFG] [--to kiln|mmdet|detectron2]``: write a checkpoint in another layout.

SRC is any checkpoint kiln reads (a file, URL, zoo name, ``torchvision://``/``detectron2://``/
``open-mmlab://`` name; kiln, MMDetection, Detectron2, Caffe2/MSRA or torchvision layout). It is renamed
into kiln's (= MMDetection's) names and written as ``--to`` asks; ``--to detectron2`` renames back into
Detectron2's names and checks the result converts back to the same weights.
"""

from __future__ import annotations

import argparse
from typing import Any

from .zoo_cmd import _convert, add_convert_args

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln convert``."""
    p = sub.add_parser(
        name, help="convert a checkpoint between kiln/MMDetection, Detectron2, Caffe2, torchvision layouts",
        description=__doc__.split("\n\n", 1)[1].strip())
    add_convert_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln convert``."""
    from kiln import model_zoo

    from .errors import CLIError

    try:
        return _convert(args.src, args.dst, args.config, args.to)
    except (model_zoo.ZooError, model_zoo.DownloadError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from exc
