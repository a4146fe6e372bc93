"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.layers import MLP, make_activation
from bigrec.models.inputs import FlatInput
from bigrec.models.multitask import TaskTowers
from bigrec.models.registry import register_model


class Gate(nn.Module):
    """A task's gate: ``activation(W x)`` over E experts (softmax by default).

    Shapes: ``[B, D_in] -> [B, E]``.
    """

    def __init__(self, in_features: int, num_experts: int, activation: str = "softmax",
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_experts, device=device)
        self.activation = nn.Softmax(dim=-1) if activation == "softmax" else make_activation(activation, num_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


@register_model("mmoe")
class MMoE(RecModel):
    """Experts shared by all tasks, mixed per task by a gate, then one tower per task.

    Args:
        schema: data schema.
        features: input features (default: every non-sequence feature).
        expert_units: hidden sizes of each expert MLP.
        num_experts: E.
        num_tasks: T; must equal the number of labels of the task.
        expert_activation: activation of the experts.
        gate_activation: ``softmax`` over experts (paper), or any activation of
            :func:`bigrec.models.layers.make_activation`.
        tower_units: hidden sizes of each task tower (a 1-unit head is added).
        dropout_rates: dropout of experts and towers.
        embedding_dim: D of every table.

    Shapes: ``forward(batch) -> [B, T]`` logits; ``gates(batch) -> [B, T, E]``.

    Example::

        model = MMoE(schema, num_experts=4, num_tasks=2, expert_units=[32], tower_units=[16])
        logits = model(batch)  # [B, 2]
    """

    task = "multitask"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 expert_units: Sequence[int] = (256, 128), num_experts: int = 4, num_tasks: int = 2,
                 expert_activation: str = "relu", gate_activation: str = "softmax",
                 tower_units: Sequence[int] = (64,), dropout_rates: float | Sequence[float] = 0.0,
                 embedding_dim: int = 16, device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        if num_experts < 1 or num_tasks < 1:
            raise ConfigError(f"MMoE: num_experts and num_tasks must be >= 1, got {num_experts}, {num_tasks}")
        self.num_tasks = num_tasks
        self.inputs = FlatInput(schema, self.resolve_features(features), embedding_dim, device=device)
        width = self.inputs.out_features
        self.experts = nn.ModuleList(MLP(width, expert_units, dropout_rates, expert_activation, device=device)
                                     for _ in range(num_experts))
        self.gate_units = nn.ModuleList(Gate(width, num_experts, gate_activation, device=device)
                                        for _ in range(num_tasks))
        hidden = self.experts[0].out_features
        self.towers = TaskTowers(hidden, tower_units, num_tasks, dropout_rates, expert_activation, device=device)

    def _mix(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs(batch)
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, E, H]
        gates = torch.stack([gate(x) for gate in self.gate_units], dim=1)  # [B, T, E]
        return torch.bmm(gates, experts), gates  # [B, T, H]

    def gates(self, batch: Batch) -> torch.Tensor:
        """Gate weights ``[B, T, E]``."""
        return self._mix(batch)[1]

    def forward(self, batch: Batch) -> torch.Tensor:
        mixed, _ = self._mix(batch)
        return self.towers([mixed[:, t] for t in range(self.num_tasks)])
