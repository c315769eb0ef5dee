"""print_csv_format and verify_results (TEST.EXPECTED_RESULTS) on flat and nested results."""

import logging

import pytest

from kiln.config import CfgNode
from kiln.evaluation import print_csv_format, verify_results

FLAT = {"bbox/AP": 41.23456, "bbox/AP50": 60.0, "bbox/AP-person": 50.0, "count": 3}


def cfg(expected):
    return CfgNode(dict(TEST=dict(EXPECTED_RESULTS=expected)))


def test_print_csv_format_groups_flat_keys_by_task(caplog):
    with caplog.at_level(logging.INFO, logger="kiln.evaluation.testing"):
        print_csv_format(FLAT)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["copypaste: Task: bbox", "copypaste: AP,AP50", "copypaste: 41.2346,60.0000",
                     "copypaste: count=3"]


def test_verify_results_passes_within_tolerance_for_both_result_forms():
    assert verify_results(cfg([]), FLAT)
    assert verify_results(cfg([["bbox", "AP", 41.2, 0.05]]), FLAT)
    assert verify_results(cfg([["bbox", "AP50", 60.0, 0.0]]), {"bbox": {"AP50": 60.0}})


@pytest.mark.parametrize("expected", [[["bbox", "AP", 40.0, 0.5]], [["bbox", "APs", 1.0, 1.0]],
                                      [["segm", "AP", 1.0, 1.0]]])
def test_verify_results_exits_with_status_1_on_a_miss(expected, caplog):
    with pytest.raises(SystemExit) as e:
        verify_results(cfg(expected), FLAT)
    assert e.value.code == 1
    assert "Result verification failed!" in caplog.text


def test_malformed_expected_results_are_explained():
    with pytest.raises(ValueError, match=r"expected \[task, metric, expected value, tolerance\]"):
        verify_results(cfg([["bbox", "AP", 40.0]]), FLAT)
