"""PLE: Progressive Layered Extraction (Tang et al., RecSys 2020)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.experts import Experts, Gate, TaskTowers, mix
from bigrec.models.inputs import FlatInput
from bigrec.models.multitask import check_task_types
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model


class ExtractionLayer(nn.Module):
    """One PLE extraction layer (a CGC unit, plus the shared gate unless it is the last layer).

    Each of the T tasks has ``num_experts`` experts of its own; ``num_shared_experts`` are
    shared. Task t's gate (softmax) mixes its own and the shared experts; the shared gate
    mixes every expert into the next layer's shared input.

    Args:
        in_features: width of every task input and of the shared input.
        last: no shared gate (the towers read the task outputs only).

    Shapes: ``forward(task_inputs T x [B, D], shared_input [B, D])`` ->
    ``(T x [B, H], [B, H] or None, gates T x [B, E + S])``.
    """

    def __init__(self, in_features: int, num_tasks: int, expert_units: Sequence[int],
                 num_experts: int, num_shared_experts: int, dropout_rates: float | Sequence[float],
                 activation: str, gate_activation: str, last: bool) -> None:
        super().__init__()
        self.task_experts = nn.ModuleList(Experts(in_features, expert_units, num_experts, dropout_rates, activation)
                                          for _ in range(num_tasks))
        self.shared_experts = Experts(in_features, expert_units, num_shared_experts, dropout_rates, activation)
        self.task_gates = nn.ModuleList(Gate(in_features, num_experts + num_shared_experts, gate_activation)
                                        for _ in range(num_tasks))
        total = num_tasks * num_experts + num_shared_experts
        self.shared_gate = None if last else Gate(in_features, total, gate_activation)
        self.out_features = self.shared_experts.out_features

    def forward(self, task_inputs: list[torch.Tensor], shared_input: torch.Tensor
                ) -> tuple[list[torch.Tensor], Optional[torch.Tensor], list[torch.Tensor]]:
        shared = self.shared_experts(shared_input)  # [B, S, H]
        own = [experts(x) for experts, x in zip(self.task_experts, task_inputs)]  # T x [B, E, H]
        gates = [gate(x) for gate, x in zip(self.task_gates, task_inputs)]  # T x [B, E + S]
        outputs = [mix(g, torch.cat([e, shared], dim=1)) for g, e in zip(gates, own)]
        shared_output = None
        if self.shared_gate is not None:
            shared_output = mix(self.shared_gate(shared_input), torch.cat(own + [shared], dim=1))
        return outputs, shared_output, gates


@register_model("ple")
class PLE(RecModel):
    """Task-specific and shared experts over ``num_layers`` progressive extraction layers, then towers.

    Args:
        schema: data schema.
        features: input features (default: every non-sequence feature).
        expert_units: hidden sizes of every expert MLP (each layer alike).
        num_experts: task-specific experts per task and layer.
        num_layers: extraction layers (1 = CGC).
        num_shared_experts: shared experts per layer.
        task_types: ``binary`` / ``regression`` per task (default: ``num_tasks`` binary tasks).
        num_tasks: T (default ``len(task_types)``, else 2).
        tower_units: hidden sizes of each task tower (a 1-unit head is added).
        expert_activation: activation of the experts and towers.
        gate_activation: ``softmax`` over the experts a gate sees (paper), or any activation.
        expert_dropout_rates / tower_dropout_rates: dropout (one rate or one per layer).
        embedding_dim: D of every table.

    Shapes: ``forward(batch) -> ModelOutput(logits [B, T])``; ``gates(batch)`` -> per layer,
    T gates ``[B, num_experts + num_shared_experts]``.

    Example::

        model = PLE(schema, expert_units=[16], num_experts=2, num_layers=2, num_shared_experts=2,
                    task_types=["binary", "regression"])
        logits = model(batch).logits  # [B, 2]
    """

    task = "multitask"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 expert_units: Sequence[int] = (256, 128), num_experts: int = 2, num_layers: int = 2,
                 num_shared_experts: int = 2, task_types: Optional[Sequence[str]] = None,
                 num_tasks: Optional[int] = None, tower_units: Sequence[int] = (64,), expert_activation: str = "relu",
                 gate_activation: str = "softmax", expert_dropout_rates: float | Sequence[float] = 0.0,
                 tower_dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16,
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        for name, value in (("num_experts", num_experts), ("num_layers", num_layers),
                            ("num_shared_experts", num_shared_experts)):
            if int(value) < 1:
                raise ConfigError(f"PLE: {name} must be >= 1, got {value}")
        self.num_tasks, self.task_types = check_task_types("ple", num_tasks, task_types)
        self.inputs = FlatInput(schema, self.resolve_features(features), embedding_dim, device=device)
        layers, width = [], self.inputs.out_features
        for index in range(int(num_layers)):
            layer = ExtractionLayer(width, self.num_tasks, expert_units, int(num_experts),
                                    int(num_shared_experts), expert_dropout_rates, expert_activation,
                                    gate_activation, last=index == int(num_layers) - 1)
            layers.append(layer)
            width = layer.out_features
        self.layers = nn.ModuleList(layers)
        self.towers = TaskTowers(width, tower_units, self.num_tasks, tower_dropout_rates, expert_activation)

    def _extract(self, batch: Batch) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        x = self.inputs(batch)
        task_inputs, shared, gates = [x] * self.num_tasks, x, []
        for layer in self.layers:
            task_inputs, shared, layer_gates = layer(task_inputs, shared)
            gates.append(layer_gates)
        return task_inputs, gates

    def gates(self, batch: Batch) -> list[list[torch.Tensor]]:
        """Per layer, each task's gate weights ``[B, num_experts + num_shared_experts]``."""
        return self._extract(batch)[1]

    def last_shared_layer(self) -> nn.Module:
        """The last extraction layer's shared experts' last linear layers (all tasks' gates read them)."""
        return self.layers[-1].shared_experts.last_layers()

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self.towers(self._extract(batch)[0]))
