"""`kiln summarize DIR`: mean ± std of final metrics across seeds/repeats."""

from __future__ import annotations

import json

import pytest

from kiln.cli import main


def _run(root, name, ap, ap50, via="jsonl"):
    d = root / name
    d.mkdir(parents=True)
    if via == "jsonl":
        lines = [{"iteration": 10, "loss": 1.0},
                 {"iteration": 20, "bbox/AP": ap - 5, "bbox/AP50": ap50 - 5},
                 {"iteration": 40, "bbox/AP": ap, "bbox/AP50": ap50}]
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    else:
        (d / "test_metrics.json").write_text(json.dumps({"bbox/AP": ap, "bbox/AP50": ap50}))


def test_groups_runs_by_shot_ignoring_seed_and_reports_mean_and_sample_std(tmp_path, capsys):
    _run(tmp_path, "1shot_seed0", 10.0, 20.0)
    _run(tmp_path, "1shot_seed1", 14.0, 24.0, via="test")
    _run(tmp_path, "5shot_seed0", 30.0, 50.0)
    assert main(["summarize", str(tmp_path), "--metrics", "bbox/AP", "bbox/AP50"]) == 0
    out = capsys.readouterr().out
    assert "| 1shot | 2 | 12.0000 ± 2.8284 | 22.0000 ± 2.8284 |" in out
    assert "| 5shot | 1 | 30.0000 ± 0.0000 | 50.0000 ± 0.0000 |" in out


def test_uses_the_last_evaluation_of_a_training_log(tmp_path, capsys):
    _run(tmp_path, "run_seed3", 40.0, 60.0)
    assert main(["summarize", str(tmp_path), "--metrics", "bbox/AP", "--format", "csv"]) == 0
    assert "run,1,40.0000,0.0000" in capsys.readouterr().out


def test_metric_names_match_with_a_prefix(tmp_path, capsys):
    d = tmp_path / "a_seed0"
    d.mkdir()
    (d / "metrics.jsonl").write_text(json.dumps({"iteration": 5, "val/bbox/AP": 33.0}) + "\n")
    assert main(["summarize", str(tmp_path), "--metrics", "bbox/AP"]) == 0
    assert "33.0000" in capsys.readouterr().out


def test_table_is_written_to_out_file(tmp_path):
    _run(tmp_path / "res", "2shot_repeat0", 1.0, 2.0)
    out = tmp_path / "table.md"
    assert main(["summarize", str(tmp_path / "res"), "--out", str(out)]) == 0
    assert out.read_text().startswith("| group | n |")


@pytest.mark.parametrize("make", [False, True])
def test_no_runs_or_missing_dir_exits_2(tmp_path, capsys, make):
    target = tmp_path / "empty"
    if make:
        target.mkdir()
    assert main(["summarize", str(target)]) == 2
    assert "empty" in capsys.readouterr().err
