"""AFM (Xiao et al., 2017): attention over the pairwise interactions of an FM."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.inputs import FieldInput, FirstOrder
from bigrec.models.layers import MLP, FieldPairs
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model


@register_model("afm")
class AFM(RecModel):
    """Attentional factorization machine.

    ``logit = first_order(batch) + p . sum_{i<j} a_ij * dropout(v_i * v_j)`` where
    ``v_i * v_j`` is the element-wise product of two fields' embeddings (one per
    field pair) and ``a = softmax_pairs(h . mlp(v_i * v_j))``: an attention network
    scores every pair's interaction vector and a softmax over the pairs weighs them,
    so the pairs that carry the signal dominate instead of all pairs counting
    equally. ``use_attention: false`` weighs every pair by 1 (with ``p`` = ones this
    is exactly an FM): the ablation the attention is measured against.

    Args:
        schema: data schema.
        features: feature names (default: every non-sequence feature); dense features
            enter the first order linearly and the pairs as one projected field.
        attention_units: the attention network's hidden size (or sizes, a list).
        embedding_dim: D of every field.
        dropout_rate: dropout on the pairwise interaction vectors.
        use_attention: false weighs every pair equally (FM with a projection).
        device: device of the embedding tables (``meta`` under sharding).

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``; ``attention(batch) -> [B, P]``
    with P = F' (F' - 1) / 2 pairs in ``torch.triu_indices`` order.

    Example::

        model = AFM(schema, attention_units=16, embedding_dim=16, dropout_rate=0.1)
        weights = model.attention(batch)  # [B, P], rows sum to 1
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 attention_units: int | Sequence[int] = 16, embedding_dim: int = 16, dropout_rate: float = 0.0,
                 use_attention: bool = True, device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        self.fields = FieldInput(schema, names, embedding_dim, device=device)
        self.first_order = FirstOrder(schema, names, device=device)
        self.pairs = FieldPairs(self.fields.num_fields)
        units = [attention_units] if isinstance(attention_units, int) else list(attention_units)
        self.attention_mlp = MLP(embedding_dim, units) if use_attention else None
        self.attention_score = nn.Linear(units[-1], 1, bias=False) if use_attention else None
        self.dropout = nn.Dropout(dropout_rate)
        self.projection = nn.Linear(embedding_dim, 1, bias=False)

    def _interactions(self, batch: Batch) -> torch.Tensor:
        """Element-wise products of every field pair: ``[B, P, D]``."""
        left, right = self.pairs(self.fields(batch))
        return left * right

    def _weights(self, interactions: torch.Tensor) -> torch.Tensor:
        """``[B, P, D] -> [B, P]``: softmax over pairs, or ones without attention."""
        if self.attention_mlp is None:
            return torch.ones_like(interactions[..., 0])
        return torch.softmax(self.attention_score(self.attention_mlp(interactions)).squeeze(-1), dim=1)

    def attention(self, batch: Batch) -> torch.Tensor:
        """The attention weight of every field pair: ``[B, P]``."""
        return self._weights(self._interactions(batch))

    def forward(self, batch: Batch) -> ModelOutput:
        interactions = self._interactions(batch)  # [B, P, D]
        pooled = (self._weights(interactions).unsqueeze(-1) * self.dropout(interactions)).sum(dim=1)  # [B, D]
        return ModelOutput(self.first_order(batch) + self.projection(pooled).squeeze(1))
