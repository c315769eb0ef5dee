"""Models and data for the MMCV runner API tests (a helper module, not a test file)."""

from __future__ import annotations

import torch
import torch.nn as nn

from kiln.data import build_dataloader


class PairDataset(torch.utils.data.Dataset):
    """``{'x': 4 floats, 'y': 1 float}`` samples, fixed by ``seed``."""

    def __init__(self, n: int = 24, seed: int = 1) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


class MMCVToy(nn.Module):
    """An MMCV-style model: ``train_step(data, optimizer)`` returns ``dict(loss, log_vars, num_samples)``."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.drop = nn.Dropout(dropout)
        self.train_step_calls = 0
        self.val_step_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))

    def _losses(self, batch: list) -> dict:
        x = torch.stack([s["x"] for s in batch])
        y = torch.stack([s["y"] for s in batch])
        loss = ((self(x) - y) ** 2).mean()
        return dict(loss=loss, log_vars={"loss": loss.item()}, num_samples=len(batch))

    def train_step(self, data_batch: list, optimizer: torch.optim.Optimizer, **kwargs) -> dict:
        self.train_step_calls += 1
        self.last_kwargs = kwargs
        return self._losses(data_batch)

    def val_step(self, data_batch: list, optimizer: torch.optim.Optimizer = None, **kwargs) -> dict:
        self.val_step_calls += 1
        return self._losses(data_batch)


class KilnToy(nn.Module):
    """kiln's model contract: training-mode ``model(batch)`` returns a loss dict."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, batch: list) -> dict | list:
        x = torch.stack([s["x"] for s in batch])
        pred = self.fc(x)
        if self.training:
            y = torch.stack([s["y"] for s in batch])
            return {"loss_mse": ((pred - y) ** 2).mean()}
        return [{"pred": p} for p in pred]


def loader(n: int = 24, batch: int = 4, seed: int = 1, shuffle: bool = True, iters: bool = False):
    """A kiln resumable loader over :class:`PairDataset` (no worker processes)."""
    return build_dataloader(
        PairDataset(n, seed),
        samples_per_gpu=batch,
        workers_per_gpu=0,
        shuffle=shuffle,
        seed=0,
        runner_type="IterBasedRunner" if iters else "EpochBasedRunner",
    )


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
