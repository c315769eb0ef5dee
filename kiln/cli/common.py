"""Helpers shared by subcommands: loading a config with overrides, mapping user errors to exit 2."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import CLIError

__all__ = [
    "add_override_args", "load_config", "load_canonical_config", "user_errors", "is_d2_yaml",
    "default_work_dir", "resolve_checkpoint",
]

# Exceptions that, while reading a config or building from it, mean "the user's input is wrong".
_USER_ERRORS = (KeyError, TypeError, ValueError, FileNotFoundError, SyntaxError, ImportError, LookupError)


def add_override_args(parser: argparse.ArgumentParser, opts: bool = True) -> None:
    """Add ``--cfg-options k=v ...`` (MM grammar) and ``--opts KEY VALUE ...`` (Detectron2 grammar)."""
    parser.add_argument(
        "--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
        help="override config keys, e.g. optim_wrapper.optimizer.lr=0.01 (MMDetection 3.x) or "
             "optimizer.lr=0.01 data.samples_per_gpu=2 (2.x); values are literals: numbers, strings, "
             "[lists], (tuples), dict(k=v); a leading + creates a new key: +foo=1")
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE (a module name importable from the current directory, or a .py file) before "
             "the config is read, e.g. to register your own datasets (register_coco_instances / "
             "register_pascal_voc) under the names a Detectron2 yaml uses; repeatable")
    if opts:
        parser.add_argument(
            "--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
            help="Detectron2-style overrides as KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.01; "
                 "must come last")


@contextlib.contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Turn config/build mistakes raised inside the block into a :class:`CLIError`.

    ``KILN_DEBUG=1`` lets the original exception (and its traceback) through.
    """
    try:
        yield
    except CLIError:
        raise
    except _USER_ERRORS as exc:
        if os.environ.get("KILN_DEBUG"):
            raise
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise CLIError(f"{what}: {type(exc).__name__}: {msg}") from exc


def import_plugins(modules: Sequence[str]) -> None:
    """Import each of ``modules`` (``--import``): a module name (the current directory is searched first)
    or a path to a ``.py`` file. Their top-level code runs (registrations)."""
    import importlib
    import importlib.util
    import sys

    for name in modules:
        try:
            if name.endswith(".py"):
                if not os.path.isfile(name):
                    raise FileNotFoundError(f"no such file: {name}")
                mod_name = os.path.splitext(os.path.basename(name))[0]
                spec = importlib.util.spec_from_file_location(mod_name, name)
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                if os.getcwd() not in sys.path:
                    sys.path.insert(0, os.getcwd())
                importlib.import_module(name)
        except Exception as exc:
            if os.environ.get("KILN_DEBUG"):
                raise
            raise CLIError(f"--import {name}: {type(exc).__name__}: {exc}") from exc


def is_d2_yaml(path: str) -> bool:
    """True for a Detectron2-style yaml: top-level keys are UPPER_CASE (MODEL, SOLVER, _BASE_, ...)."""
    if not path.endswith((".yaml", ".yml")):
        return False
    import yaml

    from kiln.fileio.yaml_io import yaml_load

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml_load(f)  # kiln's safe loader: Detectron2's !!python/object/apply:eval included
    except FileNotFoundError:
        return False  # (the loader says it properly, naming the file)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        if os.environ.get("KILN_DEBUG"):
            raise
        raise CLIError(f"cannot read config '{path}': invalid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict) or not data:
        return False
    keys = [k for k in data if isinstance(k, str)]
    return bool(keys) and all(k == k.upper() for k in keys)


def _load_native(path: str, cfg_options: dict[str, Any]) -> Any:
    from kiln.config import Config

    # Config.fromfile applies an override of a top-level .py variable (data_root) at its
    # assignment, so values computed from it (ann_file=data_root + ...) follow.
    return Config.fromfile(path, cfg_options=cfg_options or None)


def load_config(path: str, cfg_options: Sequence[str] = (), opts: Sequence[str] = (),
                num_gpus: int = 1) -> Any:
    """Load ``path`` (``kiln::`` names, .py/.json/.yaml, or a Detectron2 yaml) and apply overrides.

    ``cfg_options`` are MM ``key=value`` strings and ``opts`` Detectron2 ``KEY VALUE`` items. For a
    Detectron2 yaml the ``--opts`` go into the CfgNode before it is mapped to a native config; for
    a native config both grammars address native keys. ``num_gpus`` (all processes of the run) divides a
    Detectron2 ``SOLVER.IMS_PER_BATCH``, which is the total batch size, into the per-process batch.

    Raises:
        CLIError: missing file, syntax error, unknown override key, bad value, ...
    """
    from kiln.model_zoo import resolve_config_path

    with user_errors(f"cannot load config '{path}'"):
        real = resolve_config_path(path)
        if not Path(real).is_file():
            raise CLIError(f"config file '{path}' does not exist")
        from kiln.config.overrides import parse_cfg_options, parse_opts

        options = parse_cfg_options(cfg_options)
        if is_d2_yaml(real):
            from .d2_config import load_d2_config

            cfg = load_d2_config(real, list(opts), num_gpus=num_gpus)
            if options:
                cfg.merge_from_dict(options)
            return cfg
        options.update(parse_opts(opts))
        return _load_native(real, options)


def load_canonical_config(path: str, cfg_options: Sequence[str] = (), opts: Sequence[str] = (),
                          num_gpus: int = 1) -> Any:
    """:func:`load_config` (overrides in the file's own dialect), then translated to the canonical schema.

    Returns a :class:`kiln.config.Config` holding only canonical keys (its ``filename`` is the file's).
    """
    from kiln.config import Config
    from kiln.config.dialects import to_canonical

    cfg = load_config(path, cfg_options, opts, num_gpus=num_gpus)
    with user_errors(f"cannot translate config '{path}'"):
        return Config(to_canonical(cfg), filename=getattr(cfg, "filename", None))


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or a work_dir whose ``last_checkpoint`` names one; else :class:`CLIError`."""
    if os.path.isdir(path):
        pointer = os.path.join(path, "last_checkpoint")
        name = open(pointer).read().strip() if os.path.isfile(pointer) else ""
        found = name if os.path.isabs(name) else os.path.join(path, name)
        if not name or not os.path.isfile(found):
            raise CLIError(f"'{path}' is a directory without a usable last_checkpoint; pass a .pth file")
        return found
    if not os.path.isfile(path):
        raise CLIError(f"checkpoint '{path}' does not exist")
    return path


def default_work_dir(config_path: str) -> str:
    """``./work_dirs/<config file stem>`` (MMDetection's default)."""
    stem = Path(config_path.split("::")[-1]).stem
    return os.path.join("work_dirs", stem)
