"""SASRec (Kang & McAuley, 2018): self-attentive sequential recommendation."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.recall import RecallModel, RecallVectors
from bigrec.models.registry import register_model
from bigrec.retrieval.candidates import CANDIDATES, with_candidate_lookup


@register_model("sasrec")
class SASRec(RecallModel):
    """Causal self-attention over the item history; the next item scored by ``u · e_item``.

    Item embeddings come from the item table that ``item_feature`` (the target)
    and ``history_feature`` share, so the output layer reads the same (sharded)
    table as the input. Histories are oldest first, padded at the end; the most
    recent ``max_len`` items are kept, positional embeddings added, and the
    state at the last real position (``length - 1``) is the user vector. An
    empty history reads position 0 (a learned "no history" state).

    Args:
        schema: data schema (leave-last-out recall layout).
        item_num: number of item ids (default: the item table's size; must match it).
        max_len: history positions attended to (most recent kept).
        num_heads, num_layers: transformer shape.
        hidden_size: D, the item embedding and model width (divisible by 4 for fbgemm).
        dropout_rate: dropout on embeddings and inside the transformer.
        order_free: ablation: replace attention by the masked mean of the
            history (same embeddings), the order-free baseline.
        item_feature, history_feature: column names.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallVectors(user [B, D], target [B, D], candidates [M, D])``.

    Example::

        model = SASRec(schema, max_len=50, num_heads=2, num_layers=2, hidden_size=64)
        vectors = model(batch, torch.arange(10))
        scores = vectors.user @ vectors.candidates.T  # [B, 10]
    """

    def __init__(self, schema: Schema, item_num: Optional[int] = None, max_len: int = 50, num_heads: int = 2,
                 num_layers: int = 2, hidden_size: int = 64, dropout_rate: float = 0.2, order_free: bool = False,
                 item_feature: str = "item_id", history_feature: str = "hist_item_ids",
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema, item_feature, history_feature)
        if item_num is not None and int(item_num) != self.num_items:
            raise ConfigError(f"sasrec: item_num={item_num} but the item table '{schema[item_feature].table}' has "
                              f"{self.num_items} rows; drop item_num or fix the schema")
        if hidden_size % 4 or hidden_size % num_heads:
            raise ConfigError(f"sasrec: hidden_size={hidden_size} must be divisible by 4 and by num_heads={num_heads}")
        if max_len < 1:
            raise ConfigError(f"sasrec: max_len must be >= 1, got {max_len}")
        self.max_len = int(max_len)
        self.order_free = bool(order_free)
        self.embeddings = FeatureEmbeddings(self.lookup_schema, [item_feature, history_feature, CANDIDATES],
                                            embedding_dim=hidden_size, device=device)
        # dense layers are built for real even under a meta device: DMP re-initialises meta
        # parameters only through ``reset_parameters``, which MultiheadAttention lacks
        dense_device = None if device is not None and torch.device(device).type == "meta" else device
        self.positions = nn.Embedding(self.max_len, hidden_size, device=dense_device)
        self.dropout = nn.Dropout(dropout_rate)
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, dim_feedforward=hidden_size,
                                           dropout=dropout_rate, batch_first=True, norm_first=True,
                                           device=dense_device)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size, device=dense_device)
        self.scale = float(hidden_size) ** 0.5
        causal = torch.triu(torch.ones(self.max_len, self.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)  # True = may not attend
        self.register_buffer("steps", torch.arange(self.max_len), persistent=False)

    def item_table(self) -> nn.Module:
        return self.embeddings.sequences[0]

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.item_rows(ids)

    def recent(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the most recent ``max_len`` items, left-aligned: ``[B, L, D], [B, L] -> [B, m, D], [B, m]``."""
        lengths = mask.sum(dim=1)
        kept = lengths.clamp(max=self.max_len)
        index = (lengths - kept)[:, None] + self.steps[None, :]  # [B, m]
        index = index.clamp(max=history.shape[1] - 1)
        items = history.gather(1, index[:, :, None].expand(-1, -1, history.shape[2]))
        recent_mask = self.steps[None, :] < kept[:, None]
        return items * recent_mask[:, :, None].to(items.dtype), recent_mask

    def user_state(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` padded history + ``[B, L]`` mask -> ``[B, D]`` user vector."""
        items, mask = self.recent(history, mask)
        if self.order_free:
            total = (items * mask[:, :, None].to(items.dtype)).sum(dim=1)
            return total / mask.sum(dim=1, keepdim=True).clamp(min=1).to(items.dtype)
        x = self.dropout(items * self.scale + self.positions(self.steps)[None, :, :])
        # position 0 stays visible so an empty history attends to something (no NaN rows)
        padding = ~(mask | (self.steps[None, :] == 0))
        hidden = self.norm(self.encoder(x, mask=self.causal_mask, src_key_padding_mask=padding))  # [B, m, D]
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        return hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.shape[2])).squeeze(1)

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallVectors:
        embedded = self.embeddings(with_candidate_lookup(batch, candidate_ids))
        user = self.user_state(embedded.sequences[self.history_feature], embedded.masks[self.history_feature])
        return RecallVectors(user, embedded.pooled[self.item_feature], embedded.pooled[CANDIDATES])
