"""Config → Python source (``pretty_text``) that loads back to an identical config.

No code formatter is needed: values are written as ``dict(k=v)`` (or ``{...}`` when keys are
not identifiers), lists/tuples inline when short, one item per line otherwise. Classes and
functions used as values (``type=MyHead``) are written through an aliased import
(``from pkg.mod import MyHead as __kiln_ref_0__``), so they load back as the same object.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping
from typing import Any

INDENT = 4
WIDTH = 100


def _is_ident(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


class _Formatter:
    def __init__(self) -> None:
        self.imports: dict[tuple[str, str], str] = {}

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
            return f"float({str(value)!r})"
        if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
            return self.ref(value)
        return repr(value)

    def inline(self, value: Any) -> str:
        if isinstance(value, Mapping):
            if all(_is_ident(k) for k in value):
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
            if all(_is_ident(k) for k in value):
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
    fmt = _Formatter()
    lines = []
    for key, value in cfg.items():
        if _is_ident(key):
            lines.append(f"{key} = {fmt.block(value, 0)}")
        else:  # not an identifier: still loadable, through globals()
            lines.append(f"globals()[{key!r}] = {fmt.block(value, 0)}")
    header = [f"from {m} import {q} as {alias}" for (m, q), alias in fmt.imports.items()]
    return "\n".join(header + ([""] if header else []) + lines) + "\n"
