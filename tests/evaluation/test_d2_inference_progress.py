"""inference_on_dataset logs Detectron2's progress lines: images done / total, time per stage, ETA."""

import logging
import re

import torch

from kiln.evaluation import DatasetEvaluator, inference_on_dataset


class Counter(DatasetEvaluator):
    def reset(self):
        self.n = 0

    def process(self, inputs, outputs):
        self.n += len(inputs)

    def evaluate(self):
        return {"n": float(self.n)}


def model(batch):
    return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)} for _ in batch]


LINE = re.compile(r"Inference done (\d+)/(\d+)\. Dataloading: [\d.]+ s/iter\. Inference: [\d.]+ s/iter\. "
                  r"Eval: [\d.]+ s/iter\. Total: [\d.]+ s/iter\. ETA=(\d+:\d\d:\d\d)")


def progress_lines(caplog):
    return [LINE.search(r.getMessage()) for r in caplog.records if LINE.search(r.getMessage())]


def test_progress_after_twice_the_warmup_with_eta(caplog):
    loader = [[{"image_id": i}] for i in range(6)]
    with caplog.at_level(logging.INFO, logger="kiln.evaluation.inference"):
        res = inference_on_dataset(model, loader, Counter(), num_warmup=2, progress=False, log_every_s=0)
    assert res == {"n": 6.0}
    assert any("Start inference on 6 batches" in r.getMessage() for r in caplog.records)
    lines = progress_lines(caplog)
    assert [int(m.group(1)) for m in lines] == [4, 5, 6]  # from twice the 2 warm-up batches on
    assert all(m.group(2) == "6" for m in lines)
    assert lines[-1].group(3) == "0:00:00"


def test_progress_lines_are_rate_limited_and_can_be_turned_off(caplog):
    loader = [[{"image_id": i}] for i in range(5)]
    with caplog.at_level(logging.INFO, logger="kiln.evaluation.inference"):
        inference_on_dataset(model, loader, Counter(), num_warmup=0, progress=False, log_every_s=3600)
        assert progress_lines(caplog) == []  # the run is shorter than the interval
        inference_on_dataset(model, loader, Counter(), num_warmup=0, progress=False, log_every_s=None)
        assert progress_lines(caplog) == []
        inference_on_dataset(model, loader, Counter(), num_warmup=0, progress=False, log_every_s=0)
        assert len(progress_lines(caplog)) == 5
