"""DeepFM (Guo et al., 2017): first-order terms + factorization machine + deep MLP."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.inputs import FieldInput
from bigrec.models.layers import MLP
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model


def factorization_machine(fields: torch.Tensor) -> torch.Tensor:
    """Second-order FM term ``0.5 * sum_d((sum_f v)^2 - sum_f v^2)``: ``[B, F, D] -> [B]``."""
    square_of_sum = fields.sum(dim=1).pow(2)
    sum_of_square = fields.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


@register_model("deepfm")
class DeepFM(RecModel):
    """DeepFM over the schema's id and dense features.

    Every id feature is a field with a D-dim embedding (FM and MLP) and a scalar
    first-order weight (:class:`~bigrec.models.inputs.FirstOrder`). Dense features
    enter the first-order term linearly and are projected to one more D-dim field.

    Args:
        schema: data schema.
        features: feature names (default: every non-sequence feature).
        hidden_units: MLP layer sizes; a final 1-unit layer is added.
        dropout_rates: one rate or one per hidden layer.
        embedding_dim: D, shared by all fields (the FM needs one dim).
        activation: MLP activation.

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``.

    Example::

        model = DeepFM(schema, hidden_units=[64, 32], embedding_dim=8)
        logits = model(batch).logits  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 hidden_units: Sequence[int] = (256, 128), dropout_rates: float | Sequence[float] = 0.0,
                 embedding_dim: int = 16, activation: str = "relu", device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        self.fields = FieldInput(schema, names, embedding_dim, device=device, first_order=True)
        self.mlp = MLP(self.fields.num_fields * embedding_dim, hidden_units, dropout_rates, activation)
        self.head = nn.Linear(self.mlp.out_features, 1)

    def forward(self, batch: Batch) -> ModelOutput:
        fields, first_order = self.fields.with_first_order(batch)  # [B, F, D], [B]
        deep = self.head(self.mlp(fields.flatten(1))).squeeze(1)
        return ModelOutput(first_order + factorization_machine(fields) + deep)
