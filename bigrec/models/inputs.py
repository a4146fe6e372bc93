"""Input blocks shared by the zoo: dense-column selection and flat field concatenation."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.embeddings import FeatureEmbeddings


def id_feature_names(schema: Schema, names: list[str]) -> list[str]:
    """The id (sparse and sequence) features among ``names``, in order."""
    return [n for n in names if schema[n].kind != "dense"]


class DenseColumns(nn.Module):
    """The dense features among ``names``, selected from ``Batch.dense``.

    Shapes: ``forward(batch) -> [B, Nd]`` (Nd = ``out_features``, 0 when there are none).
    """

    def __init__(self, schema: Schema, names: list[str]) -> None:
        super().__init__()
        self.names = [n for n in names if schema[n].kind == "dense"]
        starts, cursor = {}, 0
        for feature in schema.dense:
            starts[feature.name] = cursor
            cursor += feature.dim
        index = [starts[n] + i for n in self.names for i in range(schema[n].dim)]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.out_features = len(index)

    def forward(self, batch: Batch) -> torch.Tensor:
        return batch.dense[:, self.index]


class FlatInput(nn.Module):
    """Every pooled id embedding and the dense columns, concatenated.

    Shapes: ``forward(batch) -> [B, F * D + Nd]``; ``out_features`` is that width.
    """

    def __init__(self, schema: Schema, names: list[str], embedding_dim: int,
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.id_names = id_feature_names(schema, names)
        self.embeddings = FeatureEmbeddings(schema, self.id_names, embedding_dim, device=device)
        self.dense = DenseColumns(schema, names)
        self.out_features = len(self.id_names) * embedding_dim + self.dense.out_features

    def forward(self, batch: Batch) -> torch.Tensor:
        pooled = self.embeddings(batch).pooled
        return torch.cat([pooled[n] for n in self.id_names] + [self.dense(batch)], dim=-1)
