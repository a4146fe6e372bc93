"""Recall (retrieval) models: SASRec (sequential) and DSSM (two-tower).

A recall model maps a batch to user vectors and looks items up as vectors in
the same space; the score of a (user, item) pair is their dot product. The
retrieval task (:mod:`bigrec.tasks.retrieval`) turns that into losses (full or sampled
softmax), full-ranking metrics, export and retrieval, so every recall model only
implements :class:`RecallModel`'s three methods.
"""

from __future__ import annotations

from typing import Optional

import torch

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.output import RecallOutput
from bigrec.models.recall.candidates import CANDIDATES, lookup_features, with_candidates


class RecallModel(RecModel):
    """Base class of recall models (``task = "retrieval"``).

    Subclasses set ``item_feature`` (the target item column, default ``item_id``),
    ``history_feature`` (the user's earlier items, excluded from full ranking;
    ``None`` for none), ``temperature`` and ``num_items``, and implement
    ``forward(batch, candidate_ids) -> RecallOutput`` and ``item_vectors(ids)``.
    """

    task = "retrieval"
    temperature: float = 1.0

    def __init__(self, schema: Schema, item_feature: str, history_feature: Optional[str]) -> None:
        super().__init__(schema)
        self.resolve_features([item_feature] + ([history_feature] if history_feature else []))
        if history_feature is not None and schema[history_feature].kind != "sequence":
            raise ConfigError(f"history feature '{history_feature}' is not a sequence feature of the schema")
        self.item_feature = item_feature
        self.history_feature = history_feature
        self.num_items = schema[item_feature].vocab_size
        self.lookup_schema = with_candidates(schema, item_feature)
        self.sequence_keys = schema.sequence_keys  # key order of Batch.sequence_features

    def target_ids(self, batch: Batch) -> torch.Tensor:
        """``[B]`` int64 target item of each row."""
        return batch.sequence_features[self.item_feature].values()

    def seen_ids(self, batch: Batch) -> torch.Tensor:
        """``[B, L]`` the user's earlier items (``-1`` = none), excluded in full ranking."""
        if self.history_feature is None:
            return torch.full((batch.batch_size, 1), -1, dtype=torch.int64)
        length = self.schema[self.history_feature].max_len
        return batch.sequence_features[self.history_feature].to_padded_dense(
            desired_length=length, padding_value=-1)

    def item_table(self) -> torch.nn.Module:
        """The ``EmbeddingCollection`` holding the item table (sharded or not)."""
        raise NotImplementedError

    def item_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """``[M] -> [M, D]`` raw item-table rows, looked up through the collection."""
        looked_up = self.item_table()(lookup_features(self.sequence_keys, ids))
        return looked_up[CANDIDATES].values()

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[M] -> [M, D]`` item vectors in the user-vector space."""
        raise NotImplementedError

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:  # pragma: no cover
        raise NotImplementedError


__all__ = ["RecallModel", "RecallOutput"]
