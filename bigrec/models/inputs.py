"""Input blocks shared by the zoo: dense columns, flat and field inputs, the first-order (wide) part.

=================== ==================================================================
:class:`DenseColumns` the dense features a model reads, ``[B, Nd]``
:class:`FlatInput`    every pooled id embedding and the dense columns, ``[B, F * D + Nd]``
:class:`FieldInput`   one D-dim field per id feature plus one projected dense field,
                      ``[B, F', D]`` (FM, cross networks, attention over fields)
:class:`FirstOrder`   the linear model: one scalar weight per id plus a linear map of
                      the dense columns, ``[B]`` (DeepFM's first order, WideDeep's wide part)
=================== ==================================================================
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
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


class FieldInput(FlatInput):
    """One D-dim field per id feature, plus the dense columns projected to one more field.

    The dense projection (as DLRM's dense arch) keeps raw dense values out of
    multiplicative interactions. ``num_fields`` is F' = F + (1 if any dense column);
    ``out_features`` is the flattened width F' * D.

    Shapes: ``forward(batch) -> [B, F', D]``.
    """

    def __init__(self, schema: Schema, names: list[str], embedding_dim: int,
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema, names, embedding_dim, device)
        self.dense_field = nn.Linear(self.dense.out_features, embedding_dim) if self.dense.out_features else None
        self.num_fields = len(self.id_names) + (1 if self.dense_field is not None else 0)
        self.embedding_dim = embedding_dim
        self.out_features = self.num_fields * embedding_dim

    def forward(self, batch: Batch) -> torch.Tensor:
        pooled = self.embeddings(batch).pooled
        fields = [pooled[n] for n in self.id_names]  # F x [B, D]
        if self.dense_field is not None:
            fields.append(self.dense_field(self.dense(batch)))
        return torch.stack(fields, dim=1)


FIRST_ORDER_DIM = 4


class FirstOrder(nn.Module):
    """The linear (first-order, "wide") model: ``sum_f w[id_f] + w_d . dense + b``.

    Each id's scalar weight is the sum of a 4-column row of its own table (fbgemm's
    fused kernels need dims divisible by 4), in tables suffixed ``_linear`` so they
    never share rows with the model's embeddings. Sparse, sharded and trained by the
    fused sparse optimizer like every table.

    Shapes: ``forward(batch) -> [B]``.
    """

    def __init__(self, schema: Schema, names: list[str], device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.id_names = id_feature_names(schema, names)
        self.weights = FeatureEmbeddings(schema, self.id_names, FIRST_ORDER_DIM, table_suffix="_linear",
                                         device=device) if self.id_names else None
        self.dense = DenseColumns(schema, names)
        self.dense_linear = nn.Linear(self.dense.out_features, 1) if self.dense.out_features else None
        if not self.id_names and self.dense_linear is None:
            raise ConfigError(f"the first-order part needs at least one feature, got {names}")
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch) -> torch.Tensor:
        terms = []
        if self.weights is not None:
            pooled = self.weights(batch).pooled
            terms.append(torch.stack([pooled[n] for n in self.id_names], dim=1).sum(dim=(1, 2)))  # [B, F, 4] -> [B]
        if self.dense_linear is not None:
            terms.append(self.dense_linear(self.dense(batch)).squeeze(1))
        return sum(terms[1:], terms[0]) + self.bias
