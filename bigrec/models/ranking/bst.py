"""BST: Behavior Sequence Transformer (Chen et al., Alibaba, DLP-KDD 2019).

The candidate is appended to the user's behaviour sequence and the whole
sequence goes through transformer encoder layers, so every behaviour is read in
the light of the candidate and of the other behaviours, *with their order*: each
token gets a learned position embedding. The history is right-aligned (the most
recent ``max_len`` behaviours kept, the most recent next to the candidate), so a
position embedding says how far back a behaviour lies, the paper's time-gap
position in units of behaviours. Padding is masked as a key in every attention
(it receives no weight) and its outputs are zeroed; the candidate token is
always present, so an empty history still gives every query a key. The
transformer outputs of all ``max_len + 1`` tokens are concatenated with the
other features and fed to an MLP (``pooling="flatten"``, the paper's choice);
``pooling="candidate"`` feeds only the candidate token's output and
``pooling="mean"`` the masked mean over the real tokens, an MLP input of ``H``
instead of ``(max_len + 1) H`` for small data where the flattened input overfits.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.inputs import DenseColumns, id_feature_names
from bigrec.models.layers import MLP
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model
from bigrec.models.sequence import behavior_tensors, history_length, keep_recent, masked_mean, pair_behaviors

POOLINGS = ("flatten", "candidate", "mean")


@register_model("bst")
class BST(RecModel):
    """Behaviour Sequence Transformer over the schema's features and one behaviour history.

    Args:
        schema: data schema.
        features: non-sequence features fed to the MLP (default: all of them); the
            candidates of ``behavior_features`` must be among them.
        behavior_features: ``{candidate: history}`` or a list of histories, each paired
            with the feature of ``features`` reading the same table (as in DIN); aligned
            histories are concatenated per position, then projected to ``hidden_size``.
        num_heads: attention heads (``hidden_size`` must be divisible by it).
        num_layers: transformer encoder layers.
        hidden_size: H, the transformer width.
        dropout_rate: dropout inside the transformer.
        hidden_units: hidden sizes of the output MLP (a 1-unit layer is added).
        activation: activation of the MLP (``prelu`` close to the paper's LeakyReLU).
        dropout_rates: dropout of the output MLP.
        feedforward_size: width of the transformer's feed-forward layer (default 4 H).
        embedding_dim: D of every table.
        max_len: history positions used, the most recent kept (default: the history's ``max_len``).
        pooling: how the transformer outputs reach the MLP: ``flatten`` (all ``m + 1`` tokens
            concatenated, the paper's), ``candidate`` (the candidate token's output) or ``mean``
            (masked mean over the real tokens).

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``; ``attention(batch) -> [B, heads, m + 1, m + 1]``
    the first layer's attention weights (keys on padding get 0; the candidate is token ``m``).

    Example::

        model = BST(schema, behavior_features={"item_id": "hist_item_ids"}, num_heads=2, num_layers=1,
                    hidden_size=32, dropout_rate=0.1)
        logits = model(batch).logits  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None,
                 behavior_features: Mapping[str, str] | Sequence[str] = ("hist_item_ids",), num_heads: int = 2,
                 num_layers: int = 1, hidden_size: int = 32, dropout_rate: float = 0.1,
                 hidden_units: Sequence[int] = (200, 80), activation: str = "prelu",
                 dropout_rates: float | Sequence[float] = 0.0, feedforward_size: Optional[int] = None,
                 embedding_dim: int = 16, max_len: Optional[int] = None, pooling: str = "flatten",
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        names = self.resolve_features(features)
        if num_heads < 1 or num_layers < 1 or hidden_size < 1 or hidden_size % num_heads:
            raise ConfigError(f"bst: need num_heads >= 1, num_layers >= 1 and hidden_size divisible by num_heads, "
                              f"got num_heads={num_heads}, num_layers={num_layers}, hidden_size={hidden_size}")
        if pooling not in POOLINGS:
            raise ConfigError(f"bst: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.pairs = pair_behaviors(schema, names, behavior_features, "bst")
        self.max_len = history_length(schema, self.pairs, max_len, "bst")
        self.id_names = id_feature_names(schema, names)
        self.dense = DenseColumns(schema, names)
        histories = [h for _, h in self.pairs]
        self.embeddings = FeatureEmbeddings(schema, self.id_names + histories, embedding_dim, device=device)
        width = sum(self.embeddings.output_dim(h) for h in histories)
        self.project = nn.Linear(width, hidden_size)
        self.positions = nn.Embedding(self.max_len + 1, hidden_size)
        nn.init.normal_(self.positions.weight, std=0.02)  # N(0, 1) would drown the behaviour embeddings
        layer = nn.TransformerEncoderLayer(hidden_size, num_heads, dim_feedforward=feedforward_size or 4 * hidden_size,
                                           dropout=dropout_rate, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        pooled = (self.max_len + 1) * hidden_size if pooling == "flatten" else hidden_size
        in_dim = sum(self.embeddings.output_dim(n) for n in self.id_names) + pooled + self.dense.out_features
        self.mlp = MLP(in_dim, hidden_units, dropout_rates, activation)
        self.head = nn.Linear(self.mlp.out_features, 1)
        self.register_buffer("steps", torch.arange(self.max_len + 1), persistent=False)

    def sequence(self, batch: Batch):
        """Embeddings, the candidate ``[B, E]``, the right-aligned history ``[B, m, E]`` and its mask ``[B, m]``."""
        embedded = self.embeddings(batch)
        candidate, history, mask = behavior_tensors(embedded, self.pairs)
        history, mask = keep_recent(history, mask, self.max_len, right_aligned=True)
        return embedded, candidate, history, mask

    def tokens(self, candidate: torch.Tensor, history: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The candidate appended to the history, projected, plus positions: ``[B, m + 1, H]``, mask ``[B, m + 1]``."""
        sequence = torch.cat([history, candidate[:, None, :]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        return self.project(sequence) + self.positions(self.steps)[None, :, :], mask

    def encode(self, candidate: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Transformer outputs ``[B, m + 1, H]``, zero on padding."""
        tokens, mask = self.tokens(candidate, history, mask)
        return self.encoder(tokens, src_key_padding_mask=~mask) * mask[:, :, None].to(tokens.dtype)

    def pool(self, encoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The MLP's view of the outputs ``[B, m + 1, H]`` (history mask ``[B, m]``): ``[B, (m + 1) H]`` or ``[B, H]``."""
        if self.pooling == "flatten":
            return encoded.flatten(1)
        if self.pooling == "candidate":
            return encoded[:, -1]
        return masked_mean(encoded, torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1))

    def attention(self, batch: Batch) -> torch.Tensor:
        """The first layer's attention weights ``[B, heads, m + 1, m + 1]`` (query, key)."""
        _, candidate, history, mask = self.sequence(batch)
        tokens, mask = self.tokens(candidate, history, mask)
        layer = self.encoder.layers[0]
        queries = layer.norm1(tokens) if layer.norm_first else tokens
        return layer.self_attn(queries, queries, queries, key_padding_mask=~mask, need_weights=True,
                               average_attn_weights=False)[1]

    def forward(self, batch: Batch) -> ModelOutput:
        embedded, candidate, history, mask = self.sequence(batch)
        encoded = self.pool(self.encode(candidate, history, mask), mask)  # [B, (m + 1) H] or [B, H]
        parts = [embedded.pooled[n] for n in self.id_names] + [encoded, self.dense(batch)]
        return ModelOutput(self.head(self.mlp(torch.cat(parts, dim=-1))).squeeze(-1))
