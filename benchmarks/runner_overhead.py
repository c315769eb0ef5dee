"""Runner overhead: kiln's training loop with default hooks vs a raw PyTorch loop, same work.

A tiny MLP on in-memory batches (so the framework's per-iteration cost is visible), SGD, a
warmup + multi-step schedule in kiln (the raw loop keeps a constant lr, so scheduling counts as
kiln overhead), kiln's default hooks: iteration timer, logger every 50 iterations (console line
+ metrics.jsonl), param scheduler, checkpoint at the end.

Reported per iteration, median over interleaved rounds in one process:

* wall and CPU time of both loops and their difference (the end-to-end overhead, checkpoint
  included); on a busy machine these totals are noisy;
* the time spent *outside the optimization step* (hooks, loop, metric flush, writers, schedule,
  final checkpoint), measured by timing the step inside both loops: the framework overhead
  isolated from the noise of forward/backward.

    .venv/bin/python benchmarks/runner_overhead.py [--iters 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import torch
import torch.nn as nn

_clock = time.perf_counter
_cpu = time.process_time


class TinyModel(nn.Module):
    """Two linear layers; returns two loss terms, as detectors do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, batch: dict) -> dict:
        pred = self.net(batch["x"])
        return {"loss_mse": ((pred - batch["y"]) ** 2).mean(), "loss_l1": (pred - batch["y"]).abs().mean()}


def make_batches(n: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(8, 16, generator=g), "y": torch.randn(8, 1, generator=g)} for _ in range(n)]


class StepTimer:
    """Accumulates wall/CPU time spent inside the optimization step."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def wrap(self, step):  # noqa: ANN001, ANN201 - benchmark helper
        def timed(batch):  # noqa: ANN001, ANN202
            w, c = _clock(), _cpu()
            out = step(batch)
            self.cpu += _cpu() - c
            self.wall += _clock() - w
            return out

        return timed


def raw_loop(batches: list[dict]) -> tuple[float, float, float, float]:
    """The baseline: what a hand-written loop does per iteration. Returns (wall, cpu, outside wall/cpu)."""
    torch.manual_seed(0)
    model = TinyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    timer = StepTimer()

    def step(batch: dict) -> dict:
        losses = model(batch)
        total = sum(v for k, v in losses.items() if "loss" in k)
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return losses

    step = timer.wrap(step)
    w, c = _clock(), _cpu()
    for batch in batches:
        step(batch)
    wall, cpu = _clock() - w, _cpu() - c
    n = len(batches)
    return wall / n, cpu / n, (wall - timer.wall) / n, (cpu - timer.cpu) / n


def kiln_loop(batches: list[dict], work_dir: str) -> tuple[float, float, float, float]:
    """The same steps through ``Runner.train()`` with kiln's default hooks."""
    from kiln.engine import Runner
    from kiln.engine.hooks import CheckpointHook, LoggerHook

    torch.manual_seed(0)
    model = TinyModel()
    n = len(batches)
    runner = Runner(
        model,
        work_dir=work_dir,
        train_dataloader=batches,
        max_iters=n,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=100),
            dict(type="MultiStepLR", by_epoch=False, milestones=[n // 2, 3 * n // 4]),
        ],
        default_hooks=dict(logger=LoggerHook(interval=50), checkpoint=CheckpointHook(interval=-1)),
    )
    timer = StepTimer()
    make = runner.make_train_step
    runner.make_train_step = lambda: timer.wrap(make())  # time the step the loop runs
    w, c = _clock(), _cpu()
    runner.train()
    wall, cpu = _clock() - w, _cpu() - c
    return wall / n, cpu / n, (wall - timer.wall) / n, (cpu - timer.cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("kiln").setLevel(logging.WARNING)  # keep the console line's formatting, not the I/O
    batches = make_batches(args.iters)
    raw_loop(batches[:200])  # warm up kernels, allocator and imports
    with tempfile.TemporaryDirectory() as d:
        kiln_loop(batches[:200], d)
    raw, kiln = [], []
    for r in range(args.rounds):
        raw.append(raw_loop(batches))
        with tempfile.TemporaryDirectory() as d:
            kiln.append(kiln_loop(batches, d))
        print(
            f"round {r}: wall raw {raw[-1][0] * 1e6:.1f} / kiln {kiln[-1][0] * 1e6:.1f} us/iter;  "
            f"outside the step: raw {raw[-1][2] * 1e6:.2f} / kiln {kiln[-1][2] * 1e6:.2f} us/iter (wall), "
            f"raw {raw[-1][3] * 1e6:.2f} / kiln {kiln[-1][3] * 1e6:.2f} us/iter (cpu)"
        )

    def med(rows: list, i: int) -> float:
        return statistics.median(x[i] for x in rows) * 1e6

    print(f"\nmedian of {args.rounds} rounds x {args.iters} iterations "
          f"(torch threads={args.threads}), us/iter:")
    print(f"  {'':34s} {'raw':>9s} {'kiln':>9s} {'kiln-raw':>9s}")
    for label, i in (("total, wall", 0), ("total, cpu", 1), ("outside the step, wall", 2),
                     ("outside the step, cpu", 3)):
        a, b = med(raw, i), med(kiln, i)
        print(f"  {label:34s} {a:9.2f} {b:9.2f} {b - a:+9.2f}")


if __name__ == "__main__":
    main()
