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
                 device: Optional[torch.device] = None, companions: Optional[dict[str, int]] = None) -> None:
        super().__init__()
        self.id_names = id_feature_names(schema, names)
        self.embeddings = FeatureEmbeddings(schema, self.id_names, embedding_dim, companions=companions, device=device)
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

    With ``first_order=True`` it also holds the first-order (linear) part over the same
    features (``self.first_order``): each feature's scalar-weight table is a companion
    of its embedding table, looked up in the same collection, so both cost one lookup
    and one input distribution (:meth:`with_first_order`).

    Shapes: ``forward(batch) -> [B, F', D]``; ``with_first_order(batch) -> ([B, F', D], [B])``.
    """

    def __init__(self, schema: Schema, names: list[str], embedding_dim: int,
                 device: Optional[torch.device] = None, first_order: bool = False) -> None:
        super().__init__(schema, names, embedding_dim, device,
                         companions={LINEAR_SUFFIX: FIRST_ORDER_DIM} if first_order else None)
        self.first_order = FirstOrder(schema, names, shared=True) if first_order else None
        self.dense_field = nn.Linear(self.dense.out_features, embedding_dim) if self.dense.out_features else None
        self.num_fields = len(self.id_names) + (1 if self.dense_field is not None else 0)
        self.embedding_dim = embedding_dim
        self.out_features = self.num_fields * embedding_dim

    def forward(self, batch: Batch) -> torch.Tensor:
        return self._fields(batch, self.embeddings(batch).pooled)

    def with_first_order(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The fields ``[B, F', D]`` and the first-order term ``[B]``, from one lookup."""
        if self.first_order is None:
            raise ConfigError("FieldInput.with_first_order needs FieldInput(..., first_order=True)")
        looked_up = self.embeddings(batch)
        return (self._fields(batch, looked_up.pooled),
                self.first_order(batch, looked_up.companions[LINEAR_SUFFIX]))

    def _fields(self, batch: Batch, pooled: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = [pooled[n] for n in self.id_names]  # F x [B, D]
        if self.dense_field is not None:
            fields.append(self.dense_field(self.dense(batch)))
        return torch.stack(fields, dim=1)


FIRST_ORDER_DIM = 4
LINEAR_SUFFIX = "_linear"


class FirstOrder(nn.Module):
    """The linear (first-order, "wide") model: ``sum_f w[id_f] + w_d . dense + b``.

    Each id's scalar weight is ``FIRST_ORDER_DIM`` x the mean of a row of its own
    table (4 columns: fbgemm's fused kernels need dims divisible by 4), in tables
    suffixed ``_linear`` so they never share rows with the model's embeddings. Sparse,
    sharded and trained by the fused sparse optimizer like every table.

    With ``shared=True`` it holds no tables: the rows come from companion tables of
    another lookup (:class:`FieldInput` with ``first_order=True``) and are passed to
    ``forward``. A companion in an ``EmbeddingCollection`` has that collection's width;
    the mean keeps its weight's scale and its row-wise Adagrad steps those of 4 columns.

    Shapes: ``forward(batch, rows=None) -> [B]``; ``rows``: feature -> ``[B, C]``.
    """

    def __init__(self, schema: Schema, names: list[str], device: Optional[torch.device] = None,
                 shared: bool = False) -> None:
        super().__init__()
        self.id_names = id_feature_names(schema, names)
        self.weights = FeatureEmbeddings(schema, self.id_names, FIRST_ORDER_DIM, table_suffix=LINEAR_SUFFIX,
                                         device=device) if self.id_names and not shared else None
        self.dense = DenseColumns(schema, names)
        self.dense_linear = nn.Linear(self.dense.out_features, 1) if self.dense.out_features else None
        if not self.id_names and self.dense_linear is None:
            raise ConfigError(f"the first-order part needs at least one feature, got {names}")
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch, rows: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
        terms = []
        if self.id_names:
            if rows is None:
                if self.weights is None:
                    raise ConfigError("FirstOrder(shared=True) has no tables of its own: pass the companion rows")
                rows = self.weights(batch).pooled
            means = torch.stack([rows[n].mean(dim=1) for n in self.id_names], dim=1)  # F x [B, C] -> [B, F]
            terms.append(FIRST_ORDER_DIM * means.sum(dim=1))
        if self.dense_linear is not None:
            terms.append(self.dense_linear(self.dense(batch)).squeeze(1))
        return sum(terms[1:], terms[0]) + self.bias
