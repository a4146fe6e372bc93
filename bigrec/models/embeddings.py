"""Embedding tables of a model, built from the schema as TorchRec collections.

Tables whose features travel in ``Batch.sparse_features`` go into one
``EmbeddingBagCollection``; tables in ``Batch.sequence_features`` go into one
``EmbeddingCollection`` per embedding dim (TorchRec requires one dim per EC).
Both are leaves that ``DistributedModelParallel`` shards and that
``TrainPipelineSparseDist`` pipelines (they are called on the batch's KJTs directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import nn
from torchrec.modules.embedding_configs import BaseEmbeddingConfig, EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import (EmbeddingBagCollection, EmbeddingCollection,
                                               get_embedding_names_by_table)

from bigrec.batch import Batch
from bigrec.features import Schema, SequenceFeature, SparseFeature


@dataclass
class EmbeddedFeatures:
    """Output of :class:`FeatureEmbeddings`.

    Attributes:
        pooled: feature name -> ``[B, D]`` (single ids, or pooled multi-hot ids).
        sequences: feature name -> ``[B, L, D]`` padded at the end (L = max_len).
        masks: feature name -> ``[B, L]`` bool, True where a real id sits.
        companions: companion suffix -> feature name -> ``[B, C]``, the pooled rows of
            the feature's companion table (see :class:`FeatureEmbeddings`).
    """

    pooled: dict[str, torch.Tensor]
    sequences: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    companions: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


class FeatureEmbeddings(nn.Module):
    """The embedding tables that ``feature_names`` read.

    Args:
        schema: the data schema (decides tables, sizes, placement).
        feature_names: the id features this model reads (dense names are ignored).
        embedding_dim: overrides the schema's dims for every table when given.
        table_suffix: appended to table names, so one model can hold a second set
            of tables over the same ids.
        companions: ``{suffix: dim}``: for every table of a *non-sequence* feature,
            one more table ``<table><suffix>`` of that many columns, read by the same
            features in the same collection (one lookup, one input distribution for
            both), e.g. DeepFM's first-order weights. A companion of a table that
            lives in an ``EmbeddingCollection`` takes that collection's dim (TorchRec
            allows one dim per collection). Its rows come back in
            ``EmbeddedFeatures.companions[suffix]``.
        device: ``meta`` to defer allocation to ``DistributedModelParallel``.
    """

    def __init__(self, schema: Schema, feature_names: list[str], embedding_dim: Optional[int] = None,
                 table_suffix: str = "", companions: Optional[dict[str, int]] = None,
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        if embedding_dim is not None:
            schema = schema.with_embedding_dim(embedding_dim)
        self.schema = schema
        self.companion_suffixes = list(companions or {})
        id_names = [n for n in feature_names if not schema[n].kind == "dense"]
        self.pooled_names = [n for n in id_names if not schema.in_sequence_table(n)]
        self.sequence_names = [n for n in id_names if schema.in_sequence_table(n)]
        self.max_len = {n: _max_len(schema, n) for n in self.sequence_names}

        bag_tables: list[tuple[EmbeddingBagConfig, str]] = []  # (table, companion suffix or "")
        for table_name in dict.fromkeys(schema[n].table for n in self.pooled_names):
            spec = schema.tables[table_name]
            names = [n for n in self.pooled_names if schema[n].table == table_name]
            pooling = {schema[n].pooling for n in names}
            for suffix, dim in [("", spec.embedding_dim), *(companions or {}).items()]:
                bag_tables.append((EmbeddingBagConfig(
                    name=table_name + table_suffix + suffix, num_embeddings=spec.num_embeddings,
                    embedding_dim=dim, feature_names=names,
                    pooling=PoolingType.MEAN if pooling == {"mean"} else PoolingType.SUM), suffix))
        self.bags = EmbeddingBagCollection(tables=[t for t, _ in bag_tables], device=device) if bag_tables else None

        by_dim: dict[int, list[tuple[EmbeddingConfig, str]]] = {}
        for table_name in dict.fromkeys(schema[n].table for n in self.sequence_names):
            spec = schema.tables[table_name]
            names = [n for n in self.sequence_names if schema[n].table == table_name]
            pooled_reads = [n for n in names if isinstance(schema[n], SparseFeature)]
            tables = [(EmbeddingConfig(name=table_name + table_suffix, num_embeddings=spec.num_embeddings,
                                       embedding_dim=spec.embedding_dim, feature_names=names), "")]
            if pooled_reads:
                tables += [(EmbeddingConfig(name=table_name + table_suffix + suffix, num_embeddings=spec.num_embeddings,
                                            embedding_dim=spec.embedding_dim, feature_names=pooled_reads), suffix)
                           for suffix in self.companion_suffixes]
            by_dim.setdefault(spec.embedding_dim, []).extend(tables)
        self.sequences = nn.ModuleList(EmbeddingCollection(tables=[c for c, _ in t], device=device)
                                       for t in by_dim.values())
        # (output key, feature, companion suffix or "") per collection, in a fixed order (keeps forward FX-traceable)
        self.bag_outputs = _outputs(bag_tables)
        self.sequence_outputs = [_outputs(t) for t in by_dim.values()]

    def output_dim(self, name: str) -> int:
        return self.schema.tables[self.schema[name].table].embedding_dim

    def forward(self, batch: Batch, bags: bool = True) -> EmbeddedFeatures:
        """Look ``batch`` up; ``bags=False`` skips the ``EmbeddingBagCollection`` (a lookup that needs none of its
        features must not call it: the train pipeline may own its input)."""
        pooled: dict[str, torch.Tensor] = {}
        sequences: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        companions: dict[str, dict[str, torch.Tensor]] = {suffix: {} for suffix in self.companion_suffixes}
        if self.bags is not None and bags:
            # one split of the pooled [B, sum D] block (one concatenation in backward), not a slice per key
            # (each slice's backward writes a zero-filled [B, sum D] gradient: quadratic in the features)
            keyed = self.bags(batch.sparse_features).to_dict()
            for key, name, suffix in self.bag_outputs:
                (companions[suffix] if suffix else pooled)[name] = keyed[key]
        for collection, outputs in zip(self.sequences, self.sequence_outputs):
            looked_up = collection(batch.sequence_features)
            for key, name, suffix in outputs:
                jagged = looked_up[key]
                feature = self.schema[name]
                target = companions[suffix] if suffix else pooled
                if isinstance(feature, SparseFeature) and not feature.multi_valued:
                    target[name] = jagged.values()  # exactly one id per row
                    continue
                length = self.max_len[name]
                padded = jagged.to_padded_dense(desired_length=length)  # [B, L, D]
                mask = torch.arange(length, device=padded.device)[None, :] < jagged.lengths()[:, None]
                if isinstance(feature, SparseFeature):  # multi-hot read of a sequence table
                    total = padded.sum(dim=1)
                    if feature.pooling == "mean":
                        total = total / jagged.lengths().clamp(min=1)[:, None].to(total.dtype)
                    target[name] = total
                else:
                    sequences[name], masks[name] = padded, mask
        return EmbeddedFeatures(pooled, sequences, masks, companions)


def _outputs(tables: Sequence[tuple[BaseEmbeddingConfig, str]]) -> list[tuple[str, str, str]]:
    """``(output key, feature, companion suffix or "")`` for every feature of every ``(table, suffix)``, in order.

    A feature read by two tables of one collection comes back keyed ``feature@table``
    (TorchRec's rule for shared features); otherwise by its name.
    """
    outputs = []
    for (table, suffix), keys in zip(tables, get_embedding_names_by_table([t for t, _ in tables])):
        outputs += [(key, name, suffix) for key, name in zip(keys, table.feature_names)]
    return outputs


def _max_len(schema: Schema, name: str) -> int:
    feature = schema[name]
    if isinstance(feature, SequenceFeature):
        return feature.max_len
    return int(schema.metadata.get("max_multi_hot", 64))


def embedding_tables(module: nn.Module) -> dict[str, tuple[str, int, int, bool]]:
    """``table -> (module path, rows, dim, is_sequence)`` for every TorchRec table in ``module``."""
    tables = {}
    for path, child in module.named_modules():
        if isinstance(child, EmbeddingBagCollection):
            configs, is_sequence = child.embedding_bag_configs(), False
        elif isinstance(child, EmbeddingCollection):
            configs, is_sequence = child.embedding_configs(), True
        else:
            continue
        for config in configs:
            tables[config.name] = (path, config.num_embeddings, config.embedding_dim, is_sequence)
    return tables
