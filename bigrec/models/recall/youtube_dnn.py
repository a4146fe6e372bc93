"""YouTube DNN candidate generation (Covington et al., 2016)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.embeddings import EmbeddedFeatures, FeatureEmbeddings
from bigrec.models.recall import RecallModel, RecallOutput
from bigrec.models.recall.dssm import _tower
from bigrec.models.recall.towers import history_of, side_features
from bigrec.models.registry import register_model
from bigrec.models.sequence import keep_recent, masked_mean


@register_model("youtube_dnn")
class YouTubeDNN(RecallModel):
    """Mean-pooled watch history + user features, an MLP to the user vector, softmax over the item corpus.

    The most recent ``max_seq_len`` items of the history (the sequence feature of
    ``user_features`` that reads the item table) are averaged over real positions
    (padding never counts); other user features are pooled embeddings. By default
    the user tower reads the schema's user-side features and the item side its
    item-side ones, so no item feature reaches the user vector. Their
    concatenation goes through a ReLU MLP (``hidden_units``, the last layer
    linear) whose output ``[B, H]`` is the user vector. Items are the output embeddings of the
    softmax: the item table's row (shared with the history) and the embeddings of
    the other ``item_features`` (from the batch for targets, from the item catalogue
    for candidates), concatenated and mapped linearly to ``H`` (no map for the item
    id alone with ``embedding_dim == H``). Trained with sampled softmax over
    the corpus (``task.options.loss: sampled``: in-batch and sampled negatives,
    log-Q corrected), or full softmax on small corpora.

    Args:
        schema: data schema (leave-last-out recall layout).
        user_features: user tower inputs (default: the schema's user-side id features).
        item_features: item inputs: the item id plus item-side id features (default: the schema's
            item-side id features).
        hidden_units: MLP sizes; the last is the user-vector dim H.
        embedding_dim: D of every table (divisible by 4).
        max_seq_len: most recent history items averaged.
        dropout_rates: MLP dropout (one rate or one per layer).
        item_feature: the target item id column.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallOutput(user [B, H], target [B, H], candidates [M, H])``.

    Example::

        model = YouTubeDNN(schema, user_features=["user_id", "hist_item_ids"], hidden_units=[64, 32])
        vectors = model(batch, torch.arange(10))
    """

    def __init__(self, schema: Schema, user_features: Optional[Sequence[str]] = None,
                 item_features: Optional[Sequence[str]] = None, hidden_units: Sequence[int] = (128, 64),
                 embedding_dim: int = 32, max_seq_len: int = 50, dropout_rates: float | Sequence[float] = 0.0,
                 item_feature: str = "item_id", device: Optional[torch.device] = None) -> None:
        user_features = (list(user_features) if user_features is not None
                         else side_features(schema, "user", "youtube_dnn", "user_features"))
        item_features = (list(item_features) if item_features is not None
                         else side_features(schema, "item", "youtube_dnn", "item_features"))
        leaks = [n for n in user_features if n in item_features or (n in schema and schema[n].side == "item")]
        if leaks:
            raise ConfigError(f"youtube_dnn: {leaks} are item-side features; the user tower reads user features only")
        super().__init__(schema, item_feature, history_of(schema, user_features, item_feature), item_features)
        self.resolve_features(user_features)
        if any(schema[n].kind == "dense" for n in user_features):
            raise ConfigError("youtube_dnn: dense user features are not supported; use id or sequence features")
        if int(max_seq_len) < 1 or embedding_dim % 4 or not hidden_units:
            raise ConfigError(f"youtube_dnn: need max_seq_len >= 1 (got {max_seq_len}), embedding_dim divisible "
                              f"by 4 (got {embedding_dim}) and at least one hidden unit")
        self.user_features = user_features
        self.max_seq_len = int(max_seq_len)
        self.sequence_names = [n for n in user_features if schema[n].kind == "sequence"]
        self.embeddings = FeatureEmbeddings(self.lookup_schema,
                                            user_features + self.item_features + self.candidates.keys,
                                            embedding_dim=embedding_dim, device=device)
        self.mlp = _tower(len(user_features) * embedding_dim, hidden_units, dropout_rates, "relu")
        out, width = int(list(hidden_units)[-1]), len(self.item_features) * embedding_dim
        self.item_projection = nn.Linear(width, out, bias=False) if (out, width) != (embedding_dim,) * 2 \
            else nn.Identity()

    def _item_vectors(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Per item feature ``[n, D]`` -> ``[n, H]`` output embeddings of the softmax."""
        return self.item_projection(torch.cat(inputs, dim=1))

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self._item_vectors(self.item_inputs(ids))

    def user_vector(self, embedded: EmbeddedFeatures) -> torch.Tensor:
        """``[B, H]``: the MLP over [mean of the recent history, pooled user features]."""
        fields = []
        for name in self.user_features:
            if name in self.sequence_names:
                recent, mask = keep_recent(embedded.sequences[name], embedded.masks[name], self.max_seq_len)
                fields.append(masked_mean(recent, mask))
            else:
                fields.append(embedded.pooled[name])
        return self.mlp(torch.cat(fields, dim=1))

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:
        inputs = self.candidates.embed(self.embeddings, batch, candidate_ids)
        return RecallOutput(self.user_vector(inputs.batch), self._item_vectors(inputs.targets),
                            self._item_vectors(inputs.candidates))
