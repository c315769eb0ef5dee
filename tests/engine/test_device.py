"""Devices: one resolution rule, and every piece the runner owns follows the resolved device.

This machine may have no GPU: the rules are tested as a pure function (``cuda_count=``), placement
is tested on the ``meta`` device (a real non-CPU device torch has everywhere), and asking for CUDA
where there is none must fail clearly (Runner, config, ``kiln train``/``infer``). The GPU runs
themselves are in tests/gpu.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.cli.errors import CLIError  # noqa: E402
from kiln.cli.test import run_device  # noqa: E402
from kiln.config import Config  # noqa: E402
from kiln.data import build_train_loader  # noqa: E402
from kiln.engine import AmpOptimWrapper, EMAHook, Runner  # noqa: E402
from kiln.engine.device import (  # noqa: E402
    apply_env_cfg,
    batch_to_device,
    follow_device,
    make_batch_mover,
    pin_loader,
    prepare_model,
    resolve_device,
)
from kiln.structures import Boxes, Instances  # noqa: E402

NO_CUDA = not torch.cuda.is_available()
needs_no_cuda = pytest.mark.skipif(not NO_CUDA, reason="checks the error on a machine without CUDA")
QUIET = {"logger": None, "checkpoint": None}
META = torch.device("meta")


# ------------------------------------------------------------------------------------ the rules
@pytest.mark.parametrize("unset", [None, "", "auto", " auto "])
def test_nothing_requested_means_cpu_without_cuda_and_the_local_rank_gpu_with_it(unset):
    assert resolve_device(unset, 0, cuda_count=0) == torch.device("cpu")
    assert resolve_device(unset, 0, cuda_count=2) == torch.device("cuda", 0)
    assert resolve_device(unset, 1, cuda_count=2) == torch.device("cuda", 1)


def test_cuda_means_the_local_rank_gpu_and_an_explicit_index_wins():
    assert resolve_device("cuda", 1, cuda_count=4) == torch.device("cuda", 1)
    assert resolve_device("cuda:3", 1, cuda_count=4) == torch.device("cuda", 3)
    assert resolve_device(torch.device("cuda", 2), 0, cuda_count=4) == torch.device("cuda", 2)


def test_cpu_when_asked_even_with_gpus():
    assert resolve_device("cpu", 1, cuda_count=8) == torch.device("cpu")


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_a_gpu_is_an_error_naming_the_value_and_suggesting_cpu(asked):
    with pytest.raises(ValueError, match=r"device=.*cuda.*no.*--device cpu"):
        resolve_device(asked, 0, cuda_count=0)


def test_a_gpu_index_out_of_range_names_the_index_and_the_visible_count():
    with pytest.raises(ValueError, match=r"cuda:3.*only 2 CUDA device.*cuda:0\.\.cuda:1"):
        resolve_device("cuda:3", 0, cuda_count=2)
    with pytest.raises(ValueError, match=r"local rank 2.*only 2 CUDA device"):
        resolve_device("cuda", 2, cuda_count=2)
    with pytest.raises(ValueError, match=r"local rank 3 would train on cuda:3.*only 2"):
        resolve_device(None, 3, cuda_count=2)


@pytest.mark.parametrize("asked", ["gpu", "tpu:0", "meta", "cuda:x"])
def test_unknown_devices_are_refused_with_the_accepted_spellings(asked):
    with pytest.raises(ValueError, match=r"'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(asked, 0, cuda_count=1)


def test_the_error_names_where_the_value_came_from():
    with pytest.raises(ValueError, match=r"MODEL\.DEVICE='cuda'"):
        resolve_device("cuda", cuda_count=0, source="MODEL.DEVICE")


# ------------------------------------------------------------------------------------ the runner
def test_runner_reports_and_uses_the_cpu_it_was_given():
    model = ToyRegressor()
    runner = Runner(model, train_dataloader=toy_batches(2), max_iters=2, device="cpu", default_hooks=QUIET,
                    optim_wrapper=torch.optim.SGD(model.parameters(), 0.1))
    runner.train()
    assert runner.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.skipif(not NO_CUDA, reason="with CUDA the default is the GPU (tests/gpu)")
def test_runner_default_device_is_the_cpu_on_a_machine_without_cuda():
    assert Runner(ToyRegressor()).device == torch.device("cpu")


@needs_no_cuda
def test_runner_asked_for_cuda_without_one_fails_clearly_instead_of_training_on_cpu():
    with pytest.raises(ValueError, match=r"device='cuda'.*--device cpu"):
        Runner(ToyRegressor(), device="cuda")


@needs_no_cuda
def test_from_cfg_reads_device_from_the_config():
    with pytest.raises(ValueError, match=r"device='cuda:1'.*--device cpu"):
        Runner.from_cfg(_toy_cfg(device="cuda:1"))
    assert Runner.from_cfg(_toy_cfg(device="cpu")).device == torch.device("cpu")


def _toy_cfg(**extra):
    from kiln.registry import MODELS

    if "DeviceToyModel" not in MODELS:
        MODELS.register_module(name="DeviceToyModel")(ToyRegressor)
    # A model-only config: no loaders, so nothing but the model and its device is built.
    return Config(dict(model=dict(type="DeviceToyModel"), total_epochs=1, **extra))


def test_on_the_cpu_batches_reach_the_model_untouched():
    """No copy and no walk over the batch on the CPU: the hot loop pays nothing for devices."""
    seen = []

    class Spy(ToyRegressor):
        def forward(self, batch):
            seen.append(batch)
            return super().forward(batch)

    model = Spy()
    batches = toy_batches(2)
    Runner(model, train_dataloader=batches, optim_wrapper=torch.optim.SGD(model.parameters(), 0.1),
           max_iters=2, device="cpu", default_hooks=QUIET).train()
    assert [id(b) for b in seen] == [id(b) for b in batches]
    assert make_batch_mover(torch.device("cpu")) is None


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.inputs = []

    def forward(self, batch):
        x = batch["img"]
        self.inputs.append(x)
        out = self.bn(self.conv(x))
        if self.training:
            return {"loss": out.square().mean()}
        return [{"mean": m} for m in out.mean((1, 2, 3))]


def test_channels_last_puts_weights_and_image_batches_in_nhwc_order():
    model = _ConvNet()
    batches = [{"img": torch.randn(2, 3, 8, 8)} for _ in range(2)]
    runner = Runner(model, train_dataloader=batches, optim_wrapper=torch.optim.SGD(model.parameters(), 0.1),
                    max_iters=2, device="cpu", channels_last=True, default_hooks=QUIET)
    runner.train()
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert len(model.inputs) == 2
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in model.inputs)
    assert not batches[0]["img"].is_contiguous(memory_format=torch.channels_last)  # the loader's own stays


def test_sync_bn_with_an_unknown_implementation_is_refused():
    with pytest.raises(ValueError, match=r"sync_bn='mmcv'.*sync_bn='torch'"):
        Runner(_ConvNet(), sync_bn="mmcv")


def test_sync_bn_in_one_process_keeps_batch_norm_and_says_so(caplog):
    model = _ConvNet()
    with caplog.at_level(logging.INFO, logger="kiln.engine.device"):
        Runner(model, sync_bn="torch", device="cpu")
    assert type(model.bn) is nn.BatchNorm2d
    assert "single process" in caplog.text


def test_sync_bn_under_distributed_training_needs_cuda():
    with pytest.raises(ValueError, match=r"sync_bn='torch'.*needs CUDA"):
        prepare_model(_ConvNet(), torch.device("cpu"), sync_bn="torch", distributed=True)


# ------------------------------------------------------------------------------------ env_cfg
@pytest.fixture
def cudnn_flags():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def test_env_cfg_cudnn_benchmark_sets_the_torch_flag(cudnn_flags):
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = False
    Runner(ToyRegressor(), env_cfg=dict(cudnn_benchmark=True, mp_cfg=dict(opencv_num_threads=0),
                                         dist_cfg=dict(backend="nccl")))
    assert torch.backends.cudnn.benchmark is True
    apply_env_cfg(dict(cudnn_benchmark=False))
    assert torch.backends.cudnn.benchmark is False


def test_deterministic_runs_keep_cudnn_benchmark_off_with_a_warning(cudnn_flags, caplog):
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    with caplog.at_level(logging.WARNING, logger="kiln.engine.device"):
        apply_env_cfg(dict(cudnn_benchmark=True))
    assert torch.backends.cudnn.benchmark is False
    assert "deterministic" in caplog.text


@pytest.mark.parametrize(
    "env_cfg, named",
    [
        (dict(cudnn_benchmarks=True), "cudnn_benchmarks"),
        (dict(mp_cfg=dict(start_method="fork")), "start_method"),
        (dict(dist_cfg=dict(backend="nccl", timeout=60)), "timeout"),
    ],
)
def test_env_cfg_keys_kiln_cannot_honour_are_refused_by_name(env_cfg, named):
    with pytest.raises(KeyError, match=named):
        Runner(ToyRegressor(), env_cfg=env_cfg)


# ------------------------------------------------------------------------------------ placement
def test_prepare_model_moves_parameters_in_place_so_an_earlier_optimizer_still_steps_them():
    model = ToyRegressor()
    before = list(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = prepare_model(model, META)
    assert out is model
    assert all(p.device == META for p in model.parameters())
    assert all(b.device == META for b in model.buffers())
    assert [id(p) for p in model.parameters()] == [id(p) for p in before]
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in before]


def test_batches_move_with_their_structure_and_leave_non_tensors_alone():
    Point = collections.namedtuple("Point", "x y")
    inst = Instances((4, 4), gt_boxes=Boxes(torch.zeros(2, 4)), gt_classes=torch.tensor([1, 2]))
    meta_np = np.zeros(3)
    batch = [{"img": torch.zeros(3, 4, 4), "img_metas": {"scale": meta_np, "name": "a.jpg"},
              "pair": (torch.ones(1), 2), "pt": Point(torch.ones(1), 3), "instances": inst}]
    moved = batch_to_device(batch, META)
    s = moved[0]
    assert s["img"].device == META and s["pair"][0].device == META and s["pair"][1] == 2
    assert isinstance(s["pt"], Point) and s["pt"].x.device == META
    assert s["img_metas"]["scale"] is meta_np and s["img_metas"]["name"] == "a.jpg"
    assert s["instances"].gt_classes.device == META and s["instances"].gt_boxes.tensor.device == META
    assert batch[0]["img"].device.type == "cpu"  # the loader's batch is not modified


def test_an_amp_wrapper_built_before_placement_follows_the_device_and_keeps_its_scale():
    model = nn.Linear(2, 1)
    ow = AmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), dtype="bfloat16")
    assert ow.device_type == "cpu"
    follow_device(ow, META)
    assert ow.device_type == "meta"
    fp16 = AmpOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), dtype="float16",
                           loss_scale=dict(init_scale=1024.0))
    # An overflowing step halves the scale on the CPU ...
    loss = model(torch.ones(1, 2)).sum() * float("inf")
    fp16.update_params(loss)
    assert fp16.scaler.get_scale() == 512.0
    # ... and the scaler that replaces it on the new device starts from there.
    follow_device(fp16, META)
    assert fp16.device_type == "meta"
    assert fp16.scaler.state_dict()["scale"] == 512.0


def test_kiln_loaders_are_pinned_for_cuda_runs_only_and_foreign_loaders_keep_their_setting():
    loader = build_train_loader(list(range(8)), total_batch_size=2, seed=0)
    assert loader.pin_memory is False
    pin_loader(loader, torch.device("cpu"))
    assert loader.pin_memory is False
    pin_loader(loader, torch.device("cuda", 0))
    assert loader.pin_memory is True
    plain = torch.utils.data.DataLoader(list(range(4)))
    pin_loader(plain, torch.device("cuda", 0))
    assert plain.pin_memory is False


def test_ema_average_lives_on_the_model_device_also_when_restored_before_the_run():
    model = nn.Linear(3, 2).to(META)
    runner = SimpleNamespace(unwrapped_model=model)
    hook = EMAHook(momentum=0.5)
    # A resume before the run (DefaultTrainer.resume_or_load): the checkpoint was read to the CPU.
    hook.load_state_dict({"ema": {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}})
    hook.before_run(runner)
    state = hook.state_dict()["ema"]
    assert {t.device for t in state.values()} == {META}
    # Restored again while the average already lives on the device: it stays there.
    hook.load_state_dict({"ema": {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}})
    assert {t.device for t in hook.state_dict()["ema"].values()} == {META}


def test_ema_of_a_cpu_run_is_on_the_cpu_and_averages():
    model = ToyRegressor()
    ema = EMAHook(momentum=0.5)
    runner = Runner(model, train_dataloader=toy_batches(3), max_iters=3, device="cpu", default_hooks=QUIET,
                    optim_wrapper=torch.optim.SGD(model.parameters(), 0.1), custom_hooks=[ema])
    runner.train()
    avg = ema.state_dict()["ema"]["fc.weight"]
    assert avg.device.type == "cpu" and not torch.equal(avg, model.fc.weight.detach())


# ------------------------------------------------------------------------------------ the CLI
def test_test_and_infer_take_the_flag_over_the_config_over_the_default():
    cfg = Config(dict(device="cuda:7"))
    assert run_device("cpu", cfg) == torch.device("cpu")
    assert run_device(None, Config(dict(device="cpu"))) == torch.device("cpu")
    if NO_CUDA:
        with pytest.raises(CLIError, match=r"device='cuda:7'.*--device cpu"):
            run_device(None, cfg)
        with pytest.raises(CLIError, match=r"--device cuda asks for a CUDA GPU.*with --device cpu, or"):
            run_device("cuda", Config(dict(device="cpu")))
        assert run_device(None, Config({})) == torch.device("cpu")


TINY = ["data.train.num_images=4", "data.train.image_size=64", "data.val.num_images=2",
        "data.val.image_size=64", "data.test.num_images=2", "data.test.image_size=64",
        "data.samples_per_gpu=2", "data.workers_per_gpu=0", "total_epochs=1", "log_config.interval=1"]


def _kiln(*args, env):
    import os

    full = dict(os.environ, OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, env=full,
                          timeout=600)


@needs_no_cuda
def test_kiln_train_device_cuda_without_a_gpu_exits_with_the_fix_and_no_traceback(tmp_path):
    env = {"KILN_DATA": str(tmp_path / "data")}
    proc = _kiln("train", "kiln::shapes/retinanet_r18_fpn_shapes.py", "--work-dir", str(tmp_path / "w"),
                 "--device", "cuda", "--no-validate", "--cfg-options", *TINY, env=env)
    assert proc.returncode != 0
    assert "device='cuda'" in proc.stderr and "--device cpu" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "w").glob("*.pth"))  # nothing was trained on the CPU instead


def test_placing_a_model_that_was_already_trained_and_is_weakly_referenced_works():
    """The common CPU/CUDA move keeps parameters with plain ``.data`` assignment: weak references
    and a live autograd graph (which torch's swap mode refuses) are fine."""
    import weakref

    model = ToyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(toy_batches(1)[0])["loss_mse"].backward()
    opt.step()
    ref = weakref.ref(model.fc.weight)
    live = model(toy_batches(1)[0])["loss_mse"]  # a graph holding the parameters
    prepare_model(model, torch.device("cpu"), channels_last=True)
    assert ref() is model.fc.weight
    live.backward()  # the graph is still usable
    assert model.fc.weight.grad is not None


def test_detectron2_default_model_device_is_a_real_device_that_user_models_can_use():
    """Seed 002's GeneralizedRCNN does ``torch.device(cfg.MODEL.DEVICE)``: the default must parse,
    and be the GPU only where there is one."""
    from kiln.config import get_cfg

    dev = torch.device(get_cfg().MODEL.DEVICE)
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(get_cfg().MODEL.DEVICE, source="MODEL.DEVICE").type == dev.type
