"""The runner's bulk metric flush: buffered step outputs -> scalar series in the event storage."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from kiln.engine import Runner
from kiln.engine.events import EventStorage, HistoryBuffer
from kiln.engine.step_metrics import convert_columns, split_columns


def test_split_columns_transposes_runs_with_changing_key_sets_in_order():
    pending = [
        (0, {"a": 1.0, "b": 2.0}),
        (1, {"a": 3.0, "b": 4.0}),
        (2, {"b": 5.0, "c": 6.0}),  # a new key set starts a new run
        (3, {"a": 7.0, "b": 8.0}),
        (4, {"a": 9.0}),
    ]
    cols = split_columns(pending)
    assert list(cols) == ["a", "b", "c"]
    assert cols["a"] == ([0, 1, 3, 4], [1.0, 3.0, 7.0, 9.0])
    assert cols["b"] == ([0, 1, 2, 3], [2.0, 4.0, 5.0, 8.0])
    assert cols["c"] == ([2], [6.0])


def test_split_columns_turns_the_loops_clock_readings_into_time_columns_when_asked():
    pending = [(5, {"loss_a": 1.0}, 0.01, 0.25), (6, {"loss_a": 2.0}, 0.02, 0.5)]
    assert set(split_columns(pending)) == {"loss_a"}  # no IterTimerHook: not logged
    cols = split_columns(pending, timings=True)
    assert list(cols) == ["loss_a", "time", "data_time"]
    assert cols["time"] == ([5, 6], [0.25, 0.5]) and cols["data_time"] == ([5, 6], [0.01, 0.02])
    # A step that measured its own data_time (Detectron2's run_step) keeps it.
    own = [(0, {"loss_a": 1.0, "data_time": 0.3}, 0.01, 0.5)]
    assert split_columns(own, timings=True)["data_time"] == ([0], [0.3])


def test_convert_columns_keeps_numbers_and_one_element_tensors_and_drops_the_rest():
    pending = [
        (i, {
            "loss": torch.tensor(float(i)),
            "count": i,  # int -> float
            "flag": True,  # bools are not logged (as put_scalar's callers expect)
            "vec": torch.ones(3),  # not a scalar
            "one": torch.tensor([2.0 * i]),  # shape (1,) counts as a scalar
            "half": torch.tensor(0.5, dtype=torch.float16),
            "long": torch.tensor(i, dtype=torch.int64),
            "name": "x",
        })
        for i in range(4)
    ]
    out = convert_columns(split_columns(pending))
    assert set(out) == {"loss", "count", "one", "half", "long"}
    assert out["loss"] == ([0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0])
    assert out["count"][1] == [0.0, 1.0, 2.0, 3.0] and all(type(v) is float for v in out["count"][1])
    assert out["one"][1] == [0.0, 2.0, 4.0, 6.0]
    assert out["half"][1] == [0.5] * 4
    assert out["long"][1] == [0.0, 1.0, 2.0, 3.0] and all(type(v) is float for v in out["long"][1])


def test_convert_columns_handles_a_column_mixing_floats_and_tensors():
    pending = [(0, {"x": 1.5}), (1, {"x": torch.tensor(2.5)}), (2, {"x": torch.zeros(2)}), (3, {"x": 4})]
    out = convert_columns(split_columns(pending))
    assert out["x"] == ([0, 1, 3], [1.5, 2.5, 4.0])


def test_convert_columns_reduce_sees_every_tensor_value_once_with_a_signature():
    seen = {}

    def reduce(stacked, signature):
        seen["n"], seen["sig"] = stacked.numel(), signature
        return stacked * 10

    pending = [(i, {"a": torch.tensor(1.0), "b": torch.tensor(2.0), "t": 0.1}) for i in range(3)]
    out = convert_columns(split_columns(pending), reduce)
    assert seen == {"n": 6, "sig": [("a", 3), ("b", 3)]}
    assert out["a"][1] == [10.0] * 3 and out["b"][1] == [20.0] * 3 and out["t"][1] == [0.1] * 3


def test_history_extend_matches_repeated_update():
    vals = [0.1 * i for i in range(50)]
    a, b = HistoryBuffer(max_length=20), HistoryBuffer(max_length=20)
    for i, v in enumerate(vals):
        a.update(v, i)
    b.extend(vals[:7], list(range(7)))
    b.extend(vals[7:], list(range(7, 50)))
    assert a.values() == b.values() and a.count() == b.count() == 50
    assert b.global_avg() == pytest.approx(a.global_avg(), rel=1e-12)
    with pytest.raises(ValueError, match="3 values but 2 iterations"):
        b.extend([1.0, 2.0, 3.0], [1, 2])
    c = HistoryBuffer()
    c.extend([1, torch.tensor(2.5)], [0, 1])  # numbers of other types become floats, as in update()
    assert c.values() == [(1.0, 0), (2.5, 1)] and all(type(v) is float for v, _ in c.values())


def test_put_scalar_series_registers_hint_and_refuses_a_different_one():
    s = EventStorage()
    s.put_scalar_series("lr", [0.1, 0.2], [0, 1], smoothing_hint=False)
    s.put_scalar_series("lr", [0.3], [2])  # None keeps the existing hint
    assert s.smoothing_hints()["lr"] is False and [v for v, _ in s.history("lr").values()] == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="smoothing_hint=False"):
        s.put_scalar_series("lr", [0.4], [3], smoothing_hint=True)


class _VaryingOutputs(nn.Module):
    """Loss terms as tensors, an extra tensor metric on odd iterations, a bool and a vector always."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.calls = 0

    def forward(self, batch):
        i = self.calls
        self.calls += 1
        out = {"loss_a": self.w * 0 + i, "loss_b": self.w * 0 + 2 * i, "ok": True, "vec": torch.ones(2)}
        if i % 2:
            out["odd"] = torch.tensor(float(i))
        return out


