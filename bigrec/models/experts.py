"""Experts, gates and task towers shared by the multi-task zoo (MMoE, PLE, ...)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bigrec.models.layers import MLP, make_activation


class Gate(nn.Module):
    """A gate over E experts: ``activation(W x)`` (softmax by default).

    Shapes: ``[B, D_in] -> [B, E]``.
    """

    def __init__(self, in_features: int, num_experts: int, activation: str = "softmax") -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_experts)
        self.activation = nn.Softmax(dim=-1) if activation == "softmax" else make_activation(activation, num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


class Experts(nn.Module):
    """E expert MLPs over one input.

    Shapes: ``[B, D_in] -> [B, E, H]`` (H = ``expert_units[-1]`` = ``out_features``).
    """

    def __init__(self, in_features: int, expert_units: Sequence[int], num_experts: int,
                 dropout_rates: float | Sequence[float] = 0.0, activation: str = "relu") -> None:
        super().__init__()
        self.experts = nn.ModuleList(MLP(in_features, expert_units, dropout_rates, activation)
                                     for _ in range(num_experts))
        self.out_features = self.experts[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)

    def last_layers(self) -> nn.ModuleList:
        """Every expert's last linear layer (the last shared layer when all tasks mix these experts)."""
        return nn.ModuleList(expert.last_linear() for expert in self.experts)


def mix(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum of experts: ``[B, E], [B, E, H] -> [B, H]``."""
    return torch.bmm(gates.unsqueeze(1), experts).squeeze(1)


class TaskTowers(nn.Module):
    """One MLP tower and a 1-unit head per task.

    Shapes: ``forward(inputs)`` with ``inputs`` a list of T ``[B, H]`` -> ``[B, T]`` logits.
    """

    def __init__(self, in_features: int, tower_units: Sequence[int], num_tasks: int,
                 dropout_rates: float | Sequence[float] = 0.0, activation: str = "relu") -> None:
        super().__init__()
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(in_features, tower_units, dropout_rates, activation),
                          nn.Linear(int(list(tower_units)[-1]), 1))
            for _ in range(num_tasks))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([tower(x) for tower, x in zip(self.towers, inputs)], dim=-1)
