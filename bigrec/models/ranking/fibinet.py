"""FiBiNET (Huang et al., 2019): SENET field re-weighting and bilinear feature interactions."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.inputs import FieldInput, FirstOrder
from bigrec.models.layers import MLP, FieldPairs
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model

BILINEAR_TYPES = ("field_all", "field_each", "field_interaction")


class SENet(nn.Module):
    """Squeeze-and-excitation over fields: one learned weight per field and row.

    ``z = mean_d(E)`` (squeeze, ``[B, F]``), ``A = sigmoid(W2 relu(W1 z))`` (excitation
    through ``max(1, F // reduction_ratio)`` units), output ``A[:, :, None] * E``. The
    output gate is the original SE block's sigmoid: with the paper's ReLU there, a field
    whose weight reaches 0 gets no gradient again and stays switched off for good.

    Shapes: ``weights(E): [B, F, D] -> [B, F]``; ``forward(E): [B, F, D] -> [B, F, D]``.
    """

    def __init__(self, num_fields: int, reduction_ratio: float) -> None:
        super().__init__()
        if reduction_ratio <= 0:
            raise ConfigError(f"model FiBiNET: reduction_ratio must be > 0, got {reduction_ratio}")
        hidden = max(1, int(num_fields // reduction_ratio))
        self.excitation = nn.Sequential(nn.Linear(num_fields, hidden), nn.ReLU(), nn.Linear(hidden, num_fields),
                                        nn.Sigmoid())

    def weights(self, fields: torch.Tensor) -> torch.Tensor:
        return self.excitation(fields.mean(dim=2))

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        return self.weights(fields).unsqueeze(2) * fields


class BilinearInteraction(nn.Module):
    """``p_ij = (v_i W) * v_j`` for every field pair ``i < j``.

    ``W`` is one ``[D, D]`` matrix shared by all pairs (``field_all``), one per left field
    ``i`` (``field_each``: F - 1 of them, the last field is never on the left) or one
    per pair (``field_interaction``).

    Shapes: ``[B, F, D] -> [B, P, D]``, P = F (F - 1) / 2.
    """

    def __init__(self, num_fields: int, dim: int, bilinear_type: str) -> None:
        super().__init__()
        if bilinear_type not in BILINEAR_TYPES:
            raise ConfigError(f"model FiBiNET: bilinear_type must be one of {list(BILINEAR_TYPES)}, "
                              f"got '{bilinear_type}'")
        self.pairs = FieldPairs(num_fields)
        which = {"field_all": torch.zeros_like(self.pairs.left), "field_each": self.pairs.left,
                 "field_interaction": torch.arange(self.pairs.num_pairs)}[bilinear_type]
        self.register_buffer("which", which, persistent=False)  # pair -> its matrix
        self.weight = nn.Parameter(torch.empty(int(which.max()) + 1, dim, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = math.sqrt(6.0 / (2 * self.weight.shape[-1]))  # Xavier-uniform for a [D, D] map
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        left, right = self.pairs(fields)
        return torch.einsum("bpd,pde->bpe", left, self.weight[self.which]) * right


@register_model("fibinet")
class FiBiNET(RecModel):
    """``logit = first_order + head(mlp([bilinear(E), bilinear'(SENET(E))]))``.

    SENET learns per row how much each field matters and re-weights the
    embeddings; bilinear interactions (own weights for each path) are taken on the
    original and on the re-weighted embeddings, concatenated and fed to the MLP.

    Args:
        schema: data schema.
        features: feature names (default: every non-sequence feature); dense features
            form one projected field and enter the first order linearly.
        bilinear_type: ``field_all``, ``field_each`` or ``field_interaction``.
        hidden_units: MLP layer sizes; a final 1-unit layer is added.
        reduction_ratio: SENET squeezes F fields through ``max(1, F // reduction_ratio)`` units.
        dropout_rates: one rate or one per hidden layer.
        embedding_dim: D of every field.
        activation: MLP activation.
        device: device of the embedding tables (``meta`` under sharding).

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``; ``senet_weights(batch) -> [B, F']``.

    Example::

        model = FiBiNET(schema, bilinear_type="field_interaction", hidden_units=[128, 64], reduction_ratio=3)
        weights = model.senet_weights(batch)  # [B, F']
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None, bilinear_type: str = "field_interaction",
                 hidden_units: Sequence[int] = (256, 128), reduction_ratio: float = 3,
                 dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16, activation: str = "relu",
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        self.fields = FieldInput(schema, names, embedding_dim, device=device)
        self.first_order = FirstOrder(schema, names, device=device)
        num_fields = self.fields.num_fields
        self.senet = SENet(num_fields, reduction_ratio)
        self.bilinear = BilinearInteraction(num_fields, embedding_dim, bilinear_type)
        self.bilinear_senet = BilinearInteraction(num_fields, embedding_dim, bilinear_type)
        self.mlp = MLP(2 * self.bilinear.pairs.num_pairs * embedding_dim, hidden_units, dropout_rates, activation)
        self.head = nn.Linear(self.mlp.out_features, 1)

    def senet_weights(self, batch: Batch) -> torch.Tensor:
        """SENET's weight of every field: ``[B, F']``."""
        return self.senet.weights(self.fields(batch))

    def forward(self, batch: Batch) -> ModelOutput:
        fields = self.fields(batch)  # [B, F', D]
        interactions = torch.cat([self.bilinear(fields), self.bilinear_senet(self.senet(fields))], dim=1)
        deep = self.head(self.mlp(interactions.flatten(1))).squeeze(1)
        return ModelOutput(self.first_order(batch) + deep)
