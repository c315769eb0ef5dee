"""Small models and data shared by the runner/hook tests (a helper module, not a test file)."""

from __future__ import annotations

import torch
import torch.nn as nn


class ToyRegressor(nn.Module):
    """The model contract: a list of per-sample dicts in; a loss dict (train) or predictions (eval)."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(dropout)

    def forward(self, batch: list) -> dict | list:
        x = torch.stack([s["x"] for s in batch])
        pred = self.fc(self.drop(self.bn(x)))
        if self.training:
            y = torch.stack([s["y"] for s in batch])
            return {
                "loss_mse": ((pred - y) ** 2).mean(),
                "loss_l1": 0.5 * (pred - y).abs().mean(),
                "acc_like": (pred - y).abs().lt(0.5).float().mean(),
            }
        return [{"pred": p} for p in pred]


def toy_batches(n_batches: int = 6, batch_size: int = 4, seed: int = 0) -> list[list[dict]]:
    """In-memory batches (lists of per-sample dicts)."""
    g = torch.Generator().manual_seed(seed)
    return [
        [{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)} for _ in range(batch_size)]
        for _ in range(n_batches)
    ]


class MSEEvaluator:
    """Evaluator contract: reset/process/evaluate; reports the mean squared error and a fake AP."""

    def __init__(self, values: list[float] | None = None) -> None:
        self.values = list(values) if values is not None else None
        self.calls = 0

    def reset(self) -> None:
        self.err: list[float] = []

    def process(self, inputs: list, outputs: list) -> None:
        for s, o in zip(inputs, outputs):
            self.err.append(float((o["pred"] - s["y"]) ** 2))

    def evaluate(self) -> dict:
        self.calls += 1
        out = {"mse": sum(self.err) / max(len(self.err), 1)}
        if self.values is not None:
            out["bbox/AP"] = self.values[min(self.calls - 1, len(self.values) - 1)]
        return out


class CountingDataset(torch.utils.data.Dataset):
    """Counts how many samples were produced (to prove a resume does not replay the stream)."""

    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(1)
        self.items = [{"x": torch.randn(4, generator=g), "y": torch.randn(1, generator=g)} for _ in range(n)]
        self.fetched = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        self.fetched += 1
        return self.items[i]
