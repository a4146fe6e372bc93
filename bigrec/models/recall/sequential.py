"""Sequential recall models: the user is their item history, read by a sequence encoder.

:class:`SequentialRecallModel` is what SASRec, GRU4Rec and NARM share: one item
table (a TorchRec ``EmbeddingCollection``) that the history, the target and the
candidates read, so the output layer is the input table, and *one-pass
sequence training*. With ``all_positions`` a training batch holds one row per
sequence window (``train_sequences.parquet``, :mod:`bigrec.data.sequences`); the
encoder's state after every history position, which sees only the items up to
that position, is scored against the item that follows it, so one forward pass
trains every position instead of one row per prefix recomputing the encoder. When
the layout's windows overlap (``metadata["sequences"]["stride"]`` < the window),
only each row's last ``stride`` positions are trained; the earlier ones are
context only.
Evaluation, export and last-position training read the state at the last real
position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from bigrec.batch import Batch
from bigrec.data.sequences import window_stride
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.embeddings import FeatureEmbeddings
from bigrec.models.recall import RecallModel, RecallOutput
from bigrec.models.sequence import last_state, next_item_targets


@dataclass
class EmbeddedHistory:
    """A batch's item vectors: ``items [B, L, E]``, ``mask [B, L]``, ``target [B, E]``, ``candidates [M, E]``."""

    items: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    candidates: torch.Tensor


class SequentialRecallModel(RecallModel):
    """Base class of recall models over the item history (see the module docstring).

    Args:
        model: the registered name (for error messages).
        schema: data schema (leave-last-out recall layout).
        item_num: number of item ids of the reference signature; the item table sets it,
            so a given value must match the table.
        embedding_dim: E, the item vector size (divisible by 4 for fbgemm).
        all_positions: train every history position in one pass.
        item_feature, history_feature: the target and history columns (one table).
        device: ``meta`` to defer the item table's allocation to sharding.
    """

    def __init__(self, model: str, schema: Schema, item_num: Optional[int], embedding_dim: int,
                 all_positions: bool, item_feature: str, history_feature: str,
                 device: Optional[torch.device]) -> None:
        super().__init__(schema, item_feature, history_feature)
        if item_num is not None and int(item_num) != self.num_items:
            raise ConfigError(f"{model}: item_num={item_num} but the item table '{schema[item_feature].table}' has "
                              f"{self.num_items} rows; drop item_num or fix the schema")
        if embedding_dim < 4 or embedding_dim % 4:
            raise ConfigError(f"{model}: the item vector size {embedding_dim} must be a positive multiple of 4")
        self.all_positions = bool(all_positions)
        self.window_targets = window_stride(schema)  # trained positions per window row (None: all)
        self.embeddings = FeatureEmbeddings(self.lookup_schema, [item_feature, history_feature] + self.candidates.keys,
                                            embedding_dim=embedding_dim, device=device)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self.item_inputs(ids)[0]

    def embed(self, batch: Batch, candidate_ids: torch.Tensor) -> EmbeddedHistory:
        """Look the history, the target and ``candidate_ids [M]`` up in one call of the item table."""
        inputs = self.candidates.embed(self.embeddings, batch, candidate_ids)
        history = self.history_feature
        return EmbeddedHistory(inputs.batch.sequences[history], inputs.batch.masks[history], inputs.targets[0],
                               inputs.candidates[0])

    def trains_all_positions(self) -> bool:
        """Whether this forward trains every history position (``all_positions`` in training mode)."""
        return self.training and self.all_positions

    def sequence_output(self, batch: Batch, states: torch.Tensor, history: EmbeddedHistory) -> RecallOutput:
        """The output from the user vector after every position.

        In one-pass training every real position is a training row
        (``position_targets``, :func:`~bigrec.models.sequence.next_item_targets`),
        the context-only positions of overlapping windows excepted;
        otherwise the user vector is the state at the last real position.

        Args:
            states: ``[B, L, E]`` user vector after each position (causal: position
                ``t`` has seen items ``0..t`` only), aligned with ``history.items``.
        """
        if self.trains_all_positions():
            ids = batch.sequence_features[self.history_feature].to_padded_dense(
                desired_length=history.mask.shape[1], padding_value=-1)
            next_ids, next_items = next_item_targets(ids, history.items, history.mask, self.target_ids(batch),
                                                     history.target, self.window_targets)
            return RecallOutput(states, next_items, history.candidates, position_targets=next_ids)
        return RecallOutput(last_state(states, history.mask), history.target, history.candidates)
