"""Run the runnable examples in docs/*.md, so documentation cannot drift from the code.

Marking (any page can opt in):

* a fenced block whose info string is ``python runnable`` is executed;
* a fenced block whose info string has ``file=REL/PATH`` (e.g. ``yaml file=configs/base.yaml``)
  is written to that path before later blocks run, so examples can show config files;
* other blocks (plain ``python``, ``bash``, ...) are illustration only.

All blocks of one page run in order, sharing one namespace, in a fresh temporary working
directory. A failure names the page and the line where the failing block starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def parse_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line, info, body)`` for every fenced block of a markdown text."""
    blocks = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        blocks.append((line, m.group(1).strip(), m.group(2)))
    return blocks


def _is_marked(info: str) -> bool:
    words = info.split()
    return "runnable" in words or any(w.startswith("file=") for w in words)


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if any(_is_marked(i) for _, i, _ in
                                                       parse_blocks(p.read_text(encoding="utf-8"))))


def test_parse_blocks_finds_marked_blocks():
    text = "x\n```python runnable\na = 1\n```\n\n```yaml file=c.yaml\nk: 1\n```\n```bash\nls\n```\n"
    assert [(line, info) for line, info, _ in parse_blocks(text)] == [
        (2, "python runnable"), (6, "yaml file=c.yaml"), (9, "bash")]
    assert [_is_marked(i) for _, i, _ in parse_blocks(text)] == [True, True, False]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_doc_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for line, info, body in parse_blocks(page.read_text(encoding="utf-8")):
        words = info.split()
        targets = [w[len("file="):] for w in words if w.startswith("file=")]
        if targets:
            target = tmp_path / targets[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
        elif "runnable" in words:
            code = compile(body, f"{page.relative_to(DOCS.parent)}:{line}", "exec")
            try:
                exec(code, namespace)
            except Exception as exc:
                raise AssertionError(
                    f"{page.name}: the example starting at line {line} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    assert os.getcwd() == str(tmp_path)
