"""NARM (Li et al., 2017): neural attentive session-based recommendation."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.recall import RecallOutput
from bigrec.models.recall.sequential import EmbeddedHistory, SequentialRecallModel
from bigrec.models.registry import register_model
from bigrec.models.sequence import last_state


class LocalEncoder(nn.Module):
    """NARM's attention over the GRU states: ``c_l = sum_j alpha_j h_j``, ``alpha_j = v^T sigmoid(A1 h_t + A2 h_j)``.

    The weights are not normalised (as in the paper); states a query may not see
    get weight 0.

    Args:
        hidden_size: H, the GRU state size; attention_size: A.

    Shapes: ``forward(queries [B, Q, H], states [B, L, H], visible [B, Q, L] bool)`` ->
    ``(context [B, Q, H], weights [B, Q, L])``.

    Example::

        encoder = LocalEncoder(8, 4)
        context, weights = encoder(torch.randn(2, 1, 8), torch.randn(2, 5, 8), torch.ones(2, 1, 5, dtype=torch.bool))
    """

    def __init__(self, hidden_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, attention_size, bias=False)  # A1
        self.key = nn.Linear(hidden_size, attention_size, bias=False)  # A2
        self.energy = nn.Linear(attention_size, 1, bias=False)  # v

    def forward(self, queries: torch.Tensor, states: torch.Tensor, visible: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.sigmoid(self.query(queries)[:, :, None, :] + self.key(states)[:, None, :, :])  # [B, Q, L, A]
        weights = self.energy(hidden).squeeze(-1) * visible.to(states.dtype)  # [B, Q, L]
        return torch.matmul(weights, states), weights


@register_model("narm")
class NARM(SequentialRecallModel):
    """A GRU global encoder (its last state) and an attention local encoder over all its states.

    ``c = [h_t ; sum_j alpha_tj h_j]`` (``2H``) is mapped to the item space by the
    bilinear decoder ``B`` (``E x 2H``): an item's score is ``e_i^T B c``, with ``e_i``
    the rows of the item table that the history reads. Histories are padded at the
    end; the GRU runs forward only and attention sees real positions only, so
    padding never reaches a state or a weight. With ``all_positions`` (the default)
    training computes ``c`` for every position ``t`` (attention over states ``0..t``)
    and scores it against the next item in one pass (``train_sequences.parquet``).

    Args:
        schema: data schema (leave-last-out recall layout).
        item_num: number of item ids (default: the item table's size; must match it).
        hidden_size: H, the GRU state size.
        attention_size: A, the width of the attention's hidden layer.
        dropout_rate: dropout on the item embeddings and on ``c`` (before the decoder).
        embedding_dim: E, the item vector size (divisible by 4 for fbgemm).
        local_encoder: ablation: false drops the attention, ``c = h_t`` (NARM's global encoder alone).
        all_positions: train every position in one pass (else the last position of each per-prefix row).
        item_feature, history_feature: column names.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallOutput(user [B, E], target [B, E], candidates [M, E])``;
    training with ``all_positions``: ``user [B, L, E]``, ``target [B, L, E]``, ``position_targets [B, L]``.

    Example::

        model = NARM(schema, hidden_size=64, attention_size=64, dropout_rate=0.25, embedding_dim=64)
        vectors = model.eval()(batch, torch.arange(10))
        scores = vectors.user @ vectors.candidates.T  # [B, 10]
    """

    def __init__(self, schema: Schema, item_num: Optional[int] = None, hidden_size: int = 64,
                 attention_size: int = 64, dropout_rate: float = 0.25, embedding_dim: int = 64,
                 local_encoder: bool = True, all_positions: bool = True, item_feature: str = "item_id",
                 history_feature: str = "hist_item_ids", device: Optional[torch.device] = None) -> None:
        super().__init__("narm", schema, item_num, embedding_dim, all_positions, item_feature, history_feature,
                         device)
        if hidden_size < 1 or attention_size < 1:
            raise ConfigError(f"narm: hidden_size={hidden_size} and attention_size={attention_size} must be >= 1")
        self.dropout = nn.Dropout(dropout_rate)
        self.gru = nn.GRU(embedding_dim, hidden_size, batch_first=True)
        self.local = LocalEncoder(hidden_size, attention_size) if local_encoder else None
        self.decoder = nn.Linear(hidden_size * (2 if local_encoder else 1), embedding_dim, bias=False)  # B
        length = schema[history_feature].max_len
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool))  # [t, j]: j <= t
        self.register_buffer("causal", causal, persistent=False)

    def encode(self, history: EmbeddedHistory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """GRU states ``[B, L, H]``, the queries ``[B, Q, H]`` and what each query sees ``[B, Q, L]``.

        One-pass training queries every position (``Q = L``, causal); otherwise the
        last real position (``Q = 1``).
        """
        states, _ = self.gru(self.dropout(history.items))  # [B, L, H]
        mask = history.mask
        if self.trains_all_positions():
            return states, states, self.causal[None, :, :] & mask[:, None, :]
        return states, last_state(states, mask)[:, None, :], mask[:, None, :]

    def attention(self, batch: Batch) -> torch.Tensor:
        """``[B, L]`` the local encoder's weights of the last position's query (inspection)."""
        no_candidates = torch.zeros(0, dtype=torch.int64, device=self.decoder.weight.device)
        states, queries, visible = self.encode(self.embed(batch, no_candidates))
        return self.local(queries, states, visible)[1][:, 0]

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:
        history = self.embed(batch, candidate_ids)
        states, queries, visible = self.encode(history)
        context = queries
        if self.local is not None:
            context = torch.cat([queries, self.local(queries, states, visible)[0]], dim=-1)  # [B, Q, 2H]
        user = self.decoder(self.dropout(context))  # [B, Q, E]
        if self.trains_all_positions():
            return self.sequence_output(batch, user, history)
        return RecallOutput(user[:, 0], history.target, history.candidates)
