"""Child process for the exact-resume tests (run as a script; not collected by pytest).

    python resume_child.py WORK_DIR MODE [--kill-in-save N] [--only-last] [--slow]

Trains a small dropout MLP on a shuffled, augmented dataset through kiln's resumable loader with
2 workers, checkpointing every iteration, resuming from WORK_DIR when a checkpoint exists. Prints
``ITER n`` after each iteration. At the end writes WORK_DIR/final_state.pt (model + optimizer).

With ``--kill-in-save N``, the save after iteration N writes half of the file and then waits to be
killed (the parent SIGKILLs it), to exercise a kill in the middle of a checkpoint write.
``--only-last`` saves no periodic checkpoints (only the last one), so a resume can only continue from
a checkpoint written on preemption; ``--slow`` makes each iteration take about 0.3 s.
"""

from __future__ import annotations

import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from kiln.data import build_train_loader
from kiln.engine import Runner
from kiln.engine.hooks import CheckpointHook
from kiln.utils import set_random_seed


class DropoutMLP(nn.Module):
    """Model with dropout: its randomness comes from the global torch RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 1))

    def forward(self, batch: list) -> dict:
        x = torch.stack([s["x"] for s in batch])
        y = torch.stack([s["y"] for s in batch])
        pred = self.net(x)
        return {"loss_reg": ((pred - y) ** 2).mean(), "loss_l1": 0.1 * (pred - y).abs().mean()}


def augment(d: dict) -> dict:
    """Random augmentation drawing from python, numpy and torch RNGs (seeded per sample by the loader)."""
    base = torch.tensor(d["x"], dtype=torch.float32)
    noise = torch.randn(8) * 0.1 + float(np.random.uniform(-0.05, 0.05))
    scale = random.uniform(0.9, 1.1)
    return {"x": base * scale + noise, "y": torch.tensor([d["y"]], dtype=torch.float32)}


def make_runner(work_dir: str, mode: str, only_last: bool = False) -> Runner:
    """Epoch-based (3 epochs x 8 iterations) or iteration-based (24 iterations) run."""
    set_random_seed(7)
    g = np.random.RandomState(0)
    dicts = [{"x": g.randn(8).tolist(), "y": float(g.randn())} for _ in range(32)]
    infinite = mode == "iter"
    loader = build_train_loader(
        dicts, mapper=augment, total_batch_size=4, num_workers=2, seed=7, infinite=infinite
    )
    model = DropoutMLP()
    length = dict(max_iters=24) if infinite else dict(max_epochs=3)
    return Runner(
        model,
        work_dir=work_dir,
        train_dataloader=loader,
        seed=7,
        resume=True,
        optim_wrapper=dict(
            optimizer=dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=1e-4), clip_grad=dict(max_norm=1.0)
        ),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.2, by_epoch=False, end=5),
            dict(type="CosineAnnealingLR", by_epoch=False, eta_min=1e-4),
        ],
        default_hooks=dict(
            checkpoint=CheckpointHook(interval=-1 if only_last else 1, by_epoch=False, max_keep_ckpts=2),
            logger=dict(type="LoggerHook", interval=5),
        ),
        **length,
    )


def main() -> None:
    work_dir, mode, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
    kill_in_save = int(flags[flags.index("--kill-in-save") + 1]) if "--kill-in-save" in flags else None
    runner = make_runner(work_dir, mode, only_last="--only-last" in flags)
    if "--slow" in flags:
        runner.register_callback(lambda r, *a: time.sleep(0.3), "before_train_iter")

    def report(r: Runner, *args: object) -> None:
        print(f"ITER {r.iter + 1}", flush=True)

    runner.register_callback(report, "after_train_iter", priority="HIGHEST")
    if kill_in_save is not None:
        real_save = torch.save

        def half_save(obj: object, f: object, *a: object, **k: object) -> None:
            if runner.iter + 1 == kill_in_save and hasattr(f, "write"):
                import io

                buf = io.BytesIO()
                real_save(obj, buf, *a, **k)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                print("IN_SAVE", flush=True)
                time.sleep(60)  # the parent kills us here
            real_save(obj, f, *a, **k)

        torch.save = half_save
    runner.train()
    torch.save(
        {
            "model": runner.unwrapped_model.state_dict(),
            "optimizer": runner.optim_wrapper.optimizer.state_dict(),
        },
        os.path.join(work_dir, "final_state.pt"),
    )
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
