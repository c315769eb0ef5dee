"""Command-line override grammars, parsed literally (never evaluated as code).

* MM ``--cfg-options``: ``['a.b=1', 'c=x,y', 'd=[(1,2),(3,4)]', 'new.key=3']`` →
  :func:`parse_cfg_options`. Keys that do not exist yet are created when applied (MMEngine's
  rule); a leading ``+`` (kiln's older spelling for that) is kept and means the same.
* Detectron2 ``--opts``: ``['SOLVER.BASE_LR', '0.01', 'MODEL.WEIGHTS', 'w.pth']`` →
  :func:`parse_opts`.

Value grammar (:func:`parse_value`), MMEngine's ``DictAction`` values: ints, floats (``1e-3``,
``inf``), ``true/false`` (any case), ``None``, ``[...]`` lists and ``(...)`` tuples (nested),
and bare ``a,b`` which is a list. Anything else is a plain string (``none`` too: MMDetection
has ``reduction='none'``). kiln's additions, which MMEngine would read as other strings:
``null`` is ``None``, a quoted value is a string as written (``'a, b'`` keeps its comma),
``{...}`` is a dict literal, and ``dict(k=v, ...)`` is a dict whose values follow this same grammar
(read from its syntax tree: nothing is called), so ``log_config.hooks=[dict(type='TextLoggerHook')]``
means what it says in a config file.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

__all__ = ["parse_value", "parse_cfg_options", "parse_opts", "NEW_KEY_PREFIX"]

NEW_KEY_PREFIX = "+"

_BOOLS = {"true": True, "false": False}
_NONES = {"None", "null"}  # exact spellings: "none" stays a string, as in MMEngine


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"Unbalanced brackets in override value {text!r}.")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0 or quote:
        raise ConfigError(f"Unbalanced brackets or quotes in override value {text!r}.")
    parts.append(text[start:])
    return parts


def _matching_close(text: str) -> bool:
    """True when the opening bracket at 0 closes exactly at the last character."""
    depth, quote = 0, ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def _parse_scalar(text: str) -> Any:
    low = text.lower()
    if low in _BOOLS:
        return _BOOLS[low]
    if text in _NONES:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:  # 'inf', 'nan', '1_0.5': what MMEngine's float() accepts
            return float(text)
        except ValueError:
            return text
    if isinstance(value, (int, float, complex, str, bytes)):
        return value
    return text


def _dict_call(text: str) -> dict[str, Any]:
    """``dict(a=1, b=dict(c='x'), d=[1, 2])`` -> a dict, from the syntax tree (never evaluated)."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ConfigError(f"Cannot parse override value {text!r}: {exc.msg}.") from None

    def convert(n: ast.AST) -> Any:
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "dict":
            if n.args or any(k.arg is None for k in n.keywords):
                raise ConfigError(f"Override value {text!r}: only dict(key=value, ...) is understood.")
            return {k.arg: convert(k.value) for k in n.keywords}
        if isinstance(n, (ast.List, ast.Tuple)):
            items = [convert(e) for e in n.elts]
            return items if isinstance(n, ast.List) else tuple(items)
        if isinstance(n, ast.Name) and n.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[n.id]
        try:
            return ast.literal_eval(n)
        except ValueError:
            raise ConfigError(f"Override value {text!r}: {ast.unparse(n)!r} is not a literal (numbers, "
                              f"quoted strings, None/True/False, lists, tuples, dict(...)).") from None

    return convert(node)


def parse_value(text: str) -> Any:
    """Parse one override value literally (see the module docstring for the grammar).

    Example::

        >>> parse_value('[(1,2),(3,4)]'), parse_value('a,b'), parse_value('1e-3')
        ([(1, 2), (3, 4)], ['a', 'b'], 0.001)
    """
    text = text.strip()
    if not text:
        return ""
    if text[0] in "[(" and _matching_close(text):
        inner = text[1:-1].strip()
        items = [p for p in _split_top_level(inner)] if inner else []
        if items and not items[-1].strip():  # trailing comma: (1,)
            items = items[:-1]
        values = [parse_value(p) for p in items]
        return values if text[0] == "[" else tuple(values)
    if text[0] == "{" and _matching_close(text):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(
                f"Cannot parse dict override value {text!r}: {exc}. Use a Python dict literal "
                f"with quoted string keys, e.g. {{'a': 1}}."
            ) from None
        return value
    if text.startswith("dict(") and _matching_close(text[4:]):
        return _dict_call(text)
    parts = _split_top_level(text)
    if len(parts) > 1:
        return [parse_value(p) for p in parts if p.strip()]
    return _parse_scalar(text)


def parse_cfg_options(options: Sequence[str] | None) -> dict[str, Any]:
    """Parse MM-style ``key=value`` strings into ``{dotted_key: value}``.

    Keys keep a leading ``+`` if written (``'+a.b'``; it means the same as ``'a.b'``).
    Several ``key=value`` may share one string separated by spaces
    only when passed as separate list items (as argparse does).
    """
    out: dict[str, Any] = {}
    for item in options or ():
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(
                f"Override {item!r} is not of the form key=value (e.g. model.backbone.depth=50 "
                f"or seed=0)."
            )
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or key == NEW_KEY_PREFIX:
            raise ConfigError(f"Override {item!r} has an empty key.")
        try:
            out[key] = parse_value(raw)
        except ConfigError as exc:
            raise ConfigError(f"--cfg-options {key}: {exc}") from None
    return out


def parse_opts(opts: Sequence[str] | None) -> dict[str, Any]:
    """Parse Detectron2-style ``KEY VALUE KEY VALUE ...`` into ``{dotted_key: value}``."""
    opts = list(opts or ())
    if len(opts) % 2:
        raise ConfigError(
            f"--opts needs KEY VALUE pairs, got an odd number of items ({len(opts)}): {opts}. "
            f"The last key without a value is {opts[-1]!r}."
        )
    out: dict[str, Any] = {}
    for key, raw in zip(opts[0::2], opts[1::2]):
        out[str(key)] = parse_value(raw) if isinstance(raw, str) else raw
    return out
