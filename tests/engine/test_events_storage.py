"""EventStorage and HistoryBuffer: what training code puts, writers read, and checkpoints keep."""

import io
import math

import pytest
import torch

from kiln.engine.events import EventStorage, HistoryBuffer, get_event_storage, has_event_storage


def test_history_buffer_windowed_statistics():
    h = HistoryBuffer()
    for i, v in enumerate([1.0, 2.0, 3.0, 100.0]):
        h.update(v, i)
    assert h.latest() == 100.0
    assert h.median(3) == 3.0
    assert h.median(4) == 2.5 and h.median(2) == 51.5  # even windows: the mean of the middle two
    assert h.median(1) == 100.0
    assert h.avg(2) == 51.5
    assert h.global_avg() == pytest.approx(26.5)
    assert h.values() == [(1.0, 0), (2.0, 1), (3.0, 2), (100.0, 3)]


def test_history_buffer_keeps_max_length_but_global_avg_covers_all():
    h = HistoryBuffer(max_length=3)
    for i in range(10):
        h.update(float(i), i)
    assert [v for v, _ in h.values()] == [7.0, 8.0, 9.0]
    assert len(h) == 3
    assert h.global_avg() == pytest.approx(4.5)
    assert h.count() == 10


def test_get_event_storage_outside_context_explains_how_to_open_one():
    assert not has_event_storage()
    with pytest.raises(RuntimeError, match=r"with EventStorage\(start_iter=0\)"):
        get_event_storage()


def test_storages_nest_as_a_stack():
    with EventStorage() as outer:
        with EventStorage() as inner:
            assert get_event_storage() is inner
        assert get_event_storage() is outer


def test_put_scalar_records_at_current_iteration_and_step_advances():
    with EventStorage(start_iter=5) as s:
        s.put_scalar("loss", 2.0)
        s.step()
        s.put_scalar("loss", 4.0)
        assert s.iter == 6
        assert s.history("loss").values() == [(2.0, 5), (4.0, 6)]
        assert s.latest() == {"loss": (4.0, 6)}


def test_put_scalar_cur_iter_overrides_iteration():
    with EventStorage(start_iter=10) as s:
        s.put_scalar("val/AP", 0.5, smoothing_hint=False, cur_iter=3)
        assert s.latest()["val/AP"] == (0.5, 3)


def test_cpu_tensor_values_become_floats_without_keeping_the_graph():
    w = torch.tensor(3.0, requires_grad=True)
    with EventStorage() as s:
        s.put_scalar("loss", w * 2)
        s.put_scalars(a=torch.tensor([1.5]), b=torch.tensor(2, dtype=torch.int64))
        assert type(s.history("loss")._values[0]) is float  # no tensor (and no autograd graph) retained
        assert s.latest() == {"loss": (6.0, 0), "a": (1.5, 0), "b": (2.0, 0)}


def test_history_buffer_converts_pending_tensor_values_in_order_when_read():
    h = HistoryBuffer(max_length=4)
    h.update(1.0, 0)
    h.update(torch.tensor(2.0), 1)  # what put_scalar stores for accelerator tensors
    h.update(3.0, 2)
    h.update(torch.tensor(4.0), 3)
    assert h.count() == 4
    assert h.values() == [(1.0, 0), (2.0, 1), (3.0, 2), (4.0, 3)]
    assert h.global_avg() == 2.5
    for i in range(4, 8):  # trimming converts what it keeps
        h.update(torch.tensor(float(i + 1)), i)
    assert h.values() == [(5.0, 4), (6.0, 5), (7.0, 6), (8.0, 7)] and h.global_avg() == 4.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the deferred path is for accelerator tensors")
def test_cuda_tensor_values_are_kept_detached_until_read():
    w = torch.tensor(3.0, device="cuda", requires_grad=True)
    with EventStorage() as s:
        for i in range(3):
            s.iter = i
            s.put_scalar("loss", w * (i + 1))
            s.put_scalar("acc", torch.tensor([0.5], device="cuda"))
        raw = s.history("loss")._values
        assert all(isinstance(v, torch.Tensor) and v.grad_fn is None for v in raw)
        assert s.latest() == {"loss": (9.0, 2), "acc": (0.5, 2)}  # one conversion for all pending values
        assert s.history("loss").values() == [(3.0, 0), (6.0, 1), (9.0, 2)]
        assert s.history("loss").global_avg() == 6.0


def test_put_scalar_rejects_multi_element_tensor_naming_it():
    with EventStorage() as s:
        with pytest.raises(ValueError, match=r"put_scalar\('loss_cls'\).*shape \(2,\)"):
            s.put_scalar("loss_cls", torch.ones(2))


def test_smoothing_hint_must_stay_the_same():
    with EventStorage() as s:
        s.put_scalar("lr", 0.1, smoothing_hint=False)
        with pytest.raises(ValueError, match="first put with smoothing_hint=False"):
            s.put_scalar("lr", 0.1, smoothing_hint=True)


