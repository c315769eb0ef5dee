"""The workloads of the GPU suite, written for any device (a helper module, not a test file).

tests/gpu/test_*_cuda.py run them on CUDA and check what only a GPU shows; tests/gpu/test_workloads_cpu.py
runs the same code on the CPU, so a typo here fails on every machine, not first on a lent GPU.

Also a script, for the runs that need a fresh process (deterministic cuBLAS must be configured
before CUDA starts)::

    python tests/gpu/gpu_workloads.py resume WORK_DIR full|stop|resume DEVICE
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from kiln.data import build_train_loader  # noqa: E402
from kiln.engine import Runner  # noqa: E402
from kiln.engine.hooks import CheckpointHook  # noqa: E402

QUIET = {"logger": None, "checkpoint": None}


class ConvToy(nn.Module):
    """A small classifier on 3×16×16 images with batch norm and dropout (CUDA RNG on a GPU).

    Records the device of the batch as it was given and the dtype of its first activation
    (autocast shows there) in ``last_input``. Like Detectron2's models it moves its inputs to its
    own device (its D2 trainers do not move batches), after recording where they came from.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16, 3)
        self.last_input: tuple[torch.device, torch.dtype] | None = None

    def forward(self, batch: list[dict]) -> Any:
        x = torch.stack([s["img"] for s in batch])
        received = x.device
        h = self.conv(x.to(self.conv.weight.device, non_blocking=True))
        self.last_input = (received, h.dtype)
        h = F.relu(self.bn(h))
        logits = self.fc(self.drop(h.mean((2, 3))))
        if self.training:
            y = torch.stack([s["label"] for s in batch]).view(-1).to(logits.device)
            acc = (logits.argmax(1) == y).float().mean()
            return {"loss_cls": F.cross_entropy(logits.float(), y), "acc": acc}
        return [{"scores": s} for s in logits.softmax(1)]


def _sample(d: dict) -> dict:
    # Augmentation from the per-sample seeded RNGs of kiln's loader (exact resume covers them).
    g = np.random.RandomState(d["seed"])
    img = torch.from_numpy(g.rand(3, 16, 16).astype(np.float32)) + float(np.random.uniform(0, 0.1))
    img[d["label"]] += 0.5  # learnable: the class is the brightest channel
    return {"img": img, "label": torch.tensor([d["label"]])}


def toy_loader(n: int = 32, batch: int = 4, seed: int = 0, workers: int = 0, infinite: bool = True) -> Any:
    """kiln's resumable loader over ``n`` generated samples."""
    dicts = [{"seed": i, "label": i % 3} for i in range(n)]
    return build_train_loader(dicts, mapper=_sample, total_batch_size=batch, num_workers=workers, seed=seed,
                              infinite=infinite)


def optim_cfg(amp: str | None = None, loss_scale: Any = "dynamic") -> dict:
    """An ``optim_wrapper`` config: SGD, optionally ``AmpOptimWrapper`` with ``amp`` as dtype."""
    cfg: dict[str, Any] = dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9))
    if amp:
        cfg.update(type="AmpOptimWrapper", dtype=amp)
        if amp == "float16":
            cfg["loss_scale"] = loss_scale
    return cfg


def train_toy(device: str | None, iters: int = 8, amp: str | None = None, hooks: list | None = None,
              work_dir: str | None = None, **runner_kw: Any) -> Runner:
    """Train :class:`ConvToy` for ``iters`` iterations on ``device``; returns the runner.

    The optim wrapper is built on the CPU model before the runner places it, as ``Runner.from_cfg``
    does, so the test sees the wrapper follow the device.
    """
    from kiln.engine import build_optim_wrapper

    torch.manual_seed(0)
    model = ConvToy()
    ow = build_optim_wrapper(model, optim_cfg(amp))
    default_hooks = dict(QUIET)
    default_hooks.update(runner_kw.pop("default_hooks", {}))
    runner = Runner(model, work_dir=work_dir, train_dataloader=toy_loader(), optim_wrapper=ow,
                    max_iters=iters, device=device, default_hooks=default_hooks, custom_hooks=hooks or [],
                    **runner_kw)
    runner.train()
    return runner


def tensor_devices(obj: Any) -> set[str]:
    """Device types of every tensor in a nested structure (optimizer state, hook state, ...)."""
    if isinstance(obj, torch.Tensor):
        return {obj.device.type}
    if isinstance(obj, dict):
        return set().union(*(tensor_devices(v) for v in obj.values())) if obj else set()
    if isinstance(obj, (list, tuple)):
        return set().union(*(tensor_devices(v) for v in obj)) if obj else set()
    return set()


