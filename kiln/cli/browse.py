"""``kiln browse-dataset CONFIG --output-dir DIR``: training images after the pipeline, boxes drawn.

The drawing lives in :mod:`kiln.data.browse` (owned by the data package); this module only wires
the command line to it.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_override_args, load_config, user_errors
from .errors import CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln browse-dataset``."""
    p = sub.add_parser(
        name, help="write training images (after augmentation) with boxes drawn",
        description="Write the first --num images of a split as the model would see them (after the "
                    "config's pipeline: resizing, flips, crops ...) with their ground-truth boxes and class "
                    "names drawn, one PNG each, to check annotations and augmentation before training.",
        epilog="example: kiln browse-dataset kiln::shapes/retinanet_r18_fpn_shapes.py --output-dir vis "
               "--num 5")
    p.add_argument("config", help="config file (.py/.json/.yaml, a Detectron2 yaml, or kiln::NAME)")
    p.add_argument("--output-dir", required=True, help="directory the PNG files are written to")
    p.add_argument("--num", type=int, default=10, help="number of images to write")
    p.add_argument("--split", choices=["train", "val", "test"], default="train",
                   help="which split's dataset and pipeline to show (default: train)")
    add_override_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln browse-dataset``."""
    try:
        from kiln.data.browse import browse_dataset
    except ImportError as exc:
        raise CLIError(f"browse-dataset needs kiln.data.browse, which failed to import: {exc}") from exc
    cfg = load_config(args.config, args.cfg_options, args.opts)
    if args.num < 1:
        raise CLIError("--num must be >= 1")
    with user_errors("cannot browse the dataset"):
        written = browse_dataset(cfg, args.output_dir, num_images=args.num, split=args.split)
    print(f"wrote {len(written)} images to {args.output_dir}")
    return 0
