"""docs/import_map.md cannot drift: every kiln import it shows must work.

Each table row of the page is ``| upstream | kiln | notes |``; its kiln cell quotes one
``from kiln.x import Name`` and, for a method, ``→ Name.method``. The module is imported with
:func:`importlib.import_module` and the name (then the method) looked up with ``getattr``. The other
kiln imports and dotted ``kiln.x.y`` names quoted on the page (prose, "Not provided" lists) are checked too.
"""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "import_map.md"
FRAMEWORKS = ("MMCV", "MMEngine", "MMDetection", "Detectron2")

IMPORT_RE = re.compile(r"`from (kiln(?:\.\w+)*) import (\w+)`")
ATTR_RE = re.compile(r"→ `(\w+(?:\.\w+)+)`")
DOTTED_KILN_RE = re.compile(r"`(kiln(?:\.\w+)+)")
UPSTREAM_RE = re.compile(r"`((?:mmcv|mmengine|mmdet|detectron2)(?:\.\w+)*)`")


def _split_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _parse(text: str) -> dict[str, list[dict]]:
    """``{framework: [row, ...]}`` for the mapping tables under each ``## <framework>`` heading."""
    tables: dict[str, list[dict]] = {}
    section = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            section = next((f for f in FRAMEWORKS if line[3:].startswith(f)), None)
            continue
        if not line.startswith("|") or section is None:
            continue
        cells = _split_row(line)
        if cells[0] == "Upstream" or set(cells[0]) <= {"-", " "}:
            continue
        assert len(cells) == 3, f"docs/import_map.md:{lineno}: expected 3 cells, got {len(cells)}: {line}"
        upstream, kiln_cell, notes = cells
        found = IMPORT_RE.findall(kiln_cell)
        assert len(found) == 1, f"docs/import_map.md:{lineno}: the kiln cell needs one `from kiln.x import Y`"
        module, name = found[0]
        attrs = ATTR_RE.findall(kiln_cell)
        for dotted in attrs:
            assert dotted.split(".")[0] == name, f"docs/import_map.md:{lineno}: {dotted} is not on {name}"
        tables.setdefault(section, []).append({
            "line": lineno, "upstream": UPSTREAM_RE.findall(upstream), "module": module, "name": name,
            "attrs": [d.split(".")[1:] for d in attrs], "notes": notes,
        })
    return tables


TEXT = DOC.read_text(encoding="utf-8")
TABLES = _parse(TEXT)
ROWS = [row for section in FRAMEWORKS for row in TABLES.get(section, [])]


def _resolve(module: str, name: str, attrs: list[str] = ()) -> object:
    obj = getattr(importlib.import_module(module), name)
    for attr in attrs:
        obj = getattr(obj, attr)
    return obj


def test_every_framework_has_a_table():
    for section in FRAMEWORKS:
        assert len(TABLES.get(section, [])) >= 20, f"## {section}: table missing or nearly empty"


def test_upstream_cells_name_their_framework():
    prefix = {"MMCV": "mmcv", "MMEngine": "mmengine", "MMDetection": "mmdet", "Detectron2": "detectron2"}
    for section, rows in TABLES.items():
        for row in rows:
            assert row["upstream"], f"docs/import_map.md:{row['line']}: no upstream name in backticks"
            for name in row["upstream"]:
                assert name.split(".")[0] == prefix[section], (
                    f"docs/import_map.md:{row['line']}: {name} listed under ## {section}")


def test_no_upstream_name_is_listed_twice():
    seen: dict[str, int] = {}
    for row in ROWS:
        for name in row["upstream"]:
            assert name not in seen, f"{name}: rows {seen[name]} and {row['line']} of docs/import_map.md"
            seen[name] = row["line"]


@pytest.mark.parametrize("section", FRAMEWORKS)
def test_rows_import(section):
    """One test per table (not per row: 300+ tiny tests would cost more than the imports)."""
    failures = []
    for row in TABLES.get(section, []):
        for attrs in [[], *row["attrs"]]:
            try:
                _resolve(row["module"], row["name"], attrs)
            except (ImportError, AttributeError) as exc:
                failures.append(f"docs/import_map.md:{row['line']}: from {row['module']} import "
                                f"{'.'.join([row['name'], *attrs])}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def _resolve_dotted(dotted: str) -> object:
    """``kiln.a.b.C.d``: the longest importable prefix is the module, the rest attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"{dotted}: no importable prefix")


def test_imports_outside_tables():
    """`from kiln... import X` and dotted `kiln.a.b` names in the prose and "Not provided" lists exist."""
    failures = []
    checks = [(f"from {m} import {n}", lambda m=m, n=n: _resolve(m, n))
              for m, n in set(IMPORT_RE.findall(TEXT))]
    checks += [(d, lambda d=d: _resolve_dotted(d)) for d in set(DOTTED_KILN_RE.findall(TEXT))]
    for what, check in sorted(checks, key=lambda c: c[0]):
        try:
            check()
        except (ImportError, AttributeError) as exc:
            failures.append(f"{what}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def test_kiln_ships_no_upstream_aliases():
    """The page's rule: kiln has no mmcv/mmengine/mmdet/detectron2 module or alias."""
    import kiln

    root = pathlib.Path(kiln.__file__).parent
    assert "no `mmcv`, `mmengine`, `mmdet` or `detectron2` module" in TEXT
    for upstream in ("mmcv", "mmengine", "mmdet", "detectron2"):
        assert not (root / upstream).exists() and not (root / f"{upstream}.py").exists()
        assert upstream not in dir(kiln)
