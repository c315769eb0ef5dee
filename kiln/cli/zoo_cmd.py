"""``kiln zoo list|get|download|add|convert``: the model zoo table, the checkpoint cache, converters."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CLIError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, name: str) -> argparse.ArgumentParser:
    """Register ``kiln zoo``."""
    p = sub.add_parser(
        name, help="model zoo: list entries, download checkpoints, convert checkpoints",
        description="Published checkpoints are downloaded on first use into $KILN_HOME/checkpoints "
                    "(KILN_ZOO_MIRROR redirects downloads, KILN_OFFLINE=1 forbids them).")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    pl = actions.add_parser("list", help="list zoo entries (or, with --configs, shipped config files)")
    pl.add_argument("--configs", action="store_true", help="list shipped config files (kiln:: names)")
    pg = actions.add_parser("get", help="print the config path and the checkpoint path (downloading it)")
    pg.add_argument("name")
    pg.add_argument("--config-only", action="store_true", help="print only the config file path")
    pd = actions.add_parser("download", help="download (and verify) the checkpoints of NAMEs into the cache")
    pd.add_argument("names", nargs="+", metavar="NAME")
    pa = actions.add_parser("add", help="publish a local checkpoint into the zoo cache under NAME")
    pa.add_argument("name")
    pa.add_argument("checkpoint")
    pa.add_argument("--config", default=None, help="config file (default: the entry's config)")
    pc = actions.add_parser(
        "convert", help="write a checkpoint of any layout (Detectron2, Caffe2, torchvision...) in kiln names",
        description="Reads SRC (a file, URL, zoo name or torchvision:// / detectron2:// / open-mmlab:// "
                    "name), renames it into kiln's (MMDetection's) names and writes DST as "
                    "{'state_dict': ..., 'meta': ...}, loadable by kiln and MMDetection.")
    add_convert_args(pc)
    return p


def add_convert_args(p: argparse.ArgumentParser) -> None:
    """SRC DST [--config CFG] [--to kiln|mmdet|detectron2] (``kiln convert`` and ``kiln zoo convert``)."""
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--config", default=None,
                   help="match the weights to this model's names and anchor order (recommended)")
    p.add_argument("--to", choices=("kiln", "mmdet", "detectron2"), default="mmdet",
                   help="layout to write: kiln ({'model': ...}), mmdet ({'state_dict': ..., 'meta': ...}; "
                        "default) or detectron2 ({'model': ...} with Detectron2's names; .pkl DST writes "
                        "numpy arrays as Detectron2's model zoo does)")


def _list(configs: bool) -> int:
    from kiln import model_zoo

    if configs:
        for rel in model_zoo.list_configs():
            print(f"kiln::{rel}")
        return 0
    print(f"{'name':<46} {'checkpoint':<10} {'published':<22} config / note")
    for e in model_zoo.list_entries():
        try:
            model_zoo.get_checkpoint_path(e.name, verify=False, download=False)
            state = "cached"
        except model_zoo.ZooError:
            state = "missing" if e.cache_name else "-"
        figure = f"{e.metric} {e.box_ap}" if e.box_ap is not None else ""
        if figure and e.dataset != "COCO val2017":
            figure += f" ({e.dataset})"
        print(f"{e.name:<46} {state:<10} {figure:<22} {e.config or ''}  {e.note}".rstrip())
    return 0


def _convert(src: str, dst: str, config: str | None, to: str = "mmdet") -> int:
    import torch

    from kiln import model_zoo
    from kiln.checkpoint_convert import convert_for_model, read_checkpoint, to_kiln_names
    from kiln.engine.checkpoint import atomic_torch_save

    try:
        entry = model_zoo.get_entry(src)
    except model_zoo.ZooError:
        entry = None
    path = model_zoo.get_checkpoint_path(entry.name) if entry and entry.url else str(
        model_zoo.resolve_weights(src))
    if config is None and entry is not None and entry.config:
        config = entry.config
    ckpt = read_checkpoint(path)
    if config:
        model = _build(config)
        state, report = convert_for_model(ckpt["model"], model.state_dict(), source=f"'{path}'", model=model)
        print(report.format())
        layout = report.layout
    else:
        state, layout, notes = to_kiln_names(ckpt["model"])
        print(f"layout: {layout}; {len(state)} tensors renamed into kiln names" +
              "".join(f"\n  note: {n}" for n in notes))
    meta = {"converted_from": path, "layout": layout}
    if config:
        meta["config"] = config
    tensors = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    if to == "detectron2":
        from kiln.checkpoint_convert.anchors import anchor_slots
        from kiln.checkpoint_convert.export import ExportError, kiln_to_detectron2

        try:
            tensors = kiln_to_detectron2(tensors, anchor_slots(model) if config else None)
        except ExportError as e:
            raise CLIError(f"cannot write {dst} in Detectron2's layout: {e}") from None
        if dst.endswith(".pkl"):
            import pickle

            from kiln.fileio.paths import atomic_open

            with atomic_open(dst, "wb") as f:
                pickle.dump({"model": {k: v.numpy() for k, v in tensors.items()}, "__author__": "kiln",
                             "matching_heuristics": False}, f, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            atomic_torch_save({"model": tensors}, dst)
    elif to == "kiln":
        atomic_torch_save({"model": tensors, "meta": meta}, dst)
    else:
        atomic_torch_save({"state_dict": tensors, "meta": meta}, dst)
    print(f"wrote {dst} ({to} layout)" + (f"; matches config {config}" if config else
                                          "; pass --config to match a model's names and anchor order"))
    return 0


def _build(config: str) -> Any:
    from kiln.model_zoo import build_model

    return build_model(config)


def run(args: argparse.Namespace) -> int:
    """Execute ``kiln zoo ACTION``."""
    from kiln import model_zoo

    try:
        if args.action == "list":
            return _list(args.configs)
        if args.action == "get":
            entry = model_zoo.get_entry(args.name)
            if entry.config:
                print(f"config: {model_zoo.get_config_file(args.name)}")
            if not args.config_only:
                print(f"checkpoint: {model_zoo.get_checkpoint_path(args.name)}")
            if entry.box_ap is not None:
                print(f"published: {entry.metric} {entry.box_ap} on {entry.dataset} ({entry.publisher})")
            return 0
        if args.action == "download":
            for name in args.names:
                print(f"{name}: {model_zoo.get_checkpoint_path(name)}")
            return 0
        if args.action == "convert":
            return _convert(args.src, args.dst, args.config, args.to)
        config = args.config
        if config is not None:
            model_zoo.resolve_config_path(config)  # fail early on a bad kiln:: name
        entry = model_zoo.add_entry(args.name, args.checkpoint, config=config)
        print(f"added '{entry.name}': {model_zoo.get_checkpoint_path(entry.name)} (sha256 {entry.sha256})")
        return 0
    except (model_zoo.ZooError, model_zoo.DownloadError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from exc