def test_runner_flush_puts_every_iteration_value_at_its_iteration(tmp_path):
    model = _VaryingOutputs()
    runner = Runner(
        model,
        work_dir=str(tmp_path),
        train_dataloader=[None] * 7,
        max_iters=7,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.0),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=3), checkpoint=None),
    )
    runner.train()
    s = runner.storage
    assert s.history("loss_a").values() == [(float(i), i) for i in range(7)]
    assert s.history("loss").values() == [(3.0 * i, i) for i in range(7)]
    assert s.history("odd").values() == [(float(i), i) for i in (1, 3, 5)]
    assert len(s.history("time")) == 7 and "ok" not in s.histories() and "vec" not in s.histories()
    assert math.isclose(s.history("loss_b").global_avg(), 6.0)


def _loss_vars(terms, total, **extra):
    from kiln.engine.step_metrics import LossVars

    lv = LossVars(terms, loss=total, **extra)
    lv.terms = tuple(terms)
    return lv


def test_the_total_of_parse_losses_is_logged_as_the_sum_of_its_terms_without_reading_it():
    # The total tensor holds a wrong value on purpose: if the flush read it, 999 would be logged.
    pending = [(i, _loss_vars({"loss_a": torch.tensor(1.0 * i), "loss_b": 0.5}, torch.tensor(999.0)))
               for i in range(3)]
    out = convert_columns(split_columns(pending))
    assert out["loss"] == ([0, 1, 2], [0.5, 1.5, 2.5])


def test_summed_totals_follow_the_terms_present_at_each_iteration_and_merge_with_plain_ones():
    pending = [
        (0, _loss_vars({"loss_a": 1.0, "loss_b": 2.0}, torch.tensor(0.0))),
        (1, _loss_vars({"loss_a": 1.0}, torch.tensor(0.0))),  # loss_b absent this iteration
        (2, {"loss_a": 5.0, "loss": torch.tensor(7.0)}),  # a plain dict: its total is read
        (3, _loss_vars({"loss_a": 3.0, "loss_b": 4.0}, torch.tensor(0.0))),
    ]
    out = convert_columns(split_columns(pending))
    assert out["loss"] == ([0, 1, 2, 3], [3.0, 1.0, 7.0, 7.0])


def test_parse_losses_marks_its_terms_unless_the_model_returned_its_own_total():
    from kiln.engine import parse_losses

    _, lv = parse_losses({"loss_cls": torch.tensor(1.0), "acc": torch.tensor(0.5)})
    assert lv.terms == ("loss_cls",) and lv.total_key == "loss"
    _, lv = parse_losses({"loss": torch.tensor(1.0), "loss_aux": torch.tensor(2.0)})
    assert lv.terms == () and float(lv["loss"]) == 3.0
    pending = [(0, lv)]
    assert convert_columns(split_columns(pending))["loss"] == ([0], [3.0])  # read, not summed
