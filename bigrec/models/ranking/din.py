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
from bigrec.errors import ConfigError
from bigrec.features import Schema, SequenceFeature
from bigrec.models.base import RecModel
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.layers import MLP
from bigrec.models.inputs import DenseColumns, id_feature_names
from bigrec.models.registry import register_model


class DINAttention(nn.Module):
    """Activation unit: un-normalised, masked attention pooling of a history.

    Args:
        dim: E, width of query and keys.
        attention_units: hidden sizes of the scoring MLP (a 1-unit output is added).
        activation: activation of the scoring MLP (``dice`` included).

    Shapes: ``forward(query [B, E], keys [B, L, E], mask [B, L] bool)`` ->
    ``(interest [B, E], weights [B, L])``; ``weights`` are 0 where ``mask`` is False.

    Example::

        unit = DINAttention(8, [16])
        interest, weights = unit(torch.randn(2, 8), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool))
    """

    def __init__(self, dim: int, attention_units: Sequence[int], activation: str = "dice",
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.mlp = MLP(4 * dim, attention_units, activation=activation, device=device)
        self.score = nn.Linear(self.mlp.out_features, 1, device=device)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        q = query.unsqueeze(1).expand_as(keys)  # [B, L, E]
        features = torch.cat([q, keys, q - keys, q * keys], dim=-1)  # [B, L, 4E]
        # flattened to [B*L, 4E] so channel-wise activations (prelu, dice) see [N, C]
        scores = self.score(self.mlp(features.flatten(0, 1))).reshape(mask.shape)  # [B, L]
        weights = scores.masked_fill(~mask, 0.0)
        return (weights.unsqueeze(-1) * keys).sum(dim=1), weights


def _pair_behaviors(schema: Schema, features: list[str],
                    behavior_features: Mapping[str, str] | Sequence[str]) -> list[tuple[str, str]]:
    """``[(candidate, history), ...]`` checked against the schema."""
    if isinstance(behavior_features, Mapping):
        pairs = [(str(c), str(h)) for c, h in behavior_features.items()]
    else:
        pairs = []
        for history in behavior_features:
            table = schema[history].table
            candidates = [n for n in features if schema[n].kind != "sequence" and schema[n].table == table]
            if len(candidates) != 1:
                raise ConfigError(f"DIN: history '{history}' (table '{table}') needs exactly one candidate feature "
                                  f"reading the same table among features {features}, found {candidates}; "
                                  "give behavior_features as {candidate: history}")
            pairs.append((candidates[0], history))
    if not pairs:
        raise ConfigError("DIN: behavior_features is empty")
    for candidate, history in pairs:
        if not isinstance(schema[history], SequenceFeature):
            raise ConfigError(f"DIN: behaviour feature '{history}' is not a sequence feature")
        if schema[candidate].kind == "sequence" or schema[candidate].kind == "dense":
            raise ConfigError(f"DIN: candidate feature '{candidate}' must be a single id feature")
        if schema[candidate].table != schema[history].table:
            raise ConfigError(f"DIN: candidate '{candidate}' (table '{schema[candidate].table}') and history "
                              f"'{history}' (table '{schema[history].table}') must share one table")
        if candidate not in features:
            raise ConfigError(f"DIN: candidate feature '{candidate}' is not among features {features}")
    lengths = {schema[h].max_len for _, h in pairs}
    if len(lengths) > 1:
        raise ConfigError(f"DIN: aligned histories {[h for _, h in pairs]} must have one max_len, got {lengths}")
    return pairs


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

    Shapes: ``forward(batch) -> [B]`` logits; ``attention(batch) -> [B, L]`` weights.

    Example::

        model = DIN(schema, behavior_features={"item_id": "hist_item_ids"}, embedding_dim=8)
        logits = model(batch)  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 behavior_features: Mapping[str, str] | Sequence[str] = ("hist_item_ids",),
                 attention_units: Sequence[int] = (64, 16), hidden_units: Sequence[int] = (200, 80),
                 activation: str = "dice", dropout_rates: float | Sequence[float] = 0.0,
                 embedding_dim: int = 16, device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        if isinstance(behavior_features, Mapping):
            self.resolve_features(list(behavior_features) + list(behavior_features.values()))
        else:
            self.resolve_features(list(behavior_features))
        self.pairs = _pair_behaviors(schema, names, behavior_features)
        self.id_names = id_feature_names(schema, names)
        self.dense = DenseColumns(schema, names)
        histories = [h for _, h in self.pairs]
        self.embeddings = FeatureEmbeddings(schema, self.id_names + histories, embedding_dim, device=device)
        interest_dim = len(self.pairs) * embedding_dim
        self.attention_unit = DINAttention(interest_dim, attention_units, activation, device=device)
        in_dim = len(self.id_names) * embedding_dim + interest_dim + self.dense.out_features
        self.mlp = MLP(in_dim, hidden_units, dropout_rates, activation, device=device)
        self.head = nn.Linear(self.mlp.out_features, 1, device=device)

    def _interest(self, batch: Batch):
        embedded = self.embeddings(batch)
        query = torch.cat([embedded.pooled[c] for c, _ in self.pairs], dim=-1)  # [B, P*D]
        keys = torch.cat([embedded.sequences[h] for _, h in self.pairs], dim=-1)  # [B, L, P*D]
        mask = embedded.masks[self.pairs[0][1]]  # [B, L]
        interest, weights = self.attention_unit(query, keys, mask)
        return embedded, interest, weights

    def attention(self, batch: Batch) -> torch.Tensor:
        """Attention weights ``[B, L]`` over the history (0 on padding)."""
        return self._interest(batch)[2]

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded, interest, _ = self._interest(batch)
        parts = [embedded.pooled[n] for n in self.id_names] + [interest, self.dense(batch)]
        return self.head(self.mlp(torch.cat(parts, dim=-1))).squeeze(-1)
