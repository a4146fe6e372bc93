"""Shared-Bottom multi-task model (Caruana, 1997): one shared MLP, one tower per task."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.layers import MLP
from bigrec.models.inputs import FlatInput
from bigrec.models.multitask import TaskTowers
from bigrec.models.registry import register_model


@register_model("shared_bottom")
class SharedBottom(RecModel):
    """A bottom MLP shared by all tasks, then one tower per task (MMoE's baseline).

    Args:
        schema: data schema.
        features: input features (default: every non-sequence feature).
        bottom_units: hidden sizes of the shared MLP.
        tower_units: hidden sizes of each task tower (a 1-unit head is added).
        num_tasks: T; must equal the number of labels of the task.
        activation: activation of bottom and towers.
        dropout_rates: dropout of bottom and towers.
        embedding_dim: D of every table.

    Shapes: ``forward(batch) -> [B, T]`` logits.
    """

    task = "multitask"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 bottom_units: Sequence[int] = (256, 128), tower_units: Sequence[int] = (64,), num_tasks: int = 2,
                 activation: str = "relu", dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16,
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        if num_tasks < 1:
            raise ConfigError(f"SharedBottom: num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.inputs = FlatInput(schema, self.resolve_features(features), embedding_dim, device=device)
        self.bottom = MLP(self.inputs.out_features, bottom_units, dropout_rates, activation, device=device)
        self.towers = TaskTowers(self.bottom.out_features, tower_units, num_tasks, dropout_rates, activation,
                                 device=device)

    def forward(self, batch: Batch) -> torch.Tensor:
        shared = self.bottom(self.inputs(batch))
        return self.towers([shared] * self.num_tasks)
