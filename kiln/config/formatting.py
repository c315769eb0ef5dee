"""Config → Python source (``pretty_text``) that loads back to an identical config.

No code formatter is needed: values are written as ``dict(k=v)`` (or ``{...}`` when keys are
not identifiers), lists/tuples inline when short, one item per line otherwise. Classes and
functions used as values (``type=MyHead``) are written through an aliased import
(``from pkg.mod import MyHead as __kiln_ref_0__``), so they load back as the same object.
"""

from __future__ import annotations

import keyword
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

INDENT = 4
WIDTH = 100


def _is_ident(key: Any) -> bool:
    # Python NFKC-normalizes identifiers (`º = 1` binds `o`), so such a key is written quoted.
    return (
        isinstance(key, str)
        and key.isidentifier()
        and not keyword.iskeyword(key)
        and unicodedata.normalize("NFKC", key) == key
    )


class _Formatter:
    def __init__(self, dict_calls: bool = True) -> None:
        self.imports: dict[tuple[str, str], str] = {}
        # A top-level key named `dict` would shadow the builtin that `dict(...)` calls need.
        self.dict_calls = dict_calls

    def ref(self, obj: Any) -> str:
        module = getattr(obj, "__module__", None)
        qual = getattr(obj, "__qualname__", None)
        if not module or not qual or "<" in qual or "." in qual or module == "__kiln_config__":
            return repr(f"{module}.{qual}" if module and qual else repr(obj))
        key = (module, qual)
        if key not in self.imports:
            self.imports[key] = f"__kiln_ref_{len(self.imports)}__"
        return self.imports[key]

    def scalar(self, value: Any) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            # literals, not float('inf'): a config key named `float` must not break loading
            return "(1e999 * 0)" if math.isnan(value) else ("1e999" if value > 0 else "-1e999")
        if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
            return self.ref(value)
        return repr(value)

    def inline(self, value: Any) -> str:
        if isinstance(value, Mapping):
            if self.dict_calls and all(_is_ident(k) for k in value):
                return "dict(" + ", ".join(f"{k}={self.inline(v)}" for k, v in value.items()) + ")"
            return "{" + ", ".join(f"{self.inline(k)}: {self.inline(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.inline(v) for v in value) + "]"
        if type(value) is tuple:
            items = [self.inline(v) for v in value]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return self.scalar(value)

    def block(self, value: Any, indent: int) -> str:
        text = self.inline(value)
        if len(text) + indent <= WIDTH or not isinstance(value, (Mapping, list, tuple)):
            return text
        pad = " " * (indent + INDENT)
        end = " " * indent
        if isinstance(value, Mapping):
            if self.dict_calls and all(_is_ident(k) for k in value):
                items = [f"{pad}{k}={self.block(v, indent + INDENT)}," for k, v in value.items()]
                return "dict(\n" + "\n".join(items) + f"\n{end})"
            items = [f"{pad}{self.inline(k)}: {self.block(v, indent + INDENT)},"
                     for k, v in value.items()]
            return "{\n" + "\n".join(items) + f"\n{end}}}"
        items = [f"{pad}{self.block(v, indent + INDENT)}," for v in value]
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        return open_ + "\n" + "\n".join(items) + f"\n{end}{close}"


def format_py(cfg: Mapping) -> str:
    """Write ``cfg`` as a Python config file."""
    fmt = _Formatter(dict_calls="dict" not in cfg)
    lines = []
    needs_ns = False
    for key, value in cfg.items():
        if _is_ident(key):
            lines.append(f"{key} = {fmt.block(value, 0)}")
        else:  # not an identifier: still loadable, through the module namespace
            needs_ns = True
            lines.append(f"__kiln_ns__[{key!r}] = {fmt.block(value, 0)}")
    header = [f"from {m} import {q} as {alias}" for (m, q), alias in fmt.imports.items()]
    if needs_ns:  # bound before any key is assigned, so a key named `globals` cannot shadow it
        header.append("__kiln_ns__ = globals()")
    return "\n".join(header + ([""] if header else []) + lines) + "\n"
