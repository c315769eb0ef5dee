"""Progress reads well in a terminal (a bar) and in a log file (periodic lines, never ``\\r`` redraws)."""

from __future__ import annotations

import logging

from kiln.utils.progress import progress


def test_redirected_output_gets_periodic_log_lines_with_count_and_eta(caplog):
    log = logging.getLogger("kiln.test_progress")
    with caplog.at_level(logging.INFO, logger="kiln.test_progress"):
        items = list(progress(range(4), "val", logger=log, every_s=0.0, terminal=False))
    assert items == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and lines[0].startswith("val: 1/4 done") and "ETA" in lines[0]
    assert lines[-1].startswith("val: 4/4 done")


def test_no_line_before_the_period_and_unknown_totals_are_shown_as_such(caplog):
    log = logging.getLogger("kiln.test_progress")
    with caplog.at_level(logging.INFO, logger="kiln.test_progress"):
        assert list(progress(iter([1, 2]), "x", logger=log, every_s=3600, terminal=False)) == [1, 2]
        assert not caplog.records
        list(progress(iter([1]), "x", logger=log, every_s=0.0, terminal=False))
    first = caplog.records[0].getMessage()
    assert first.startswith("x: 1/? done") and "ETA" not in first


def test_a_terminal_gets_a_bar():
    from tqdm import tqdm

    bar = progress(range(3), "val", terminal=True)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
