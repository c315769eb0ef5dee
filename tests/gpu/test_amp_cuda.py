"""Mixed precision on the GPU: float16 with a CUDA GradScaler, and bfloat16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from gpu_workloads import ConvToy, toy_loader, train_toy

from kiln.engine import AmpOptimWrapper, AMPTrainer

pytestmark = pytest.mark.cuda


def test_fp16_trains_under_autocast_with_a_cuda_grad_scaler():
    runner = train_toy(None, iters=6, amp="float16")
    ow = runner.optim_wrapper
    # Built on the CPU model (as from_cfg does), the wrapper followed the run to the GPU.
    assert ow.device_type == "cuda" and ow.scaler is not None
    assert runner.unwrapped_model.last_input[1] == torch.float16
    assert all(p.dtype == torch.float32 and p.is_cuda for p in runner.unwrapped_model.parameters())
    scales = [v for v, _ in runner.storage.history("grad_scale").values()]
    assert len(scales) == 6 and all(v > 0 for v in scales)
    losses = [v for v, _ in runner.storage.history("loss").values()]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))


def test_fp16_overflow_skips_the_step_and_backs_off_the_scale_on_cuda():
    model = nn.Linear(4, 1).cuda()
    ow = AmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), dtype="float16",
                         loss_scale=dict(init_scale=1024.0))
    before = [p.detach().clone() for p in model.parameters()]
    with ow.autocast():
        loss = model(torch.ones(2, 4, device="cuda")).sum() * float("inf")
    ow.update_params(loss)
    assert ow.scaler.get_scale() == 512.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bf16_autocast_trains_without_a_scaler():
    runner = train_toy(None, iters=6, amp="bfloat16")
    assert runner.optim_wrapper.scaler is None
    assert runner.unwrapped_model.last_input[1] == torch.bfloat16
    losses = [v for v, _ in runner.storage.history("loss").values()]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))


def test_detectron2_amp_trainer_scales_on_cuda():
    model = ConvToy().cuda()
    trainer = AMPTrainer(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0.05))
    trainer.train(0, 4)
    assert trainer.device_type == "cuda"
    assert trainer.runner.device == torch.device("cuda", 0)
    # Detectron2's trainers leave the batch to the model (it arrives from the CPU loader).
    assert model.last_input == (torch.device("cpu"), torch.float16)
    assert all(p.is_cuda for p in model.parameters())
    assert trainer.grad_scaler.get_scale() > 0
