"""The step outputs the training loop buffers for logging hold no autograd graph.

The loop keeps each step's log variables until the next metric flush (every logging interval). A
loss tensor still attached to its graph would keep that step's whole graph alive that long; the
graphs' many small allocations, made at the step's memory peak, fragment the heap and raised the
peak RSS of a CPU training run (benchmarks/memory_peak.py).
"""

from __future__ import annotations

import sys
import weakref
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_toys import ToyRegressor, toy_batches  # noqa: E402

from kiln.engine import Runner, parse_losses  # noqa: E402
from kiln.engine.hooks import Hook  # noqa: E402


def test_parse_losses_logs_detached_values_and_returns_a_total_that_still_backpropagates():
    w = torch.ones(3, requires_grad=True)
    total, log_vars = parse_losses({"loss_a": (w * 2).sum(), "loss_b": [w.sum(), w.mean()], "acc": w.max()})
    assert all(not v.requires_grad and v.grad_fn is None for v in log_vars.values())
    assert float(log_vars["loss"]) == float(total.detach()) == 6.0 + 3.0 + 1.0
    total.backward()
    assert torch.allclose(w.grad, torch.full((3,), 2.0 + 1.0 + 1.0 / 3))


class _Sentinel:
    """Lives exactly as long as the autograd graph it is stored in (see :class:`_Tag`)."""


class _Tag(torch.autograd.Function):
    """Identity whose graph node holds a sentinel: the sentinel is freed when the graph is."""

    @staticmethod
    def forward(ctx, x, sentinel):
        ctx.sentinel = sentinel  # an attribute of the node, kept until the node is destroyed
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class _KeepOutputs(Hook):
    def __init__(self) -> None:
        self.outputs: list[dict] = []

    def after_train_iter(self, runner, batch_idx, data_batch, outputs):
        self.outputs.append(outputs)


def test_buffered_step_outputs_do_not_keep_the_step_graph_alive(tmp_path):
    model = ToyRegressor()
    graphs = []  # weak references to a sentinel in each step's autograd graph
    forward = model.forward

    def forward_watching_the_graph(batch):
        out = forward(batch)
        sentinel = _Sentinel()
        out["loss_mse"] = _Tag.apply(out["loss_mse"], sentinel)
        graphs.append(weakref.ref(sentinel))
        return out

    model.forward = forward_watching_the_graph
    keep = _KeepOutputs()
    runner = Runner(model, work_dir=str(tmp_path), train_dataloader=toy_batches(4),
                    optim_wrapper=torch.optim.SGD(model.parameters(), lr=0.01), max_iters=4,
                    default_hooks={"logger": None, "checkpoint": None}, custom_hooks=[keep])
    runner.train()
    assert len(keep.outputs) == 4
    for out in keep.outputs:
        assert all(not v.requires_grad for v in out.values() if isinstance(v, torch.Tensor))
    assert len(graphs) == 4 and all(ref() is None for ref in graphs)  # every step's graph was freed
