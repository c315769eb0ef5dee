"""Under 2 gloo processes the runner averages logged losses over ranks, and only rank 0 writes files."""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from kiln.engine import comm
from kiln.engine.launch import launch


class _RankLoss(nn.Module):
    """The loss is the rank id (plus a trainable term at zero), so the mean over ranks is known."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return {"loss_rank": self.w.sum() * 0 + float(comm.get_rank()) + batch[0]}


def _worker(out_dir):
    from kiln.engine import Runner

    model = _RankLoss()
    batches = [[torch.tensor(float(i))] for i in range(4)]
    runner = Runner(model, work_dir=out_dir, train_dataloader=batches, max_epochs=1,
                    optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.1),
                    default_hooks=dict(logger=dict(type="LoggerHook", interval=2)))
    runner.train()
    with open(os.path.join(out_dir, f"rank{comm.get_rank()}_history.json"), "w") as f:
        json.dump([v for v, _ in runner.storage.history("loss_rank").values()], f)


def test_logged_losses_are_averaged_over_ranks_and_only_rank0_writes(tmp_path):
    launch(_worker, num_gpus_per_machine=2, args=(str(tmp_path),), backend="gloo")
    for rank in (0, 1):
        with open(tmp_path / f"rank{rank}_history.json") as f:
            assert json.load(f) == [0.5, 1.5, 2.5, 3.5]  # batch value + mean(rank 0, rank 1)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["iteration"] for r in rows] == [1, 3]
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".pth")) == ["epoch_1.pth"]
