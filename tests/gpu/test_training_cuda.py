"""Single-GPU training: the run is on the GPU, and so is everything it owns (no silent CPU run)."""

from __future__ import annotations

import logging

import pytest
import torch
from gpu_workloads import ConvToy, tensor_devices, toy_loader, train_toy

from kiln.config import Config
from kiln.engine import EMAHook, Runner
from kiln.registry import MODELS

pytestmark = pytest.mark.cuda


def test_the_default_device_is_the_gpu_and_model_optimizer_ema_batches_stay_there():
    ema = EMAHook(momentum=0.1)
    runner = train_toy(None, hooks=[ema])
    assert runner.device == torch.device("cuda", 0)
    model = runner.unwrapped_model
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {b.device.type for b in model.buffers()} == {"cuda"}
    # The optimizer, built on the CPU model before placement, steps the very parameters that moved.
    opt_params = [p for g in runner.optim_wrapper.optimizer.param_groups for p in g["params"]]
    assert [id(p) for p in opt_params] == [id(p) for p in model.parameters()]
    assert tensor_devices(runner.optim_wrapper.optimizer.state_dict()["state"]) == {"cuda"}
    assert tensor_devices(ema.state_dict()) == {"cuda"}
    assert model.last_input[0].type == "cuda"  # the batch went to the GPU before the model
    assert runner.train_dataloader.pin_memory is True  # host batches in pinned memory
    assert torch.cuda.max_memory_allocated() > 0


def test_device_from_a_config_reaches_the_runner():
    if "GpuToy" not in MODELS:
        MODELS.register_module(name="GpuToy")(ConvToy)
    n = torch.cuda.device_count()
    runner = Runner.from_cfg(Config(dict(model=dict(type="GpuToy"), total_epochs=1, device=f"cuda:{n - 1}")))
    assert runner.device == torch.device("cuda", n - 1)
    assert {p.device for p in runner.unwrapped_model.parameters()} == {torch.device("cuda", n - 1)}
    with pytest.raises(ValueError, match=rf"cuda:{n}.*only {n} CUDA device"):
        Runner(ConvToy(), device=f"cuda:{n}")


def test_evaluation_runs_on_the_gpu():
    runner = Runner(ConvToy(), val_dataloader=toy_loader(8, infinite=False), val_evaluator=_MeanScore(),
                    default_hooks={"logger": None})
    metrics = runner.val()
    assert runner.unwrapped_model.last_input[0].type == "cuda"
    assert 0.0 < metrics["mean_top"] <= 1.0


class _MeanScore:
    def reset(self):
        self.tops = []

    def process(self, inputs, outputs):
        assert all(o["scores"].is_cuda for o in outputs)
        self.tops += [float(o["scores"].max()) for o in outputs]

    def evaluate(self):
        return {"mean_top": sum(self.tops) / len(self.tops)}


def test_the_console_line_reports_peak_cuda_memory(caplog):
    with caplog.at_level(logging.INFO):
        train_toy(None, iters=4, default_hooks={"logger": dict(type="LoggerHook", interval=2)})
    lines = [r.getMessage() for r in caplog.records if "iter:" in r.getMessage()]
    assert lines and all("max_mem:" in line for line in lines)


def test_channels_last_runs_on_the_gpu():
    runner = train_toy(None, iters=4, channels_last=True)
    conv = runner.unwrapped_model.conv
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_env_cfg_turns_cudnn_benchmark_on():
    saved = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        train_toy(None, iters=2, env_cfg=dict(cudnn_benchmark=True))
        assert torch.backends.cudnn.benchmark is True
    finally:
        torch.backends.cudnn.benchmark = saved
