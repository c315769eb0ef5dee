"""Where kiln's runner overhead goes: the runner_overhead.py kiln loop with one default part removed.

Each variant runs the same steps as ``runner_overhead.py``'s kiln loop with one part taken out, in
interleaved rounds with the raw loop; the drop from ``full`` is that part's cost in context (cache
effects included, which timing a part on its own misses). Variants:

* ``full``: the defaults (timer, logger every 50, lr schedule, final checkpoint);
* ``noflush``: the metric flush replaced by clearing the buffer (no metric processing; the writers
  still run but find nothing new);
* ``nolog``: the logger never writes (the loop flushes every 512 iterations to bound its buffer);
* ``nockpt``: no final checkpoint;
* ``nosched``: no lr schedule;
* ``notimer``: no IterTimerHook (timings are taken by the loop anyway, not logged).

    .venv/bin/python benchmarks/runner_overhead_parts.py [--rounds 9] [--iters 3000]
        [--variants full,noflush,nolog,nockpt,nosched,notimer]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner_overhead as ro  # noqa: E402

VARIANTS = {
    "full": {},
    "noflush": dict(flush=False),
    "nolog": dict(log_interval=10**9),
    "nockpt": dict(ckpt=False),
    "nosched": dict(sched=False),
    "notimer": dict(timer=False),
}


def kiln_variant(
    batches: torch.utils.data.DataLoader,
    work_dir: str,
    timer: bool = True,
    flush: bool = True,
    log_interval: int = 50,
    ckpt: bool = True,
    sched: bool = True,
) -> float:
    """Outside-step CPU seconds per iteration of the kiln loop with the given parts."""
    from kiln.engine import Runner
    from kiln.engine.hooks import CheckpointHook, LoggerHook

    torch.manual_seed(0)
    model = ro.TinyModel()
    n = len(batches)
    hooks: dict = dict(
        logger=LoggerHook(interval=log_interval), checkpoint=CheckpointHook(interval=-1, save_last=ckpt)
    )
    if not timer:
        hooks["timer"] = None
    schedule = [
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=100),
        dict(type="MultiStepLR", by_epoch=False, milestones=[n // 2, 3 * n // 4]),
    ]
    runner = Runner(
        model,
        work_dir=work_dir,
        train_dataloader=batches,
        max_iters=n,
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        param_scheduler=schedule if sched else None,
        default_hooks=hooks,
    )
    if not flush:
        runner.flush_metrics = runner.state.records.clear
    step_timer = ro.StepTimer()
    make = runner.make_train_step
    runner.make_train_step = lambda: step_timer.wrap(make())
    marks: dict = {}
    runner.register_callback(lambda r: marks.update(c=ro._cpu()), "before_train", priority=0)
    runner.register_callback(lambda r: marks.update(c1=ro._cpu()), "after_train", priority=100)
    runner.train()
    return (marks["c1"] - marks["c"] - step_timer.cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS)
    )
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    torch.set_num_threads(1)
    logging.getLogger("kiln").setLevel(logging.WARNING)
    batches = ro.make_batches(args.iters)
    results: dict[str, list[float]] = {k: [] for k in ["raw", *names]}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name in results:
            with tempfile.TemporaryDirectory() as d:
                x = ro.raw_loop(batches)[3] if name == "raw" else kiln_variant(batches, d, **VARIANTS[name])
            if r:
                results[name].append(x * 1e6)
    base_min, base_med = min(results["raw"]), statistics.median(results["raw"])
    print(f"outside-step CPU us/iter over {args.rounds} rounds x {args.iters} iterations ('+': minus raw)")
    for name, xs in results.items():
        lo, med = min(xs), statistics.median(xs)
        fast, mid = f"{lo:6.1f} ({lo - base_min:+5.1f})", f"{med:6.1f} ({med - base_med:+5.1f})"
        print(f"  {name:8s} fastest {fast}   median {mid}")


if __name__ == "__main__":
    main()
