"""kiln.engine.LogBuffer: MMCV's runner.log_buffer (update / average / output / ready / clear)."""

from __future__ import annotations

import pytest
import torch

from kiln.engine import LogBuffer


def test_average_weights_each_record_by_its_sample_count():
    buf = LogBuffer()
    buf.update({"loss": 1.0}, count=1)
    buf.update({"loss": 4.0}, count=3)
    buf.average()
    assert buf.ready
    assert buf.output["loss"] == pytest.approx((1.0 * 1 + 4.0 * 3) / 4)


def test_average_n_uses_only_the_last_n_records():
    buf = LogBuffer()
    for v in (10.0, 1.0, 2.0, 3.0):
        buf.update({"loss": v, "acc": 2 * v})
    buf.average(3)
    assert buf.output["loss"] == pytest.approx(2.0)
    assert buf.output["acc"] == pytest.approx(4.0)


def test_tensor_values_are_detached_and_read_as_floats():
    w = torch.tensor(2.0, requires_grad=True)
    buf = LogBuffer()
    buf.update({"loss": w * 3}, count=2)
    buf.update({"loss": torch.tensor([5.0])}, count=2)
    buf.average()
    assert isinstance(buf.output["loss"], float) and buf.output["loss"] == pytest.approx(5.5)
    assert list(buf.val_history["loss"]) == [6.0, 5.0]
    assert list(buf.n_history["loss"]) == [2.0, 2.0]


def test_output_without_an_average_shows_each_keys_latest_value_and_ready_stays_false():
    buf = LogBuffer()
    buf.update({"loss": 3.0, "acc": 0.5})
    buf.update({"loss": 2.0})
    buf.update({"grad_norm": torch.tensor(7.0)})  # an optimizer hook's separate record
    assert dict(buf.output) == {"loss": 2.0, "acc": 0.5, "grad_norm": 7.0}
    assert buf.ready is False


def test_an_average_is_held_until_clear_output_then_latest_values_show_again():
    buf = LogBuffer()
    buf.update({"loss": 1.0})
    buf.update({"loss": 3.0})
    buf.average()
    buf.update({"loss": 10.0})  # a later record does not replace the held average
    assert buf.output["loss"] == pytest.approx(2.0)
    buf.clear_output()
    assert buf.ready is False
    assert buf.output["loss"] == 10.0


def test_values_put_into_output_by_hand_are_kept():
    buf = LogBuffer()
    buf.output["bbox_mAP"] = 0.5  # what MMCV's EvalHook does
    buf.ready = True
    buf.update({"loss": 1.0})
    assert dict(buf.output) == {"bbox_mAP": 0.5}


def test_clear_drops_history_latest_values_and_output():
    buf = LogBuffer()
    buf.update({"loss": 1.0})
    buf.average()
    buf.clear()
    assert not buf.ready and dict(buf.output) == {} and dict(buf.val_history) == {}


def test_many_tensor_records_are_converted_in_bulk_without_losing_any():
    buf = LogBuffer()
    for i in range(600):  # more than the pending limit
        buf.update({"loss": torch.tensor(float(i))})
    buf.average()
    assert len(buf.val_history["loss"]) == 600
    assert buf.output["loss"] == pytest.approx(299.5)


@pytest.mark.parametrize(
    "vars_, err", [({"loss": "high"}, TypeError), ({"loss": torch.ones(3)}, ValueError), ([1.0], TypeError)]
)
def test_non_scalar_log_variables_are_refused_naming_the_key(vars_, err):
    with pytest.raises(err, match="loss|dict"):
        LogBuffer().update(vars_)


def test_average_rejects_a_negative_window():
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        LogBuffer().average(-1)
