"""YAML with safe loading only, plus a ``!tuple`` tag so tuples survive a dump/load round trip.

The loader is ``yaml.SafeLoader`` (or the C version when available) with two extra constructors:
``!tuple`` sequences, and Detectron2's ``!!python/object/apply:eval ["expression"]``, whose expression
is evaluated by :func:`kiln.fileio.safe_eval.safe_eval` (literals, arithmetic, comprehensions; no names,
attributes or calls). Every other ``!!python/...`` tag is refused with the line it is on; nothing here
can construct arbitrary Python objects.
"""

from __future__ import annotations

from typing import IO, Any

import yaml
from yaml import YAMLError

__all__ = ["yaml_load", "yaml_dump", "YAMLError", "SafeTupleLoader", "SafeTupleDumper"]

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class SafeTupleLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """``yaml.SafeLoader`` that also reads ``!tuple [1, 2]`` as a tuple."""


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


SafeTupleLoader.add_constructor("!tuple", _construct_tuple)

_EVAL_TAG = "tag:yaml.org,2002:python/object/apply:eval"


def _construct_eval(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    from yaml.constructor import ConstructorError

    from .safe_eval import UnsafeExpressionError, safe_eval

    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else None
    if not args or len(args) != 1 or not isinstance(args[0], str):
        raise ConstructorError(None, None, "!!python/object/apply:eval takes one string, e.g. "
                               "!!python/object/apply:eval [\"[x * 2 for x in [32, 64]]\"]", node.start_mark)
    try:
        return safe_eval(args[0])
    except UnsafeExpressionError as exc:
        raise ConstructorError(None, None, f"!!python/object/apply:eval {args[0]!r}: {exc}. kiln evaluates "
                               f"literals, arithmetic and comprehensions only", node.start_mark) from None


def _refuse_python_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    from yaml.constructor import ConstructorError

    raise ConstructorError(None, None, f"tag !!python/{suffix} would construct a Python object; kiln loads "
                           f"yaml safely and evaluates only !!python/object/apply:eval list expressions. "
                           f"Write the value as plain yaml.", node.start_mark)


SafeTupleLoader.add_constructor(_EVAL_TAG, _construct_eval)
SafeTupleLoader.add_multi_constructor("tag:yaml.org,2002:python/", _refuse_python_tag)


class SafeTupleDumper(_BaseDumper):  # type: ignore[misc, valid-type]
    """``yaml.SafeDumper`` that writes tuples as ``!tuple`` and dict subclasses as maps."""


def _represent_tuple(dumper: yaml.SafeDumper, data: tuple) -> yaml.Node:
    return dumper.represent_sequence("!tuple", list(data), flow_style=True)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    return dumper.represent_dict(data.items())


SafeTupleDumper.add_representer(tuple, _represent_tuple)
SafeTupleDumper.add_multi_representer(dict, _represent_dict)


def _represent_numpy(dumper: yaml.SafeDumper, data: Any) -> yaml.Node:
    return dumper.represent_data(data.tolist() if hasattr(data, "tolist") else data.item())


def _register_numpy() -> None:
    import sys

    np = sys.modules.get("numpy")  # only when numpy is already loaded; never import it here
    if np is not None and not getattr(SafeTupleDumper, "_kiln_numpy", False):
        SafeTupleDumper.add_multi_representer(np.generic, _represent_numpy)
        SafeTupleDumper.add_representer(np.ndarray, _represent_numpy)
        SafeTupleDumper._kiln_numpy = True  # type: ignore[attr-defined]


def yaml_load(stream: str | bytes | IO) -> Any:
    """Safely parse YAML (``!tuple`` sequences become tuples)."""
    return yaml.load(stream, Loader=SafeTupleLoader)  # noqa: S506 - SafeLoader subclass


def yaml_dump(obj: Any, stream: IO | None = None, **kwargs: Any) -> str | None:
    """Dump to YAML keeping key order; tuples are tagged ``!tuple``."""
    _register_numpy()
    kwargs.setdefault("sort_keys", False)
    kwargs.setdefault("default_flow_style", False)
    kwargs.setdefault("allow_unicode", True)
    return yaml.dump(obj, stream, Dumper=SafeTupleDumper, **kwargs)
