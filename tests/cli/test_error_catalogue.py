"""Every bad input documented in docs/errors.md is run through kiln's command line; the documented
message (``...`` stands for varying text) and exit status must be what kiln prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from kiln.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
_BLOCK = re.compile(r"^```console bad-input exit=(\d+)\n(.*?)^```", re.S | re.M)


def _cases() -> list[tuple[str, int, list[str]]]:
    out = []
    for m in _BLOCK.finditer(DOC.read_text()):
        lines = m.group(2).strip().splitlines()
        assert lines[0].startswith("$ kiln "), f"docs/errors.md block must start with '$ kiln': {lines[0]}"
        out.append((lines[0][2:], int(m.group(1)), lines[1:]))
    return out


CASES = _cases()


def test_the_catalogue_is_not_empty():
    assert len(CASES) >= 15


@pytest.fixture
def kiln_logger_restored():
    """In-process runs of the CLI install handlers on the 'kiln' logger (console -> this test's captured
    stderr); remove them afterwards so a later test does not log into a closed stream."""
    import logging

    logger = logging.getLogger("kiln")
    before = list(logger.handlers)
    yield
    for handler in logger.handlers[:]:
        if handler not in before:
            logger.removeHandler(handler)
            handler.close()


@pytest.fixture
def workspace(tmp_path, monkeypatch, kiln_logger_restored):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KILN_DATA", str(tmp_path / "data"))
    (tmp_path / "bad.yaml").write_text("MODEL:\n  WEIGHTS: [unclosed\n")
    base = "_base_ = 'kiln::shapes/retinanet_r18_fpn_shapes.py'\n"
    (tmp_path / "typo.py").write_text(base + "optimizer_confg = dict(grad_clip=None)\n")
    (tmp_path / "unknown_type.py").write_text(base + "model = dict(bbox_head=dict(type='RetinaHed'))\n")
    torch.save({"model": {"w": torch.randn(256, 256)}}, tmp_path / "truncated.pth")
    data = (tmp_path / "truncated.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last_checkpoint").write_text("epoch_3.pth\n")
    (tmp_path / "run" / "epoch_1.pth").write_bytes(b"an earlier run's checkpoint")
    return tmp_path


def _matches(expected: str, actual: str) -> bool:
    """``expected`` with ``...`` as a wildcard, found in ``actual``."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.search(pattern, actual, re.S) is not None


@pytest.mark.parametrize("command, status, expected", CASES, ids=[c[0][5:60] for c in CASES])
def test_documented_bad_input(workspace, capsys, command, status, expected):
    before = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file()}
    code = main(shlex.split(command)[1:])
    err = capsys.readouterr().err
    assert code == status, err
    for line in expected:
        assert _matches(line, err), f"docs/errors.md says\n  {line}\nbut kiln printed\n  {err}"
    assert "Traceback" not in err
    # nothing that was there is changed (a failed start writes no checkpoint over an earlier run)
    assert all(p.read_bytes() == data for p, data in before.items())
