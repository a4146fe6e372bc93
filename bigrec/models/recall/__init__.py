"""Recall (retrieval) models: SASRec (sequential) and DSSM (two-tower).

A recall model maps a batch to user vectors and looks items up as vectors in
the same space; the score of a (user, item) pair is their dot product. The
retrieval task (:mod:`bigrec.tasks.retrieval`) turns that into losses (full or sampled
softmax), full-ranking metrics, export and retrieval, so every recall model only
implements :class:`RecallModel`'s three methods.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.output import RecallOutput
from bigrec.models.recall.candidates import CandidateLookup


class RecallModel(RecModel):
    """Base class of recall models (``task = "retrieval"``).

    Subclasses pass ``item_feature`` (the target item column, e.g. ``item_id``),
    ``history_feature`` (the user's earlier items on the item table, or ``None``)
    and ``item_features`` (what the item tower reads: the item id plus item-side
    features, default the item id alone), keep their tables in ``self.embeddings``
    (a ``FeatureEmbeddings`` built on :attr:`lookup_schema` over their features plus
    ``self.candidates.keys``), set ``temperature`` and implement
    ``forward(batch, candidate_ids) -> RecallOutput`` (looking candidates up with
    ``self.candidates.embed``) and ``item_vectors(ids)`` (from :meth:`item_inputs`).

    Full-ranking evaluation excludes each user's training items whatever the
    model reads (the retrieval task builds the seen sets from the data).
    """

    task = "retrieval"
    temperature: float = 1.0

    def __init__(self, schema: Schema, item_feature: str, history_feature: Optional[str],
                 item_features: Optional[Sequence[str]] = None) -> None:
        super().__init__(schema)
        item_features = [item_feature] if item_features is None else list(item_features)
        self.resolve_features([item_feature] + item_features + ([history_feature] if history_feature else []))
        if history_feature is not None and schema[history_feature].kind != "sequence":
            raise ConfigError(f"history feature '{history_feature}' is not a sequence feature of the schema")
        self.item_feature = item_feature
        self.history_feature = history_feature
        self.item_features = item_features
        self.num_items = schema[item_feature].vocab_size
        self.candidates = CandidateLookup(schema, item_feature, item_features)
        self.lookup_schema = self.candidates.schema

    @property
    def needs_catalogue(self) -> bool:
        """Whether the item tower reads item features beyond the id (candidates then need the catalogue)."""
        return self.candidates.needs_catalogue

    def attach_catalogue(self, catalogue: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Hand over the item catalogue: feature -> ``(values [T], lengths [num_items])`` jagged by item id.

        The retrieval task calls it with ``ItemCatalogue.features`` before sharding;
        the tensors become non-persistent buffers (moved with the model, never checkpointed).
        """
        self.candidates.attach(catalogue)

    def target_ids(self, batch: Batch) -> torch.Tensor:
        """``[B]`` int64 target item of each row."""
        return batch.sequence_features[self.item_feature].values()

    def item_inputs(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """``[M] -> [M, D]`` per item-tower feature, looked up through the (sharded) tables."""
        return self.candidates.embed_candidates(self.embeddings, ids)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[M] -> [M, D]`` item vectors in the user-vector space."""
        raise NotImplementedError

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:  # pragma: no cover
        raise NotImplementedError


__all__ = ["RecallModel", "RecallOutput"]
