"""GRU4Rec (Hidasi et al., 2016; Hidasi & Karatzoglou, 2018): a GRU over the item sequence."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.recall import RecallOutput
from bigrec.models.recall.sequential import SequentialRecallModel
from bigrec.models.registry import register_model
from bigrec.models.sequence import causal_mean


@register_model("gru4rec")
class GRU4Rec(SequentialRecallModel):
    """A GRU reads the history; its state after each item, projected to the item space, scores the next item.

    The history and the target read one (sharded) item table; the user vector after
    position ``t`` is ``W h_t + b`` with ``h_t`` the top GRU layer's state, scored by
    its dot product with the item vectors (the table's rows). Histories are padded
    at the end, and a GRU runs forward only, so padding never reaches a real
    position's state; an empty history reads the state after one zero input.

    With ``all_positions`` (the default) training reads one row per sequence window
    (``train_sequences.parquet``) and scores every position's state against the next
    item in one pass, the sequence-parallel training of the paper. Losses come from
    the retrieval task: ``task.options.loss`` ``full`` (cross-entropy over all
    items), ``sampled``, or the paper's ``bpr_max`` / ``top1_max``.

    Args:
        schema: data schema (leave-last-out recall layout).
        item_num: number of item ids (default: the item table's size; must match it).
        hidden_size: GRU state size H.
        num_layers: stacked GRU layers.
        dropout_rate: dropout on the item embeddings, between GRU layers and on the states.
        embedding_dim: E, the item vector size (divisible by 4 for fbgemm).
        order_free: ablation: the mean of the items so far replaces the GRU's state
            (same output layer; no order).
        all_positions: train every position in one pass (else the last position of
            each per-prefix row).
        item_feature, history_feature: column names.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallOutput(user [B, E], target [B, E], candidates [M, E])``;
    training with ``all_positions``: ``user [B, L, E]``, ``target [B, L, E]``, ``position_targets [B, L]``.

    Example::

        model = GRU4Rec(schema, hidden_size=64, num_layers=1, dropout_rate=0.2, embedding_dim=64)
        vectors = model.eval()(batch, torch.arange(10))
        scores = vectors.user @ vectors.candidates.T  # [B, 10]
    """

    def __init__(self, schema: Schema, item_num: Optional[int] = None, hidden_size: int = 64, num_layers: int = 1,
                 dropout_rate: float = 0.2, embedding_dim: int = 64, order_free: bool = False,
                 all_positions: bool = True, item_feature: str = "item_id", history_feature: str = "hist_item_ids",
                 device: Optional[torch.device] = None) -> None:
        super().__init__("gru4rec", schema, item_num, embedding_dim, all_positions, item_feature, history_feature,
                         device)
        if hidden_size < 1 or num_layers < 1:
            raise ConfigError(f"gru4rec: hidden_size={hidden_size} and num_layers={num_layers} must be >= 1")
        self.order_free = bool(order_free)
        self.dropout = nn.Dropout(dropout_rate)
        self.gru = None if order_free else nn.GRU(embedding_dim, hidden_size, num_layers, batch_first=True,
                                                  dropout=dropout_rate if num_layers > 1 else 0.0)
        self.output = nn.Linear(embedding_dim if order_free else hidden_size, embedding_dim)

    def states(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, E]`` history + ``[B, L]`` mask -> ``[B, L, E]`` user vector after each position."""
        items = self.dropout(items)
        hidden = causal_mean(items, mask) if self.order_free else self.gru(items)[0]  # [B, L, H or E]
        return self.output(self.dropout(hidden))

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:
        history = self.embed(batch, candidate_ids)
        return self.sequence_output(batch, self.states(history.items, history.mask), history)
