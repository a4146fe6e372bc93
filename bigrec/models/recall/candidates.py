"""Item lookups through a recall model's (possibly sharded) item table.

A recall model scores users against *candidate* items: the whole item table
(full softmax, full-ranking evaluation, export) or sampled negatives. The item
table lives in a TorchRec ``EmbeddingCollection`` that
``DistributedModelParallel`` may shard row-wise or table-wise, so candidates are
looked up through that same collection, never by reading its weight directly.

The collection gets one extra feature, :data:`CANDIDATES`, reading the item
table. :func:`append_candidates` adds that key to a batch's
``sequence_features`` (all candidate ids in row 0, other rows empty), so one
call of the collection returns the batch's histories/targets *and* the
candidates' rows; :func:`lookup_features` builds the same keys with only
candidates, for lookups outside a training step (evaluation, export).
A sharded collection fixes its input key order on its first call, so both
build the keys in the same order: the schema's sequence keys, then
:data:`CANDIDATES`.
"""

from __future__ import annotations

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema, SparseFeature

CANDIDATES = "candidate_item_ids"


def with_candidates(schema: Schema, item_feature: str) -> Schema:
    """``schema`` plus the :data:`CANDIDATES` feature on ``item_feature``'s table.

    The item table must live in an ``EmbeddingCollection`` (a sequence feature
    such as ``hist_item_ids`` reads it), which is the recall layout.
    """
    item = schema[item_feature]
    if item.kind == "dense":
        raise ConfigError(f"item feature '{item_feature}' is dense; a recall model needs an item id feature")
    if not schema.in_sequence_table(item_feature):
        raise ConfigError(f"item feature '{item_feature}' reads table '{item.table}', which no sequence feature "
                          f"reads; recall models need the item table shared with a history feature "
                          f"(the leave-last-out recall layout)")
    # single-valued: FeatureEmbeddings returns the looked-up rows as they come, [M, D]
    candidates = SparseFeature(CANDIDATES, item.vocab_size, item.embedding_dim, table=item.table)
    return Schema(list(schema.features) + [candidates], labels=list(schema.labels), metadata=dict(schema.metadata))


@torch.fx.wrap
def append_candidates(features: KeyedJaggedTensor, ids: torch.Tensor) -> KeyedJaggedTensor:
    """``features`` plus key :data:`CANDIDATES` holding ``ids`` ``[M]`` in row 0."""
    stride = features.stride()
    lengths = features.lengths()
    extra = torch.zeros(stride, dtype=lengths.dtype, device=lengths.device)
    extra[0] = ids.numel()
    return KeyedJaggedTensor(keys=features.keys() + [CANDIDATES],
                             values=torch.cat([features.values(), ids.to(features.values().dtype)]),
                             lengths=torch.cat([lengths, extra]), stride=stride)


def lookup_features(sequence_keys: list[str], ids: torch.Tensor) -> KeyedJaggedTensor:
    """A one-row KJT with ``sequence_keys`` empty and :data:`CANDIDATES` = ``ids``."""
    lengths = torch.zeros(len(sequence_keys) + 1, dtype=torch.int32, device=ids.device)
    lengths[-1] = ids.numel()
    return KeyedJaggedTensor(keys=list(sequence_keys) + [CANDIDATES], values=ids.long(), lengths=lengths,
                             stride=1)


def with_candidate_lookup(batch: Batch, ids: torch.Tensor) -> Batch:
    """``batch`` whose ``sequence_features`` also carry :data:`CANDIDATES` = ``ids``.

    Models call this (not :func:`append_candidates` directly): ``torch.fx.wrap``
    only patches calls made from the module that declares the wrapped function.
    """
    return Batch(batch.dense, batch.sparse_features, append_candidates(batch.sequence_features, ids), batch.labels)
