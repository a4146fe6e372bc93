"""Shared-Bottom multi-task model (Caruana, 1997): one shared MLP, one tower per task."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.experts import TaskTowers
from bigrec.models.inputs import FlatInput
from bigrec.models.layers import MLP
from bigrec.models.multitask import check_task_types
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model


@register_model("shared_bottom")
class SharedBottom(RecModel):
    """A bottom MLP shared by all tasks, then one tower per task (MMoE's baseline).

    Args:
        schema: data schema.
        features: input features (default: every non-sequence feature).
        hidden_units: hidden sizes of the shared bottom MLP.
        task_hidden_units: hidden sizes of each task tower (a 1-unit head is added).
        num_tasks: T (default: ``len(task_types)``, else 2); must equal the task's labels.
        task_types: ``binary`` / ``regression`` per task (default all binary).
        activation: activation of bottom and towers.
        dropout_rates: dropout of the bottom MLP (one rate or one per layer).
        tower_dropout_rates: dropout of each tower (one rate or one per layer).
        embedding_dim: D of every table.

    Shapes: ``forward(batch) -> ModelOutput(logits [B, T])``.

    Example::

        model = SharedBottom(schema, hidden_units=[64], task_hidden_units=[16], task_types=["binary", "regression"])
        logits = model(batch).logits  # [B, 2]
    """

    task = "multitask"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 hidden_units: Sequence[int] = (256, 128), task_hidden_units: Sequence[int] = (64,),
                 num_tasks: Optional[int] = None, task_types: Optional[Sequence[str]] = None,
                 activation: str = "relu", dropout_rates: float | Sequence[float] = 0.0,
                 tower_dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16,
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        self.num_tasks, self.task_types = check_task_types("shared_bottom", num_tasks, task_types)
        self.inputs = FlatInput(schema, self.resolve_features(features), embedding_dim, device=device)
        self.bottom = MLP(self.inputs.out_features, hidden_units, dropout_rates, activation)
        self.towers = TaskTowers(self.bottom.out_features, task_hidden_units, self.num_tasks, tower_dropout_rates,
                                 activation)

    def last_shared_layer(self) -> nn.Module:
        """The bottom MLP's last linear layer."""
        return self.bottom.last_linear()

    def forward(self, batch: Batch) -> ModelOutput:
        shared = self.bottom(self.inputs(batch))
        return ModelOutput(self.towers([shared] * self.num_tasks))
