"""SASRec (Kang & McAuley, 2018): self-attentive sequential recommendation."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.recall import RecallOutput
from bigrec.models.recall.sequential import SequentialRecallModel
from bigrec.models.registry import register_model
from bigrec.models.sequence import causal_mean, keep_recent, last_state


@register_model("sasrec")
class SASRec(SequentialRecallModel):
    """Causal self-attention over the item history; the next item scored by ``u · e_item``.

    Item embeddings come from the item table that ``item_feature`` (the target)
    and ``history_feature`` share, so the output layer reads the same (sharded)
    table as the input. Histories are oldest first, padded at the end; the most
    recent ``max_len`` items are kept, positional embeddings added, and the
    state at the last real position (``length - 1``) is the user vector. An
    empty history reads position 0 (a learned "no history" state).

    With ``all_positions`` (the default) training reads one row per sequence
    window (``train_sequences.parquet``) and every position's state, which the
    causal mask keeps from seeing later items, is scored against the next item,
    all in one forward pass (:mod:`bigrec.models.recall.sequential`).

    Args:
        schema: data schema (leave-last-out recall layout).
        item_num: number of item ids (default: the item table's size; must match it).
        max_len: history positions attended to (most recent kept).
        num_heads, num_layers: transformer shape.
        hidden_size: D, the item embedding and model width (divisible by 4 for fbgemm).
        dropout_rate: dropout on embeddings and inside the transformer.
        order_free: ablation: replace attention by the masked mean of the
            history (same embeddings), the order-free baseline.
        all_positions: train every position of a sequence in one pass (needs
            ``max_len`` >= the history feature's ``max_len``, the window length);
            false: the last position of each per-prefix row.
        item_feature, history_feature: column names.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallOutput(user [B, D], target [B, D], candidates [M, D])``;
    training with ``all_positions``: ``user [B, m, D]``, ``target [B, m, D]``, ``position_targets [B, m]``.

    Example::

        model = SASRec(schema, max_len=50, num_heads=2, num_layers=2, hidden_size=64)
        vectors = model(batch, torch.arange(10))
        scores = vectors.user @ vectors.candidates.T  # [B, 10]
    """

    def __init__(self, schema: Schema, item_num: Optional[int] = None, max_len: int = 50, num_heads: int = 2,
                 num_layers: int = 2, hidden_size: int = 64, dropout_rate: float = 0.2, order_free: bool = False,
                 all_positions: bool = True, item_feature: str = "item_id", history_feature: str = "hist_item_ids",
                 device: Optional[torch.device] = None) -> None:
        super().__init__("sasrec", schema, item_num, hidden_size, all_positions, item_feature, history_feature,
                         device)
        if hidden_size % num_heads:
            raise ConfigError(f"sasrec: hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
        if max_len < 1:
            raise ConfigError(f"sasrec: max_len must be >= 1, got {max_len}")
        window = schema[history_feature].max_len
        if all_positions and max_len < window:
            raise ConfigError(f"sasrec: all_positions trains windows of {window} items ({history_feature}.max_len) "
                              f"in one pass; set max_len >= {window} or all_positions: false")
        self.max_len = int(max_len)
        self.order_free = bool(order_free)
        self.positions = nn.Embedding(self.max_len, hidden_size)
        self.dropout = nn.Dropout(dropout_rate)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, dim_feedforward=hidden_size,
                                           dropout=dropout_rate, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        self.scale = float(hidden_size) ** 0.5
        causal = torch.triu(torch.ones(self.max_len, self.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)  # True = may not attend
        self.register_buffer("steps", torch.arange(self.max_len), persistent=False)

    def states(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, m, D]`` kept history + ``[B, m]`` mask -> ``[B, m, D]`` the state after each position."""
        if self.order_free:
            return causal_mean(items, mask)
        x = self.dropout(items * self.scale + self.positions(self.steps)[None, :, :])
        # position 0 stays visible so an empty history attends to something (no NaN rows)
        padding = ~(mask | (self.steps[None, :] == 0))
        return self.norm(self.encoder(x, mask=self.causal_mask, src_key_padding_mask=padding))

    def user_state(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` padded history + ``[B, L]`` mask -> ``[B, D]`` the user vector (last real position)."""
        items, mask = keep_recent(history, mask, self.max_len)
        return last_state(self.states(items, mask), mask)

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:
        history = self.embed(batch, candidate_ids)
        items, mask = keep_recent(history.items, history.mask, self.max_len)
        history = replace(history, items=items, mask=mask)
        return self.sequence_output(batch, self.states(items, mask), history)
