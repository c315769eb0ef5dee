"""inference_on_dataset: eval mode + no_grad around the model, every batch to the evaluator, timing."""

from __future__ import annotations

import pytest
import torch
from evaluation_data import make_gt, make_predictions

from kiln.evaluation import COCOEvaluator, DatasetEvaluator, inference_on_dataset


class LookupModel(torch.nn.Module):
    """Returns fixed predictions per image id and records the mode/grad state it ran in."""

    def __init__(self, preds):
        super().__init__()
        self.preds = preds
        self.layer = torch.nn.Linear(1, 1)
        self.calls = []

    def forward(self, batch):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return [self.preds[s["image_id"]] for s in batch]


class Recorder(DatasetEvaluator):
    def reset(self):
        self.seen = []
        self.resets = getattr(self, "resets", 0) + 1

    def process(self, inputs, outputs):
        self.seen.extend(s["image_id"] for s in inputs)

    def evaluate(self):
        return {"count": float(len(self.seen))}


def loader_of(ids, batch_size=2):
    return [[{"image_id": i} for i in ids[k:k + batch_size]] for k in range(0, len(ids), batch_size)]


def test_metrics_equal_feeding_the_evaluator_by_hand(gt_file):
    preds = make_predictions(make_gt())
    ids = sorted(preds)
    by_hand = COCOEvaluator(gt_file)
    by_hand.process([{"image_id": i} for i in ids], [preds[i] for i in ids])
    results = inference_on_dataset(LookupModel(preds), loader_of(ids), COCOEvaluator(gt_file), progress=False)
    assert results == by_hand.evaluate()


def test_model_runs_in_eval_mode_without_grad_and_gets_its_mode_back():
    preds = make_predictions(make_gt())
    model = LookupModel(preds).train()
    inference_on_dataset(model, loader_of(sorted(preds)), Recorder(), progress=False)
    assert model.calls and all(call == (False, False) for call in model.calls)
    assert model.training


def test_evaluator_is_reset_and_sees_every_image_once():
    preds = make_predictions(make_gt())
    rec = Recorder()
    rec.reset()
    rec.seen.append("stale")
    out = inference_on_dataset(LookupModel(preds), loader_of(sorted(preds)), rec, progress=False)
    assert rec.seen == sorted(preds) and out == {"count": 6.0}


def test_warm_up_batches_are_excluded_from_the_timing():
    preds = make_predictions(make_gt())
    inference_on_dataset(LookupModel(preds), loader_of(sorted(preds), 1), Recorder(), num_warmup=2,
                         progress=False)
    timing = inference_on_dataset.last_timing
    assert timing["images"] == 6 and timing["num_warmup_batches"] == 2
    assert timing["time_per_image"] > 0 and timing["model_time_per_image"] > 0


def test_a_list_of_evaluators_and_none_are_accepted():
    preds = make_predictions(make_gt())
    loader = loader_of(sorted(preds))
    assert inference_on_dataset(LookupModel(preds), loader, None, progress=False) == {}
    a, b = Recorder(), Recorder()
    b.evaluate = lambda: {"other": 1.0}
    results = inference_on_dataset(LookupModel(preds), loader, [a, b], progress=False)
    assert results == {"count": 6.0, "other": 1.0}


def test_progress_bar_runs_over_an_unsized_loader(capsys):
    preds = make_predictions(make_gt())
    gen = (batch for batch in loader_of(sorted(preds)))
    assert inference_on_dataset(LookupModel(preds), gen, Recorder(), progress=True) == {"count": 6.0}


def test_wrong_evaluator_type_is_a_clear_error():
    with pytest.raises(TypeError, match="DatasetEvaluator"):
        inference_on_dataset(LookupModel({}), [], "bbox", progress=False)