# ------------------------------------------------------------------------------------ DDP
def free_port() -> int:
    """A free TCP port on this machine for the rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, url: str, out_dir: str, backend: str) -> None:
    """One DDP rank: join the group, train the toy on this rank's device, report placement and sync."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world))
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=url, rank=rank, world_size=world)
    try:
        device = None if backend == "nccl" else "cpu"
        sync_bn = "torch" if backend == "nccl" else None
        runner = train_toy(device, iters=6, sync_bn=sync_bn)
        params = runner.unwrapped_model.parameters()
        flat = torch.cat([p.detach().reshape(-1) for p in params]).to(runner.device)
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        result = dict(
            rank=rank,
            world=world,
            backend=dist.get_backend(),
            device=str(runner.device),
            param_devices=sorted({str(p.device) for p in runner.unwrapped_model.parameters()}),
            wrapped=type(runner.model).__name__,
            sync_bn=any(isinstance(m, nn.SyncBatchNorm) for m in runner.unwrapped_model.modules()),
            max_rank_diff=max(float((g - flat).abs().max()) for g in gathered),
            iters=runner.iter,
        )
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def run_ddp(world: int, backend: str, out_dir: str) -> list[dict]:
    """Spawn ``world`` ranks with ``backend`` (1 rank still makes a real process group); their reports."""
    import torch.multiprocessing as mp

    url = f"tcp://127.0.0.1:{free_port()}"
    mp.start_processes(ddp_worker, args=(world, url, out_dir, backend), nprocs=world, start_method="spawn")
    reports = []
    for r in range(world):
        with open(os.path.join(out_dir, f"rank{r}.json")) as f:
            reports.append(json.load(f))
    return reports


# ------------------------------------------------------------------------------------ exact resume
RESUME_ITERS, STOP_AT = 8, 4


def resume_run(work_dir: str, mode: str, device: str) -> None:
    """``full``: 8 iterations; ``stop``: stop after 4 (checkpointed); ``resume``: continue to 8.

    Deterministic algorithms on (the caller sets ``CUBLAS_WORKSPACE_CONFIG`` before CUDA starts);
    writes WORK_DIR/final_state.pt (model and optimizer, on the CPU) at the end of a run to 8.
    """
    from kiln.utils import set_random_seed

    set_random_seed(7, deterministic=True)
    torch.use_deterministic_algorithms(True)  # strict (set_random_seed only warns)
    model = ConvToy()
    runner = Runner(
        model, work_dir=work_dir, train_dataloader=toy_loader(workers=2), max_iters=RESUME_ITERS, seed=7,
        device=device, resume=mode == "resume", optim_wrapper=optim_cfg(),
        param_scheduler=[dict(type="LinearLR", start_factor=0.2, by_epoch=False, end=3)],
        default_hooks=dict(logger=None,
                           checkpoint=CheckpointHook(interval=1, by_epoch=False, max_keep_ckpts=2)),
    )
    if mode == "stop":
        def stop(r: Runner, *args: Any) -> None:
            if r.iter + 1 >= STOP_AT:
                r.stop_training = True

        runner.register_callback(stop, "after_train_iter")
    runner.train()
    if runner.iter == RESUME_ITERS:
        state = {"model": runner.unwrapped_model.state_dict(), "optimizer": runner.optim_wrapper.state_dict(),
                 "device": str(runner.device)}
        torch.save(_to_cpu(state), os.path.join(work_dir, "final_state.pt"))


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def run_resume_script(work_dir: str, mode: str, device: str, timeout: int = 300) -> Any:
    """Run :func:`resume_run` in a fresh interpreter with deterministic cuBLAS configured."""
    import subprocess

    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8", PYTHONPATH=REPO + os.pathsep + os.environ.get(
        "PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.abspath(__file__), "resume", work_dir, mode, device],
                          capture_output=True, text=True, env=env, timeout=timeout)


def states_equal(a: Any, b: Any) -> bool:
    """Bit-for-bit equality of two nested states (tensors compared with ``torch.equal``)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b


# ------------------------------------------------------------------------------------ shapes demo
SHAPES_CFG = "kiln::shapes/retinanet_r18_fpn_shapes.py"


def shapes_options(train_images: int = 160, eval_images: int = 16, epochs: int = 2,
                   workers: int = 4) -> list[str]:
    """``--cfg-options`` for a short run of the demo config (a few dozen iterations at batch 8)."""
    return [f"data.train.num_images={train_images}", f"data.val.num_images={eval_images}",
            f"data.test.num_images={eval_images}", f"data.workers_per_gpu={workers}",
            f"total_epochs={epochs}", "lr_config.warmup_iters=10", "log_config.interval=5",
            "checkpoint_config.max_keep_ckpts=1"]


def kiln_cmd(*args: str, env: dict | None = None, timeout: int = 600) -> Any:
    """Run ``python -m kiln ARGS`` in a subprocess (text output captured)."""
    import subprocess

    full = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    return subprocess.run([sys.executable, "-m", "kiln", *args], capture_output=True, text=True, env=full,
                          timeout=timeout, cwd=REPO)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "resume":
        raise SystemExit(__doc__)
    resume_run(sys.argv[2], sys.argv[3], sys.argv[4])
