"""Cost of EventStorage.put_scalar and of atomic checkpoint saves, against baselines in the same run.

    .venv/bin/python benchmarks/events_checkpoint.py [--calls 200000] [--mb 100] [--repeat 5]

put_scalar is compared with the cheapest possible store (appending a float to a list in a dict) and
with an eager baseline implementing Detectron2's algorithm (every value converted with float() at put
time). Checkpoint saving is
compared with a plain ``torch.save`` to the final path (not crash-safe); loading through the
Checkpointer with a plain ``torch.load(weights_only=True)`` + ``load_state_dict``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import timeit

import torch
from torch import nn

from kiln.engine.checkpoint import Checkpointer, atomic_torch_save
from kiln.engine.events import EventStorage


def _per_call_us(fn, calls: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=calls, repeat=repeat)) / calls * 1e6


class _EagerStorage:
    """The Detectron2 algorithm as a baseline: convert with float() at put time, append to a history
    (value, iteration) list with a running sum, keep a latest-value dict, check the smoothing hint."""

    def __init__(self) -> None:
        self.prefix, self.iter = "", 0
        self.hist: dict[str, list] = {}
        self.latest: dict[str, tuple] = {}
        self.hints: dict[str, bool] = {}

    def put_scalar(self, name: str, value, smoothing_hint: bool = True, cur_iter=None) -> None:
        name = self.prefix + name
        cur_iter = self.iter if cur_iter is None else cur_iter
        value = float(value)
        h = self.hist.get(name)
        if h is None:
            h = self.hist[name] = [[], 0.0, 0]
        h[0].append((value, cur_iter))
        h[1] += value
        h[2] += 1
        self.latest[name] = (value, cur_iter)
        known = self.hints.get(name)
        if known is None:
            self.hints[name] = smoothing_hint
        elif known != smoothing_hint:
            raise ValueError(name)


def bench_put_scalar(calls: int, repeat: int) -> None:
    cpu_t = torch.tensor(0.25)
    floor: dict[str, list] = {}
    eager = _EagerStorage()

    def baseline_append():
        floor.setdefault("loss", []).append(0.25)

    with EventStorage() as s:
        rows = [
            ("dict append of a float (floor)", _per_call_us(baseline_append, calls, repeat)),
            ("eager baseline put_scalar(float)",
             _per_call_us(lambda: eager.put_scalar("a", 0.25), calls, repeat)),
            ("kiln put_scalar(float)", _per_call_us(lambda: s.put_scalar("a", 0.25), calls, repeat)),
            ("eager baseline put_scalar(cpu tensor)",
             _per_call_us(lambda: eager.put_scalar("b", cpu_t), calls, repeat)),
            ("kiln put_scalar(cpu tensor)", _per_call_us(lambda: s.put_scalar("b", cpu_t), calls, repeat)),
        ]
        s.iter = 10**6
        rows.append(("latest_with_smoothing_hint(20), 2 scalars",
                     _per_call_us(lambda: s.latest_with_smoothing_hint(20), max(calls // 100, 10), repeat)))
    floor_us = rows[0][1]
    print(f"{'put_scalar':<45} {'us/call':>9} {'x floor':>8}")
    for name, us in rows:
        print(f"{name:<45} {us:9.3f} {us / floor_us:8.2f}")


def bench_checkpoint(mb: int, repeat: int) -> None:
    n = mb * 1024 * 1024 // 4 // 4
    model = nn.ParameterList([nn.Parameter(torch.randn(n)) for _ in range(4)])
    with tempfile.TemporaryDirectory(dir=os.environ.get("KILN_BENCH_DIR")) as d:
        ckpt = Checkpointer(model, d, save_to_disk=True)
        plain, atomic, full = [], [], []
        load_plain, load_ckpt = [], []
        for i in range(repeat):  # interleaved so load changes hit all variants alike
            t0 = time.perf_counter()
            torch.save({"model": model.state_dict()}, os.path.join(d, f"plain{i}.pth"))
            t1 = time.perf_counter()
            atomic_torch_save({"model": model.state_dict()}, os.path.join(d, f"atomic{i}.pth"))
            t2 = time.perf_counter()
            path = ckpt.save(f"ckpt{i}")
            t3 = time.perf_counter()
            model.load_state_dict(torch.load(os.path.join(d, f"plain{i}.pth"), weights_only=True)["model"])
            t4 = time.perf_counter()
            ckpt.load(path)
            t5 = time.perf_counter()
            plain.append(t1 - t0)
            atomic.append(t2 - t1)
            full.append(t3 - t2)
            load_plain.append(t4 - t3)
            load_ckpt.append(t5 - t4)
            for name in os.listdir(d):
                if name.endswith(".pth"):
                    os.remove(os.path.join(d, name))
    base = statistics.median(plain)
    lbase = statistics.median(load_plain)
    title = f"checkpoint of {mb} MB (median of {repeat})"
    print(f"\n{title:<45} {'ms':>9} {'x base':>8}")
    for name, vals, b in [
        ("torch.save to final path (baseline)", plain, base),
        ("atomic_torch_save (tmp + fsync + rename)", atomic, base),
        ("Checkpointer.save (+ checks + pointer)", full, base),
        ("torch.load(weights_only) + load_state_dict", load_plain, lbase),
        ("Checkpointer.load", load_ckpt, lbase),
    ]:
        m = statistics.median(vals)
        print(f"{name:<45} {m * 1e3:9.1f} {m / b:8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200_000)
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    bench_put_scalar(a.calls, a.repeat)
    bench_checkpoint(a.mb, a.repeat)


if __name__ == "__main__":
    main()
