"""Runner overhead: kiln's training loop with default hooks vs a raw PyTorch loop, same work.

A tiny MLP on in-memory batches (so the framework's per-iteration cost is visible), SGD, a
warmup + multi-step schedule in kiln (the raw loop keeps a constant lr, so scheduling counts as
kiln overhead), kiln's default hooks: iteration timer, logger every 50 iterations (console line
+ metrics.jsonl), param scheduler, checkpoint at the end.

Reported per iteration, as the median and the minimum over interleaved rounds in one process:

* wall and CPU time of both loops and their difference (the end-to-end overhead, checkpoint
  included); on a busy machine these totals are noisy;
* the time spent *outside the optimization step* (hooks, loop, metric flush, writers, schedule,
  final checkpoint), measured by timing the step inside both loops: the framework overhead
  isolated from the noise of forward/backward.

Optionally the same work through other frameworks, each with its equivalent of kiln's defaults
(``--with ignite mmengine lightning``): pytorch-ignite, MMEngine's Runner and PyTorch Lightning's
Trainer (manual optimization so that the step can be timed; ``self.log`` of both loss terms,
``log_every_n_steps=50`` into a CSVLogger, the default ModelCheckpoint at the end). Their packages
may live in ``pip install --no-deps --target DIR`` directories passed with ``--extra-path DIR``, so
that torch stays the project's.

Console lines are dropped by default (loggers at WARNING; kiln and ignite then do not format
them, MMEngine does). ``--console`` formats and emits kiln's and ignite's lines to ``os.devnull``.

    .venv/bin/python benchmarks/runner_overhead.py [--iters 3000] [--rounds 5] [--console]
        [--with ignite mmengine lightning --extra-path DIR ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
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


def make_batches(n: int) -> torch.utils.data.DataLoader:
    """In-memory batches behind a plain torch DataLoader (the same loader for every framework)."""
    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(8, 16, generator=g), "y": torch.randn(8, 1, generator=g)} for _ in range(n)]
    return torch.utils.data.DataLoader(data, batch_size=1, collate_fn=_first)


def _first(items: list) -> dict:
    return items[0]


def total_loss(losses: dict) -> torch.Tensor:
    """Sum of the ``*loss*`` terms with one tensor add per extra term (``sum()`` would add a 0 first:
    one more autograd op per step, which made the hand-written loops slower than kiln's)."""
    terms = [v for k, v in losses.items() if "loss" in k]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


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


def raw_loop(batches: torch.utils.data.DataLoader) -> tuple[float, float, float, float]:
    """The baseline: what a hand-written loop does per iteration. Returns (wall, cpu, outside wall/cpu)."""
    torch.manual_seed(0)
    model = TinyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    timer = StepTimer()

    def step(batch: dict) -> dict:
        losses = model(batch)
        total = total_loss(losses)
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


def kiln_loop(batches: torch.utils.data.DataLoader, work_dir: str) -> tuple[float, float, float, float]:
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
    marks: dict = {}
    runner.register_callback(lambda r: marks.update(w=_clock(), c=_cpu()), "before_train", priority=0)
    runner.register_callback(lambda r: marks.update(w1=_clock(), c1=_cpu()), "after_train", priority=100)
    runner.train()
    wall, cpu = marks["w1"] - marks["w"], marks["c1"] - marks["c"]
    return wall / n, cpu / n, (wall - timer.wall) / n, (cpu - timer.cpu) / n


def ignite_loop(batches: torch.utils.data.DataLoader, work_dir: str) -> tuple[float, float, float, float]:
    """pytorch-ignite with the equivalent handlers: timer, log every 50 (line + JSON), lr schedule,
    checkpoint at the end."""
    import json
    import os

    from ignite.engine import Engine, Events
    from ignite.handlers import PiecewiseLinear, Timer

    torch.manual_seed(0)
    model = TinyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = len(batches)
    timer = StepTimer()

    def update(engine: Engine, batch: dict) -> dict:
        losses = model(batch)
        total = total_loss(losses)
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return losses

    timed = timer.wrap(lambda b: update(None, b))  # type: ignore[arg-type]
    engine = Engine(lambda e, b: timed(b))
    Timer(average=True).attach(
        engine,
        start=Events.STARTED,
        resume=Events.ITERATION_STARTED,
        pause=Events.ITERATION_COMPLETED,
        step=Events.ITERATION_COMPLETED,
    )
    sched = PiecewiseLinear(
        opt,
        "lr",
        milestones_values=[(0, 0.001), (100, 0.01), (n // 2, 0.01), (n // 2 + 1, 0.001), (n, 0.001)],
    )
    engine.add_event_handler(Events.ITERATION_STARTED, sched)
    log = logging.getLogger("ignite_bench")
    jf = open(os.path.join(work_dir, "metrics.jsonl"), "a")

    @engine.on(Events.ITERATION_COMPLETED(every=50))
    def _log(e: Engine) -> None:
        out = {k: float(v.detach()) for k, v in e.state.output.items()}
        log.info("iter %d %s", e.state.iteration, out)
        jf.write(json.dumps({"iteration": e.state.iteration, **out}) + "\n")
        jf.flush()

    marks: dict = {}
    engine.add_event_handler(Events.STARTED, lambda e: marks.update(w=_clock(), c=_cpu()))

    @engine.on(Events.COMPLETED)
    def _save(e: Engine) -> None:
        torch.save(
            {"model": model.state_dict(), "optimizer": opt.state_dict()}, os.path.join(work_dir, "final.pth")
        )
        marks.update(w1=_clock(), c1=_cpu())

    engine.run(batches, max_epochs=1)
    jf.close()
    wall, cpu = marks["w1"] - marks["w"], marks["c1"] - marks["c"]
    return wall / n, cpu / n, (wall - timer.wall) / n, (cpu - timer.cpu) / n


def mmengine_loop(batches: torch.utils.data.DataLoader, work_dir: str) -> tuple[float, float, float, float]:
    """MMEngine's Runner with its default hooks (logger every 50, checkpoint at the end)."""
    from mmengine.hooks import Hook as MMHook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner as MMRunner

    class MMTiny(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.net = TinyModel().net

        def forward(self, x: torch.Tensor, y: torch.Tensor, mode: str = "loss") -> dict:
            pred = self.net(x)
            return {"loss_mse": ((pred - y) ** 2).mean(), "loss_l1": (pred - y).abs().mean()}

    torch.manual_seed(0)
    model = MMTiny()
    n = len(batches)
    timer = StepTimer()
    inner = model.train_step
    model.train_step = lambda data, optim_wrapper: timer.wrap(lambda d: inner(d, optim_wrapper))(data)
    marks: dict = {}

    class Marks(MMHook):
        priority = "HIGHEST"

        def before_train(self, runner: object) -> None:
            marks.update(w=_clock(), c=_cpu())

        def after_train(self, runner: object) -> None:
            marks.update(w1=_clock(), c1=_cpu())

    runner = MMRunner(
        model=model,
        work_dir=work_dir,
        train_dataloader=batches,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9)),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=100),
            dict(type="MultiStepLR", by_epoch=False, milestones=[n // 2, 3 * n // 4]),
        ],
        train_cfg=dict(by_epoch=False, max_iters=n),
        default_hooks=dict(
            logger=dict(type="LoggerHook", interval=50),
            checkpoint=dict(type="CheckpointHook", interval=n, by_epoch=False),
        ),
        custom_hooks=[Marks()],
        log_level="WARNING",
    )
    runner.train()
    wall, cpu = marks["w1"] - marks["w"], marks["c1"] - marks["c"]
    return wall / n, cpu / n, (wall - timer.wall) / n, (cpu - timer.cpu) / n


def lightning_loop(batches: torch.utils.data.DataLoader, work_dir: str) -> tuple[float, float, float, float]:
    """PyTorch Lightning's Trainer as Lightning users write it: ``self.log`` of both loss terms with
    ``log_every_n_steps=50`` into a CSVLogger, a per-step warmup + multi-step schedule, the default
    ModelCheckpoint (saved at the end of the single epoch).

    Lightning runs forward, backward and the optimizer step inside its automatic optimization, where
    the step cannot be timed on its own; manual optimization exposes it. The timed step is forward,
    ``total_loss``, ``manual_backward``, ``optimizer.step`` and ``zero_grad`` (Lightning's own
    backward/step plumbing included, as kiln's and MMEngine's optimizer wrappers are in theirs); the
    lr scheduler step and ``self.log`` are outside it, as schedule and logging are in the other loops.
    """
    import warnings

    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.utilities.warnings import PossibleUserWarning

    # Lightning's loggers are set to INFO with their own handler when it is first imported: quiet them
    # here (the logging calls are still made; only their output is dropped).
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)  # e.g. "no workers in the loader"
    # Lightning 2.6 builds torch's deprecated LeafSpec when it sets up the loader (once per fit).
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
    torch.manual_seed(0)
    n = len(batches)
    timer = StepTimer()

    class LitTiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = TinyModel()
            self.automatic_optimization = False
            self.timed_step = timer.wrap(self.optimize)

        def optimize(self, batch_opt: tuple) -> dict:
            batch, opt = batch_opt
            losses = self.model(batch)
            self.manual_backward(total_loss(losses))
            opt.step()
            opt.zero_grad(set_to_none=True)
            return losses

        def training_step(self, batch: dict, batch_idx: int) -> None:
            losses = self.timed_step((batch, self.optimizers()))
            self.lr_schedulers().step()
            self.log("loss_mse", losses["loss_mse"])
            self.log("loss_l1", losses["loss_l1"])

        def configure_optimizers(self) -> dict:
            from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, MultiStepLR

            opt = torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)
            sched = ChainedScheduler(
                [LinearLR(opt, start_factor=0.1, total_iters=100), MultiStepLR(opt, [n // 2, 3 * n // 4])],
                optimizer=opt,
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    marks: dict = {}

    class Marks(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            marks.update(w=_clock(), c=_cpu())

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            marks.update(w1=_clock(), c1=_cpu())

    trainer = pl.Trainer(
        max_steps=n,
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=50,
        logger=CSVLogger(work_dir, name="lightning"),
        callbacks=[Marks()],  # the default ModelCheckpoint is added by the Trainer
        default_root_dir=work_dir,
    )
    trainer.fit(LitTiny(), train_dataloaders=batches)
    wall, cpu = marks["w1"] - marks["w"], marks["c1"] - marks["c"]
    return wall / n, cpu / n, (wall - timer.wall) / n, (cpu - timer.cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--with",
        dest="others",
        nargs="*",
        default=[],
        choices=["ignite", "mmengine", "lightning"],
        help="also measure these frameworks (must be importable)",
    )
    parser.add_argument(
        "--extra-path",
        action="append",
        default=[],
        help="append a site-packages dir to sys.path (after ours) for --with packages",
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="emit the console lines of kiln and ignite (INFO, formatted, written to os.devnull) "
        "instead of dropping them at level WARNING",
    )
    args = parser.parse_args()
    sys.path.extend(args.extra_path)
    torch.set_num_threads(args.threads)
    # By default no console line is emitted (level WARNING): kiln's printer and ignite's lazy
    # log.info('%s', ...) then skip formatting it; MMEngine formats its line anyway. --console
    # formats and writes them, to os.devnull so that terminal I/O does not add noise.
    for name in ("kiln", "ignite_bench", "mmengine"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.console:
        null = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the process
        null.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        for name in ("kiln", "ignite_bench"):
            lg = logging.getLogger(name)
            lg.setLevel(logging.INFO)
            lg.addHandler(null)
            lg.propagate = False
    batches = make_batches(args.iters)
    loops = {"raw": lambda d: raw_loop(batches), "kiln": lambda d: kiln_loop(batches, d)}
    if "ignite" in args.others:
        loops["ignite"] = lambda d: ignite_loop(batches, d)
    if "mmengine" in args.others:
        loops["mmengine"] = lambda d: mmengine_loop(batches, d)
    if "lightning" in args.others:
        loops["lightning"] = lambda d: lightning_loop(batches, d)
    results: dict[str, list] = {k: [] for k in loops}
    with tempfile.TemporaryDirectory() as d:
        for fn in loops.values():  # warm up kernels, allocator and imports
            fn(d)
    for r in range(args.rounds):
        for name, fn in loops.items():
            with tempfile.TemporaryDirectory() as d:
                results[name].append(fn(d))
        print(
            f"round {r}: "
            + ", ".join(
                f"{k} {v[-1][0] * 1e6:.1f} us/iter (outside the step {v[-1][2] * 1e6:.1f})"
                for k, v in results.items()
            )
        )

    def med(rows: list, i: int) -> float:
        return statistics.median(x[i] for x in rows) * 1e6

    def low(rows: list, i: int) -> float:
        return min(x[i] for x in rows) * 1e6

    labels = ("total wall", "total cpu", "outside-step wall", "outside-step cpu")
    # Two summaries: the median round, and the fastest round of each loop. On a shared machine noise
    # only ever adds time, so the minimum is the steadier estimate of the work itself.
    for title, stat in (("median", med), ("minimum", low)):
        print(
            f"\n{title} of {args.rounds} rounds x {args.iters} iterations (torch threads={args.threads}), "
            f"us/iter; '+' columns: minus the raw loop"
        )
        print(f"  {'':10s}" + "".join(f"{lab:>19s}" for lab in labels))
        for name, rows in results.items():
            cells = []
            for i in range(4):
                v, base = stat(rows, i), stat(results["raw"], i)
                cells.append(f"{v:9.1f}" + (f" ({v - base:+7.1f})" if name != "raw" else " " * 10))
            print(f"  {name:10s}" + "".join(f"{c:>19s}" for c in cells))


if __name__ == "__main__":
    main()
