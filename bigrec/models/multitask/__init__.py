"""Multi-task models (``task = "multitask"``, logits ``[B, T]``) and their shared task towers."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.models.layers import MLP


class TaskTowers(nn.Module):
    """One MLP tower and a 1-unit head per task.

    Shapes: ``forward(inputs)`` with ``inputs`` a list of T ``[B, H]`` -> ``[B, T]`` logits.
    """

    def __init__(self, in_features: int, tower_units: Sequence[int], num_tasks: int,
                 dropout_rates: float | Sequence[float] = 0.0, activation: str = "relu",
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(in_features, tower_units, dropout_rates, activation, device=device),
                          nn.Linear(int(list(tower_units)[-1]), 1, device=device))
            for _ in range(num_tasks))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([tower(x) for tower, x in zip(self.towers, inputs)], dim=-1)
