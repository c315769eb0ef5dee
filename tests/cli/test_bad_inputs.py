"""Broken input files get one message naming the file (exit 2), never a traceback."""

from __future__ import annotations

import pytest
import torch

from kiln.cli import main

CFG = "kiln::shapes/retinanet_r18_fpn_shapes.py"


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  WEIGHTS: [unclosed\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read config '{bad}': invalid YAML" in err and "line 2" in err and "Traceback" not in err


def _truncated(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"model": {"w": torch.randn(256, 256)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", ["truncated zip", "garbage", "empty"])
def test_an_unreadable_checkpoint_is_one_message_naming_it(tmp_path, capsys, kind):
    if kind == "truncated zip":
        path = _truncated(tmp_path)
    else:
        path = tmp_path / "x.pth"
        path.write_bytes(b"" if kind == "empty" else b"not a checkpoint at all")
    assert main(["test", CFG, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"Checkpoint '{path}'" in err and "Traceback" not in err
    assert ("is empty" in err) if kind == "empty" else ("cannot be read" in err)


def test_the_python_api_raises_checkpoint_read_error(tmp_path):
    from kiln.checkpoint_convert.reader import CheckpointReadError, read_checkpoint

    path = _truncated(tmp_path)
    with pytest.raises(CheckpointReadError, match="truncated or not a checkpoint"):
        read_checkpoint(path)