def test_unknown_history_lists_known_names():
    with EventStorage() as s:
        s.put_scalar("loss", 1.0)
        with pytest.raises(KeyError, match="Known scalars: loss"):
            s.history("los")


def test_latest_with_smoothing_hint_uses_median_over_recent_iterations():
    with EventStorage() as s:
        for i, v in enumerate([100.0, 1.0, 2.0, 3.0]):
            s.iter = i
            s.put_scalar("loss", v)
            s.put_scalar("lr", v, smoothing_hint=False)
        s.put_scalar("rare", 7.0, cur_iter=0)  # put once, long ago
        s.put_scalar("rare", 9.0, cur_iter=3)
        out = s.latest_with_smoothing_hint(window=3)
        assert out["loss"] == (2.0, 3)  # median of the values at iterations 1..3
        assert out["lr"] == (3.0, 3)  # no smoothing
        assert out["rare"] == (9.0, 3)  # the value from iteration 0 is outside the window


def test_name_scope_prefixes_and_nests():
    with EventStorage() as s:
        with s.name_scope("rpn"):
            s.put_scalar("loss", 1.0)
            with s.name_scope("head/"):
                s.put_scalar("acc", 0.5)
        s.put_scalar("total", 2.0)
        assert set(s.histories()) == {"rpn/loss", "rpn/head/acc", "total"}


def test_put_image_and_histogram_are_queued_until_cleared():
    with EventStorage(start_iter=4) as s:
        s.put_image("vis", torch.rand(3, 8, 8))
        s.put_histogram("weights", torch.arange(10.0), bins=5)
        assert [(n, tuple(t.shape), it) for n, t, it in s.vis_data] == [("vis", (3, 8, 8), 4)]
        hist = s.histograms_data[0]
        assert hist["num"] == 10 and hist["min"] == 0.0 and hist["max"] == 9.0
        assert sum(hist["bucket_counts"]) == 10 and len(hist["bucket_limits"]) == 5
        s.clear_images()
        s.clear_histograms()
        assert s.vis_data == [] and s.histograms_data == []


def test_put_image_rejects_wrong_shape():
    with EventStorage() as s:
        with pytest.raises(ValueError, match=r"put_image\('vis'\).*C×H×W"):
            s.put_image("vis", torch.rand(8, 8))


def test_state_dict_round_trips_through_weights_only_load():
    with EventStorage(start_iter=0) as s:
        for i in range(30):
            s.iter = i
            s.put_scalar("loss", torch.tensor(float(i)))
            s.put_scalar("lr", 0.01 * i, smoothing_hint=False)
        buf = io.BytesIO()
        torch.save(s.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    with EventStorage() as r:
        r.load_state_dict(state)
        assert r.iter == 29
        assert r.history("loss").values() == s.history("loss").values()
        assert r.history("loss").global_avg() == pytest.approx(14.5)
        assert r.latest_with_smoothing_hint(20) == s.latest_with_smoothing_hint(20)
        with pytest.raises(ValueError, match="smoothing_hint"):
            r.put_scalar("lr", 1.0)  # hints survive too


def test_empty_history_statistics_are_nan():
    h = HistoryBuffer()
    assert math.isnan(h.global_avg()) and math.isnan(h.median(5))
    with pytest.raises(IndexError, match="empty"):
        h.latest()


def test_a_nan_in_the_window_shows_as_nan_not_a_misleading_median():
    h = HistoryBuffer()
    for i, v in enumerate([1.0, float("nan"), 3.0]):
        h.update(v, i)
    assert math.isnan(h.median(3))
    assert h.median(1) == 3.0


def test_median_of_a_window_with_opposite_infinities_is_not_mistaken_for_nan():
    # inf + -inf sums to NaN: the fast NaN check must fall back to looking at the values.
    h = HistoryBuffer()
    for i, v in enumerate([float("inf"), 1.0, float("-inf")]):
        h.update(v, i)
    assert h.median(3) == 1.0


def test_checkpointed_histories_are_capped_but_global_average_stays_exact():
    with EventStorage(state_history_length=5) as s:
        for i in range(100):
            s.iter = i
            s.put_scalar("loss", float(i))
        state = s.state_dict()
    with EventStorage() as r:
        r.load_state_dict(state)
        h = r.history("loss")
        assert [v for v, _ in h.values()] == [95.0, 96.0, 97.0, 98.0, 99.0]
        assert h.global_avg() == 49.5 and h.count() == 100


def test_latest_with_smoothing_hint_can_skip_what_was_written_already():
    s = EventStorage()
    for i in range(5):
        s.iter = i
        s.put_scalar("loss", float(i))
    s.put_scalar("val/AP", 50.0, smoothing_hint=False, cur_iter=2)
    everything = s.latest_with_smoothing_hint(3)
    assert set(everything) == {"loss", "val/AP"}
    newer = s.latest_with_smoothing_hint(3, newer_than={"val/AP": 2, "loss": 3})
    assert newer == {"loss": everything["loss"]}
    assert s.latest_with_smoothing_hint(3, newer_than={"val/AP": 1, "loss": 4}) == {"val/AP": (50.0, 2)}
