"""``Scale``: one learnable multiplier, per FPN level in FCOS/ATSS box branches."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Scale"]


class Scale(nn.Module):
    """Multiply the input by a learnable scalar (``scale``, MMCV's parameter name).

    The box branch of FCOS and ATSS is shared across FPN levels whose objects differ in size by powers of
    two; one scalar per level lets each level rescale the shared prediction.
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x * scale``."""
        return x * self.scale
