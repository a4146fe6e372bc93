"""Multi-task models (``task = "multitask"``, logits ``[B, T]``) and their shared input/tower blocks."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.layers import MLP
from bigrec.models.ranking.deepfm import _dense_columns


class FlatInput(nn.Module):
    """Every pooled id embedding and the dense columns, concatenated.

    Shapes: ``forward(batch) -> [B, F * D + Nd]``; ``out_features`` is that width.
    """

    def __init__(self, schema: Schema, names: list[str], embedding_dim: int,
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        dense_names = [n for n in names if schema[n].kind == "dense"]
        self.id_names = [n for n in names if schema[n].kind != "dense"]
        self.embeddings = FeatureEmbeddings(schema, self.id_names, embedding_dim, device=device)
        self.register_buffer("dense_index", _dense_columns(schema, dense_names), persistent=False)
        self.out_features = len(self.id_names) * embedding_dim + len(self.dense_index)

    def forward(self, batch: Batch) -> torch.Tensor:
        pooled = self.embeddings(batch).pooled
        return torch.cat([pooled[n] for n in self.id_names] + [batch.dense[:, self.dense_index]], dim=-1)


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
