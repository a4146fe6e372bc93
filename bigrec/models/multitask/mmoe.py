"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.experts import Experts, Gate, TaskTowers
from bigrec.models.inputs import FlatInput
from bigrec.models.multitask import check_task_types
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model


@register_model("mmoe")
class MMoE(RecModel):
    """Experts shared by all tasks, mixed per task by a gate, then one tower per task.

    Args:
        schema: data schema.
        features: input features (default: every non-sequence feature).
        expert_units: hidden sizes of each expert MLP.
        num_experts: E.
        num_tasks: T (default: ``len(task_types)``, else 2); must equal the task's labels.
        task_types: ``binary`` / ``regression`` per task (default all binary).
        expert_activation: activation of the experts and towers.
        gate_activation: ``softmax`` over experts (paper), or any activation of
            :func:`bigrec.models.layers.make_activation`.
        tower_units: hidden sizes of each task tower (a 1-unit head is added).
        expert_dropout_rates: dropout of the experts (one rate or one per layer).
        tower_dropout_rates: dropout of the towers (one rate or one per layer).
        embedding_dim: D of every table.

    Shapes: ``forward(batch) -> ModelOutput(logits [B, T])``; ``gates(batch) -> [B, T, E]``.

    Example::

        model = MMoE(schema, num_experts=4, num_tasks=2, expert_units=[32], tower_units=[16])
        logits = model(batch).logits  # [B, 2]
    """

    task = "multitask"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 expert_units: Sequence[int] = (256, 128), num_experts: int = 4, num_tasks: Optional[int] = None,
                 task_types: Optional[Sequence[str]] = None, expert_activation: str = "relu",
                 gate_activation: str = "softmax", tower_units: Sequence[int] = (64,),
                 expert_dropout_rates: float | Sequence[float] = 0.0,
                 tower_dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16,
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        if num_experts < 1:
            raise ConfigError(f"MMoE: num_experts must be >= 1, got {num_experts}")
        self.num_tasks, self.task_types = check_task_types("mmoe", num_tasks, task_types)
        self.inputs = FlatInput(schema, self.resolve_features(features), embedding_dim, device=device)
        width = self.inputs.out_features
        self.experts = Experts(width, expert_units, num_experts, expert_dropout_rates, expert_activation)
        self.gate_units = nn.ModuleList(Gate(width, num_experts, gate_activation) for _ in range(self.num_tasks))
        self.towers = TaskTowers(self.experts.out_features, tower_units, self.num_tasks, tower_dropout_rates,
                                 expert_activation)

    def _mix(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.inputs(batch)
        experts = self.experts(x)  # [B, E, H]
        gates = torch.stack([gate(x) for gate in self.gate_units], dim=1)  # [B, T, E]
        return torch.bmm(gates, experts), gates  # [B, T, H]

    def last_shared_layer(self) -> nn.Module:
        """The experts' last linear layers (every task's gate mixes all experts)."""
        return self.experts.last_layers()

    def gates(self, batch: Batch) -> torch.Tensor:
        """Gate weights ``[B, T, E]``."""
        return self._mix(batch)[1]

    def forward(self, batch: Batch) -> ModelOutput:
        mixed, _ = self._mix(batch)
        return ModelOutput(self.towers([mixed[:, t] for t in range(self.num_tasks)]))
