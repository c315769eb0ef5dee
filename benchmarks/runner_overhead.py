"""Runner overhead: kiln's training loop with default hooks vs a raw PyTorch loop, same work.

A tiny MLP on in-memory batches (so the framework's per-iteration cost is visible), SGD, a
warmup + multi-step schedule in kiln (the raw loop keeps a constant lr: scheduling is counted as
kiln overhead), kiln's default hooks (iteration timer, logger every 50 iterations writing the
console line and metrics.jsonl, param scheduler, checkpoint at the end).

Prints microseconds per iteration for both and the difference, measured in the same process,
interleaved over several rounds (the median round is reported).

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


def raw_loop(batches: list[dict]) -> float:
    """The baseline: what a hand-written loop does per iteration."""
    torch.manual_seed(0)
    model = TinyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    t0 = time.perf_counter()
    for batch in batches:
        losses = model(batch)
        total = sum(v for k, v in losses.items() if "loss" in k)
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / len(batches)


def kiln_loop(batches: list[dict], work_dir: str, with_final_checkpoint: bool = True) -> float:
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
        default_hooks=dict(
            logger=LoggerHook(interval=50),
            checkpoint=CheckpointHook(interval=-1, save_last=with_final_checkpoint),
        ),
    )
    t0 = time.perf_counter()
    runner.train()
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("kiln").setLevel(logging.WARNING)  # keep the console line's formatting cost, not I/O
    batches = make_batches(args.iters)
    raw_loop(batches[:200])  # warm up kernels and allocator
    with tempfile.TemporaryDirectory() as d:
        kiln_loop(batches[:200], d)
    raw, kiln, kiln_nockpt = [], [], []
    for r in range(args.rounds):
        raw.append(raw_loop(batches))
        with tempfile.TemporaryDirectory() as d:
            kiln.append(kiln_loop(batches, d))
        with tempfile.TemporaryDirectory() as d:
            kiln_nockpt.append(kiln_loop(batches, d, with_final_checkpoint=False))
        print(
            f"round {r}: raw {raw[-1] * 1e6:.1f} us/iter, kiln {kiln[-1] * 1e6:.1f} us/iter, "
            f"kiln without the final checkpoint {kiln_nockpt[-1] * 1e6:.1f} us/iter"
        )
    m_raw, m_kiln, m_nock = (statistics.median(x) * 1e6 for x in (raw, kiln, kiln_nockpt))
    print(f"\nmedian over {args.rounds} rounds of {args.iters} iterations (torch threads={args.threads}):")
    print(f"  raw PyTorch loop          : {m_raw:8.1f} us/iter")
    print(
        f"  kiln Runner, default hooks: {m_kiln:8.1f} us/iter   overhead {m_kiln - m_raw:+.1f} us/iter "
        f"(ratio {m_kiln / m_raw:.3f})"
    )
    print(f"  ... without final ckpt    : {m_nock:8.1f} us/iter   overhead {m_nock - m_raw:+.1f} us/iter")


if __name__ == "__main__":
    main()
