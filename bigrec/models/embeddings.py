"""Embedding tables of a model, built from the schema as TorchRec collections.

Tables whose features travel in ``Batch.sparse_features`` go into one
``EmbeddingBagCollection``; tables in ``Batch.sequence_features`` go into one
``EmbeddingCollection`` per embedding dim (TorchRec requires one dim per EC).
Both are leaves that ``DistributedModelParallel`` shards and that
``TrainPipelineSparseDist`` pipelines (they are called on the batch's KJTs directly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

from bigrec.batch import Batch
from bigrec.features import Schema, SequenceFeature, SparseFeature


@dataclass
class EmbeddedFeatures:
    """Output of :class:`FeatureEmbeddings`.

    Attributes:
        pooled: feature name -> ``[B, D]`` (single ids, or pooled multi-hot ids).
        sequences: feature name -> ``[B, L, D]`` padded at the end (L = max_len).
        masks: feature name -> ``[B, L]`` bool, True where a real id sits.
    """

    pooled: dict[str, torch.Tensor]
    sequences: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]


class FeatureEmbeddings(nn.Module):
    """The embedding tables that ``feature_names`` read.

    Args:
        schema: the data schema (decides tables, sizes, placement).
        feature_names: the id features this model reads (dense names are ignored).
        embedding_dim: overrides the schema's dims for every table when given.
        table_suffix: appended to table names, so one model can hold a second set
            of tables over the same ids (e.g. DeepFM's first-order weights).
        device: ``meta`` to defer allocation to ``DistributedModelParallel``.
    """

    def __init__(self, schema: Schema, feature_names: list[str], embedding_dim: Optional[int] = None,
                 table_suffix: str = "", device: Optional[torch.device] = None) -> None:
        super().__init__()
        if embedding_dim is not None:
            schema = schema.with_embedding_dim(embedding_dim)
        self.schema = schema
        id_names = [n for n in feature_names if not schema[n].kind == "dense"]
        self.pooled_names = [n for n in id_names if not schema.in_sequence_table(n)]
        self.sequence_names = [n for n in id_names if schema.in_sequence_table(n)]
        self.max_len = {n: _max_len(schema, n) for n in self.sequence_names}

        bag_tables = []
        for table_name in dict.fromkeys(schema[n].table for n in self.pooled_names):
            spec = schema.tables[table_name]
            names = [n for n in self.pooled_names if schema[n].table == table_name]
            pooling = {schema[n].pooling for n in names}
            bag_tables.append(EmbeddingBagConfig(
                name=table_name + table_suffix, num_embeddings=spec.num_embeddings,
                embedding_dim=spec.embedding_dim, feature_names=names,
                pooling=PoolingType.MEAN if pooling == {"mean"} else PoolingType.SUM))
        self.bags = EmbeddingBagCollection(tables=bag_tables, device=device) if bag_tables else None

        by_dim: dict[int, list[EmbeddingConfig]] = {}
        for table_name in dict.fromkeys(schema[n].table for n in self.sequence_names):
            spec = schema.tables[table_name]
            names = [n for n in self.sequence_names if schema[n].table == table_name]
            by_dim.setdefault(spec.embedding_dim, []).append(EmbeddingConfig(
                name=table_name + table_suffix, num_embeddings=spec.num_embeddings,
                embedding_dim=spec.embedding_dim, feature_names=names))
        self.sequences = nn.ModuleList(EmbeddingCollection(tables=t, device=device) for t in by_dim.values())
        # feature names per collection, in a fixed order (keeps forward FX-traceable)
        self.sequence_groups = [[n for t in tables for n in t.feature_names] for tables in by_dim.values()]

    def output_dim(self, name: str) -> int:
        return self.schema.tables[self.schema[name].table].embedding_dim

    def forward(self, batch: Batch, bags: bool = True) -> EmbeddedFeatures:
        """Look ``batch`` up; ``bags=False`` skips the ``EmbeddingBagCollection`` (a lookup that needs none of its
        features must not call it: the train pipeline may own its input)."""
        pooled: dict[str, torch.Tensor] = {}
        sequences: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        if self.bags is not None and bags:
            keyed = self.bags(batch.sparse_features)
            for name in self.pooled_names:
                pooled[name] = keyed[name]
        for collection, names in zip(self.sequences, self.sequence_groups):
            looked_up = collection(batch.sequence_features)
            for name in names:
                jagged = looked_up[name]
                feature = self.schema[name]
                if isinstance(feature, SparseFeature) and not feature.multi_valued:
                    pooled[name] = jagged.values()  # exactly one id per row
                    continue
                length = self.max_len[name]
                padded = jagged.to_padded_dense(desired_length=length)  # [B, L, D]
                mask = torch.arange(length, device=padded.device)[None, :] < jagged.lengths()[:, None]
                if isinstance(feature, SparseFeature):  # multi-hot read of a sequence table
                    total = padded.sum(dim=1)
                    if feature.pooling == "mean":
                        total = total / jagged.lengths().clamp(min=1)[:, None].to(total.dtype)
                    pooled[name] = total
                else:
                    sequences[name], masks[name] = padded, mask
        return EmbeddedFeatures(pooled, sequences, masks)


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
