"""DIN: Deep Interest Network (Zhou et al., KDD 2018).

The user's behaviour history is pooled with weights that depend on the
candidate item ("local activation"): an attention MLP scores every history
position from ``[q, k, q - k, q * k]`` (q: candidate embedding, k: history
embedding). As in the paper the scores are **not** softmax-normalised: the
interest vector is ``sum_l score_l * k_l`` over the real (unpadded) positions,
so the intensity of a user's interest (how many matching behaviours) survives.
Padding positions get a weight of exactly zero and an empty history gives a
zero interest vector.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.inputs import DenseColumns, id_feature_names
from bigrec.models.layers import MLP
from bigrec.models.output import ModelOutput
from bigrec.models.sequence import TargetAttention, behavior_tensors, history_length, keep_recent, pair_behaviors
from bigrec.models.registry import register_model


@register_model("din")
class DIN(RecModel):
    """Deep Interest Network over the schema's features and one behaviour history.

    Several behaviour pairs (e.g. item and category) are aligned position by
    position: their embeddings are concatenated into one query and one key per
    position; the mask of the first history is used.

    Args:
        schema: data schema.
        features: non-sequence features fed to the MLP (default: all of them); the
            candidates of ``behavior_features`` must be among them.
        behavior_features: ``{candidate: history}`` (e.g. ``{item_id: hist_item_ids,
            item_cat: hist_cat_ids}``) or a list of histories, each paired with the
            one feature of ``features`` reading the same table.
        attention_units: hidden sizes of the attention MLP.
        hidden_units: hidden sizes of the output MLP (a 1-unit layer is added).
        activation: activation of both MLPs (``dice`` as in the paper, ``prelu``, ``relu``...).
        dropout_rates: dropout of the output MLP, one rate or one per layer.
        embedding_dim: D of every table.
        max_len: history positions used, the most recent kept (default: the history's ``max_len``).

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``; ``attention(batch) -> [B, m]`` weights (``m = max_len``).

    Example::

        model = DIN(schema, behavior_features={"item_id": "hist_item_ids"}, embedding_dim=8)
        logits = model(batch).logits  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 behavior_features: Mapping[str, str] | Sequence[str] = ("hist_item_ids",),
                 attention_units: Sequence[int] = (64, 16), hidden_units: Sequence[int] = (200, 80),
                 activation: str = "dice", dropout_rates: float | Sequence[float] = 0.0,
                 embedding_dim: int = 16, max_len: Optional[int] = None,
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        self.pairs = pair_behaviors(schema, names, behavior_features, "DIN")  # checks them against the schema
        self.max_len = history_length(schema, self.pairs, max_len, "DIN")
        self.id_names = id_feature_names(schema, names)
        self.dense = DenseColumns(schema, names)
        histories = [h for _, h in self.pairs]
        self.embeddings = FeatureEmbeddings(schema, self.id_names + histories, embedding_dim, device=device)
        interest_dim = len(self.pairs) * embedding_dim
        self.attention_unit = TargetAttention(interest_dim, attention_units, activation)
        in_dim = len(self.id_names) * embedding_dim + interest_dim + self.dense.out_features
        self.mlp = MLP(in_dim, hidden_units, dropout_rates, activation)
        self.head = nn.Linear(self.mlp.out_features, 1)

    def _interest(self, batch: Batch):
        embedded = self.embeddings(batch)
        query, keys, mask = behavior_tensors(embedded, self.pairs)  # [B, P*D], [B, L, P*D], [B, L]
        keys, mask = keep_recent(keys, mask, self.max_len)  # [B, m, P*D], [B, m]
        interest, weights = self.attention_unit(query, keys, mask)
        return embedded, interest, weights

    def attention(self, batch: Batch) -> torch.Tensor:
        """Attention weights ``[B, m]`` over the kept history (0 on padding)."""
        return self._interest(batch)[2]

    def forward(self, batch: Batch) -> ModelOutput:
        embedded, interest, _ = self._interest(batch)
        parts = [embedded.pooled[n] for n in self.id_names] + [interest, self.dense(batch)]
        return ModelOutput(self.head(self.mlp(torch.cat(parts, dim=-1))).squeeze(-1))
