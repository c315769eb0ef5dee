"""2 gloo processes train the same steps as 1 process with the same global batch.

Weights must match across ranks exactly and match the single-process run within float tolerance, for a
plain DDP loop and for the Runner. The workers are started by torchrun and join with ``init_from_env``
(``kiln train --launcher pytorch``); ``launch`` itself is exercised in test_launch_workers.py.
"""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from kiln.engine import comm

GLOBAL_BATCH = 8
STEPS = 5
LR = 0.1


class _Regressor(nn.Module):
    """Follows the model contract: a list of per-sample dicts in, a loss dict out."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # identical initial weights in every process
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, batch):
        x = torch.stack([s["x"] for s in batch])
        y = torch.stack([s["y"] for s in batch])
        return {"loss": F.mse_loss(self.net(x), y)}


def _global_batches():
    g = torch.Generator().manual_seed(123)
    return [[{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)}
             for _ in range(GLOBAL_BATCH)] for _ in range(STEPS)]


def _local_batches(rank, world_size):
    per_rank = GLOBAL_BATCH // world_size
    return [b[rank * per_rank:(rank + 1) * per_rank] for b in _global_batches()]


def _train_plain(model, batches):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for batch in batches:
        opt.zero_grad()
        model(batch)["loss"].backward()
        opt.step()


def _train_plain_ddp(out_file):
    """Plain DDP loop; each rank sees its half of every global batch."""
    model = _Regressor()
    _train_plain(DDP(model), _local_batches(comm.get_rank(), comm.get_world_size()))
    torch.save(model.state_dict(), out_file.format(rank=comm.get_rank()))


def _ddp_and_runner_worker(out_dir):
    """Plain DDP, then the Runner, on the same per-rank data."""
    from kiln.engine import Runner

    _train_plain_ddp(os.path.join(out_dir, "plain_rank{rank}.pt"))
    rank, world = comm.get_rank(), comm.get_world_size()
    model = _Regressor()
    runner = Runner(
        model,
        work_dir=os.path.join(out_dir, "runner_work"),
        train_dataloader=_local_batches(rank, world),
        optim_wrapper=torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9),
        max_epochs=1,
    )
    runner.train()
    torch.save(runner.unwrapped_model.state_dict(), os.path.join(out_dir, f"runner_rank{rank}.pt"))


def _single_process_reference():
    model = _Regressor()
    _train_plain(model, _global_batches())
    return model.state_dict()


def _assert_same(a, b, exact):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


_TORCHRUN_SCRIPT = """
import sys
sys.path.insert(0, {test_dir!r})
from kiln.engine.launch import init_from_env
from test_distributed_training import _ddp_and_runner_worker
rank, world_size = init_from_env(backend="gloo")
assert world_size == 2
_ddp_and_runner_worker({out!r})
"""


@pytest.fixture(scope="module")
def torchrun_out(tmp_path_factory):
    """Run ``_ddp_and_runner_worker`` under torchrun (2 gloo processes, ``init_from_env``) once."""
    out = tmp_path_factory.mktemp("torchrun")
    script = out / "train.py"
    script.write_text(_TORCHRUN_SCRIPT.format(test_dir=os.path.dirname(__file__), out=str(out)))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("kind", ["plain", "runner"])
def test_two_gloo_processes_end_with_identical_weights(torchrun_out, kind):
    r0 = torch.load(torchrun_out / f"{kind}_rank0.pt", weights_only=True)
    r1 = torch.load(torchrun_out / f"{kind}_rank1.pt", weights_only=True)
    _assert_same(r0, r1, exact=True)


@pytest.mark.parametrize("kind", ["plain", "runner"])
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(torchrun_out, kind):
    reference = _single_process_reference()
    assert not torch.equal(reference["net.0.weight"], _Regressor().state_dict()["net.0.weight"])
    _assert_same(torch.load(torchrun_out / f"{kind}_rank0.pt", weights_only=True), reference, exact=False)


def test_only_the_main_process_writes_the_runner_checkpoint(torchrun_out):
    work = torchrun_out / "runner_work"
    ckpt = torch.load(work / "epoch_1.pth", weights_only=True)
    _assert_same(ckpt["model"], torch.load(torchrun_out / "runner_rank0.pt", weights_only=True), exact=True)
    assert {f"rng_state_rank{r}" for r in (0, 1)} <= set(ckpt)  # every rank's RNG state, one file
