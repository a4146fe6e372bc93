"""Candidate lookups through a recall model's (possibly sharded) tables: the item id and every item feature.

A recall model scores users against *candidate* items: the whole corpus (full
softmax, full-ranking evaluation, export) or sampled negatives. Its tables live
in TorchRec collections that ``DistributedModelParallel`` may shard, so a
candidate is looked up through those same collections, never by reading a
weight directly, and in the same collection call as the batch (one lookup per
collection per step, as the sharded modules and the train pipeline expect).

:class:`CandidateLookup` adds one *candidate key* per item-tower feature, on
that feature's table, to the KJT that holds the table:

* the item id (:data:`CANDIDATES`) and every item feature whose table lives in
  an ``EmbeddingCollection`` (``Batch.sequence_features``) ride in row 0 of that
  KJT, all candidates' ids one after the other; the collection returns their
  rows unpooled, and a multi-valued feature is pooled per candidate here;
* an item feature whose table lives in an ``EmbeddingBagCollection``
  (``Batch.sparse_features``, e.g. MovieLens ``genres`` and ``year``) gets rows
  ``B .. B+M-1`` of that KJT (the batch's keys are empty there, the candidate
  key is empty in rows ``0 .. B-1``), so the bag pools each candidate's ids.

The candidates' item-side ids come from the *item catalogue* (every item id
with its item features, see ``bigrec.data.catalogue``), which the retrieval
task hands over with :meth:`CandidateLookup.attach` (``RecallModel.attach_catalogue``);
an item tower that reads the item id only needs none. A sharded collection
fixes its input key order on its first call, so every lookup builds the keys in
one order: the schema's keys of that KJT, then the candidate keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, NamedTuple, Optional, Sequence

import torch
from torch import nn
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from bigrec.batch import Batch, select_jagged
from bigrec.errors import ConfigError
from bigrec.features import Schema, SparseFeature
from bigrec.models.embeddings import EmbeddedFeatures

CANDIDATES = "candidate_item_ids"
torch.fx.wrap("select_jagged")  # a leaf of the train pipeline's trace (its output size depends on the ids)


@dataclass(frozen=True)
class CandidateKey:
    """One extra KJT key: candidates' values of item feature ``feature``.

    ``bag``: the key rides in ``Batch.sparse_features`` (rows ``B..B+M-1``), else in
    ``Batch.sequence_features`` (row 0). ``pooling`` (``sum``/``mean``/``None`` for a
    single-valued feature) is how a sequence-table key is pooled per candidate.
    """

    feature: str
    key: str
    bag: bool
    pooling: Optional[str]


class ItemInputs(NamedTuple):
    """The output of :meth:`CandidateLookup.embed`.

    ``batch``: the batch's own embedded features (``B`` rows, as without candidates);
    ``targets``: ``[B, D]`` per item-tower feature, the rows' target items;
    ``candidates``: ``[M, D]`` per item-tower feature, the candidates.
    """

    batch: EmbeddedFeatures
    targets: list[torch.Tensor]
    candidates: list[torch.Tensor]


def _candidate_keys(schema: Schema, item_feature: str, item_features: Sequence[str]) -> list[CandidateKey]:
    item = schema[item_feature]
    if not isinstance(item, SparseFeature) or item.multi_valued:
        raise ConfigError(f"item feature '{item_feature}' must be a single-valued item id feature, "
                          f"it is a {item.kind} feature")
    if not schema.in_sequence_table(item_feature):
        raise ConfigError(f"item feature '{item_feature}' reads table '{item.table}', which no sequence feature "
                          f"reads; recall models need the item table shared with a history feature "
                          f"(the leave-last-out recall layout)")
    if item_feature not in item_features:
        raise ConfigError(f"item_features {list(item_features)} must include the item id feature '{item_feature}'")
    keys = []
    for name in item_features:
        feature = schema[name]
        if name == item_feature:
            keys.append(CandidateKey(name, CANDIDATES, False, None))
            continue
        if not isinstance(feature, SparseFeature):
            raise ConfigError(f"item feature '{name}' is a {feature.kind} feature; item towers read id features "
                              f"(single- or multi-valued) of the item catalogue")
        if feature.side != "item":
            raise ConfigError(f"feature '{name}' describes side '{feature.side}'; an item tower reads item-side "
                              f"features only (the item catalogue holds those)")
        keys.append(CandidateKey(name, f"candidate_{name}", not schema.in_sequence_table(name),
                                 feature.pooling if feature.multi_valued else None))
    return keys


def _lookup_schema(schema: Schema, keys: list[CandidateKey]) -> Schema:
    """``schema`` plus one feature per candidate key, on the table of the feature it mirrors."""
    extra = []
    for key in keys:
        feature = schema[key.feature]
        if key.bag:  # pooled per candidate row by the bag, like the feature itself
            extra.append(replace(feature, name=key.key))
        else:  # single-valued: FeatureEmbeddings returns the looked-up rows as they come
            extra.append(SparseFeature(key.key, feature.vocab_size, feature.embedding_dim, table=feature.table,
                                       side="item"))
    return Schema(list(schema.features) + extra, labels=list(schema.labels), metadata=dict(schema.metadata))


@torch.fx.wrap
def extend_keys(features: KeyedJaggedTensor, keys: list[str], values: list[torch.Tensor],
                lengths: list[torch.Tensor], stride: int, first_row: int) -> KeyedJaggedTensor:
    """``features`` with ``stride`` rows plus ``keys``, key ``i`` holding ``lengths[i]`` at rows ``first_row..``.

    The existing keys keep their rows (the new rows ``features.stride()..`` are empty)
    and their values come first.
    """
    old_lengths = features.lengths()
    old = old_lengths.view(len(features.keys()), features.stride())
    old = torch.nn.functional.pad(old, (0, stride - old.shape[1]))
    new = old_lengths.new_zeros(len(keys), stride)
    for row, key_lengths in enumerate(lengths):
        new[row, first_row:first_row + key_lengths.numel()] = key_lengths.to(new.dtype)
    return KeyedJaggedTensor(keys=features.keys() + keys,
                             values=torch.cat([features.values()] + [v.to(features.values().dtype) for v in values]),
                             lengths=torch.cat([old.reshape(-1), new.reshape(-1)]), stride=stride)


@torch.fx.wrap
def _empty_features(keys: list[str], stride: int, device: torch.device) -> KeyedJaggedTensor:
    """A KJT of ``keys`` with ``stride`` empty rows."""
    return KeyedJaggedTensor(keys=list(keys), values=torch.zeros(0, dtype=torch.int64, device=device),
                             lengths=torch.zeros(len(keys) * stride, dtype=torch.int32, device=device),
                             stride=stride)


@torch.fx.wrap
def _pool_rows(rows: torch.Tensor, lengths: torch.Tensor, pooling: Optional[str]) -> torch.Tensor:
    """``[T, D]`` looked-up rows of ``M`` candidates with ``lengths [M]`` -> ``[M, D]`` (sum or mean)."""
    if pooling is None:
        return rows
    index = torch.repeat_interleave(torch.arange(lengths.numel(), device=rows.device), lengths.long())
    pooled = rows.new_zeros(lengths.numel(), rows.shape[1]).index_add_(0, index, rows)
    if pooling == "mean":
        pooled = pooled / lengths.clamp(min=1)[:, None].to(rows.dtype)
    return pooled


class CandidateLookup(nn.Module):
    """The candidate keys of a recall model's item tower and the item catalogue behind them.

    Args:
        schema: the data schema.
        item_feature: the target item id (its table is shared with a history feature).
        item_features: what the item tower reads: ``item_feature`` plus item-side id
            features (single- or multi-valued, on any table).

    Attributes:
        schema: ``schema`` plus the candidate keys (build the model's ``FeatureEmbeddings`` from it).
        keys: the candidate key names (add them to the ``FeatureEmbeddings`` feature list).

    Example::

        lookup = CandidateLookup(schema, "item_id", ["item_id", "genres", "year"])
        embeddings = FeatureEmbeddings(lookup.schema, user_features + lookup.features + lookup.keys)
        lookup.attach(catalogue.features)
        inputs = lookup.embed(embeddings, batch, torch.tensor([3, 8]))  # inputs.candidates: 3 x [2, D]
    """

    def __init__(self, schema: Schema, item_feature: str, item_features: Sequence[str]) -> None:
        super().__init__()
        self.item_feature = item_feature
        self.features = list(item_features)
        self.candidate_keys = _candidate_keys(schema, item_feature, self.features)
        self.schema = _lookup_schema(schema, self.candidate_keys)
        self.keys = [k.key for k in self.candidate_keys]
        self.catalogue_features = [k.feature for k in self.candidate_keys if k.feature != item_feature]
        self.pooled_keys, self.sequence_keys = schema.pooled_keys, schema.sequence_keys  # the batch's KJT keys
        self.bag_keys = [k for k in self.candidate_keys if k.bag]
        self.collection_keys = [k for k in self.candidate_keys if not k.bag]
        self.attached = False

    @property
    def needs_catalogue(self) -> bool:
        """Whether the item tower reads more than the item id (then candidates need the catalogue)."""
        return bool(self.catalogue_features)

    def attach(self, catalogue: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep the catalogue's ``(values [T], lengths [N])`` of every item feature read (non-persistent buffers).

        ``catalogue``: feature name -> jagged table whose row ``i`` is item ``i``'s ids
        (``bigrec.data.catalogue.ItemCatalogue.features``).
        """
        missing = [n for n in self.catalogue_features if n not in catalogue]
        if missing:
            raise ConfigError(f"the item tower reads {missing}, which the item catalogue does not hold "
                              f"(it holds {sorted(catalogue)})")
        num_items = self.schema[self.item_feature].vocab_size
        for name in self.catalogue_features:
            values, lengths = catalogue[name]
            if lengths.shape != (num_items,):
                raise ConfigError(f"item catalogue feature '{name}' has {lengths.shape[0]} rows, the item table "
                                  f"'{self.schema[self.item_feature].table}' has {num_items}")
            self.register_buffer(f"catalogue_values_{name}", values.long(), persistent=False)
            self.register_buffer(f"catalogue_lengths_{name}", lengths.int(), persistent=False)
        self.attached = True

    def _catalogue(self, name: str, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, lengths [M])`` of feature ``name`` for items ``ids``."""
        if name == self.item_feature:
            return ids, torch.ones_like(ids, dtype=torch.int32)
        if not self.attached:
            raise ConfigError(f"the item tower reads {self.catalogue_features}: candidates need the item "
                              f"catalogue (attach_catalogue); the data set must carry items.parquet")
        return select_jagged(getattr(self, f"catalogue_values_{name}"), getattr(self, f"catalogue_lengths_{name}"),
                             ids)

    def append(self, batch: Batch, ids: torch.Tensor) -> Batch:
        """``batch`` whose KJTs also carry the candidate keys of items ``ids`` ``[M]`` (see the module doc)."""
        looked_up = [self._catalogue(k.feature, ids) for k in self.collection_keys]
        sequences = extend_keys(batch.sequence_features, [k.key for k in self.collection_keys],
                                [v for v, _ in looked_up], [lengths.sum().reshape(1) for _, lengths in looked_up],
                                batch.sequence_features.stride(), 0)
        pooled = batch.sparse_features
        if self.bag_keys:  # otherwise the batch's own KJT goes on unchanged (the pipeline can prefetch it)
            looked_up = [self._catalogue(k.feature, ids) for k in self.bag_keys]
            pooled = extend_keys(pooled, [k.key for k in self.bag_keys], [v for v, _ in looked_up],
                                 [lengths for _, lengths in looked_up], batch.batch_size + ids.numel(),
                                 batch.batch_size)
        return Batch(batch.dense, pooled, sequences, batch.labels)

    def only(self, ids: torch.Tensor) -> Batch:
        """One empty row (every batch key empty) plus the candidate keys of ``ids`` ``[M]``: a lookup outside a step."""
        empty = torch.zeros(1, 0, device=ids.device)
        batch = Batch(empty, _empty_features(self.pooled_keys, 1, ids.device),
                      _empty_features(self.sequence_keys, 1, ids.device), empty)
        return self.append(batch, ids)

    def candidate_inputs(self, embedded: EmbeddedFeatures, ids: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """``[M, D]`` per item-tower feature from the output of a lookup with candidates ``ids``."""
        out = []
        for key in self.candidate_keys:
            rows = embedded.pooled[key.key]
            if key.bag:
                out.append(rows[batch_size:])
            else:
                out.append(_pool_rows(rows, self._catalogue(key.feature, ids)[1], key.pooling))
        return out

    def embed(self, embeddings: nn.Module, batch: Batch, ids: torch.Tensor) -> ItemInputs:
        """One call of ``embeddings`` (a ``FeatureEmbeddings`` built on :attr:`schema`) for the batch and ``ids``."""
        embedded = embeddings(self.append(batch, ids))
        candidates = self.candidate_inputs(embedded, ids, batch.batch_size)
        if self.bag_keys:  # the bags' outputs hold the candidates' rows after the batch's
            pooled = {name: (value[:batch.batch_size] if name in self.pooled_keys else value)
                      for name, value in embedded.pooled.items()}
            embedded = EmbeddedFeatures(pooled, embedded.sequences, embedded.masks)
        return ItemInputs(embedded, [embedded.pooled[name] for name in self.features], candidates)

    def embed_candidates(self, embeddings: nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
        """``[M, D]`` per item-tower feature of items ``ids``, looked up outside a training step."""
        # the bags only when a candidate key rides in them: otherwise the train pipeline may own their input
        return self.candidate_inputs(embeddings(self.only(ids), bags=bool(self.bag_keys)), ids, 1)
