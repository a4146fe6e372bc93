"""DeepFM (Guo et al., 2017): first-order terms + factorization machine + deep MLP."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.inputs import DenseColumns, id_feature_names
from bigrec.models.layers import MLP
from bigrec.models.registry import register_model


def factorization_machine(fields: torch.Tensor) -> torch.Tensor:
    """Second-order FM term ``0.5 * sum_d((sum_f v)^2 - sum_f v^2)``: ``[B, F, D] -> [B]``."""
    square_of_sum = fields.sum(dim=1).pow(2)
    sum_of_square = fields.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


FIRST_ORDER_DIM = 4


@register_model("deepfm")
class DeepFM(RecModel):
    """DeepFM over the schema's id and dense features.

    Every id feature is a field with a D-dim embedding (FM and MLP) and a scalar
    first-order weight. Dense features enter the first-order term linearly and
    are projected to one more D-dim field. The first-order weight of an id is the
    sum of a 4-column row (fbgemm's fused kernels need dims divisible by 4).

    Args:
        schema: data schema.
        features: feature names (default: every non-sequence feature).
        hidden_units: MLP layer sizes; a final 1-unit layer is added.
        dropout_rates: one rate or one per hidden layer.
        embedding_dim: D, shared by all fields (the FM needs one dim).
        activation: MLP activation.

    Shapes: ``forward(batch) -> [B]`` logits.

    Example::

        model = DeepFM(schema, hidden_units=[64, 32], embedding_dim=8)
        logits = model(batch)  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 hidden_units: Sequence[int] = (256, 128), dropout_rates: float | Sequence[float] = 0.0,
                 embedding_dim: int = 16, activation: str = "relu", device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        self.id_names = id_feature_names(schema, names)
        self.dense = DenseColumns(schema, names)
        dense_dim = self.dense.out_features
        self.embeddings = FeatureEmbeddings(schema, self.id_names, embedding_dim, device=device)
        # fbgemm's fused kernels need dims divisible by 4: a 4-column table summed over its
        # columns is still one scalar weight per id
        self.first_order = FeatureEmbeddings(schema, self.id_names, FIRST_ORDER_DIM, table_suffix="_linear",
                                             device=device)
        self.dense_linear = nn.Linear(dense_dim, 1) if dense_dim else None
        self.dense_field = nn.Linear(dense_dim, embedding_dim) if dense_dim else None
        num_fields = len(self.id_names) + (1 if dense_dim else 0)
        self.mlp = MLP(num_fields * embedding_dim, hidden_units, dropout_rates, activation)
        self.head = nn.Linear(self.mlp.out_features, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embeddings(batch).pooled
        fields = [embedded[n] for n in self.id_names]  # F x [B, D]
        first_order = self.first_order(batch).pooled
        linear = torch.stack([first_order[n] for n in self.id_names], dim=1).sum(dim=(1, 2))  # [B, F, 4] -> [B]
        if self.dense_field is not None:
            dense = self.dense(batch)
            fields.append(self.dense_field(dense))
            linear = linear + self.dense_linear(dense).squeeze(1)
        stacked = torch.stack(fields, dim=1)  # [B, F, D]
        deep = self.head(self.mlp(stacked.flatten(1))).squeeze(1)
        return linear + factorization_machine(stacked) + deep

