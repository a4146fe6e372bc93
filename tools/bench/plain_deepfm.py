"""The plain-PyTorch DeepFM that bigrec's training speed is measured against.

What a careful engineer writes without TorchRec: one ``nn.EmbeddingBag`` per
table with sparse gradients (each step touches only the rows of the batch),
``torch.optim.Adagrad`` over the tables (it takes sparse gradients; bigrec's
default sparse optimizer is row-wise Adagrad) and dense Adam over the MLP. It
reads the very same :class:`~bigrec.batch.Batch` stream as the trainer and has
the same shapes as bigrec's ``deepfm``: per id feature a D-dim field and a
4-column first-order row, the dense columns projected to one more field and
added linearly, FM + MLP + first-order terms.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.models.inputs import FieldInput, FirstOrder
from bigrec.models.layers import MLP


def _bags(embeddings, schema: Schema, sparse: bool = True) -> tuple[nn.ModuleDict, dict[str, str]]:
    """One ``nn.EmbeddingBag`` (sparse gradients with ``sparse``) per table of bigrec's ``FeatureEmbeddings``,
    and feature -> table.

    Tables bigrec keeps in an ``EmbeddingCollection`` (shared with a sequence feature)
    become bags too, pooled as the schema says.
    """
    configs = list(embeddings.bags.embedding_bag_configs()) if embeddings.bags is not None else []
    configs += [c for collection in embeddings.sequences for c in collection.embedding_configs()]
    bags, tables = nn.ModuleDict(), {}
    for config in configs:
        names = [n for n in config.feature_names if n in embeddings.pooled_names + embeddings.sequence_names]
        if not names:
            continue
        bound = config.num_embeddings ** -0.5
        bags[config.name] = nn.EmbeddingBag(config.num_embeddings, config.embedding_dim, sparse=sparse,
                                            mode=schema[names[0]].pooling, include_last_offset=True)
        nn.init.uniform_(bags[config.name].weight, -bound, bound)
        tables.update({name: config.name for name in names})
    return bags, tables


class PlainDeepFM(nn.Module):
    """DeepFM with ``nn.EmbeddingBag`` tables; the table layout is read off bigrec's model for ``schema``.

    ``sparse=False`` is the naive variant: dense table gradients, for :class:`PlainTrainer`'s
    one Adam over every parameter (what plain code does before anyone tunes it).
    """

    def __init__(self, schema: Schema, features: Sequence[str] | None = None,
                 hidden_units: Sequence[int] = (256, 128), embedding_dim: int = 16, sparse: bool = True) -> None:
        super().__init__()
        self.sparse = sparse
        layout = build_model("deepfm", schema, {"features": features, "hidden_units": list(hidden_units),
                                                "embedding_dim": embedding_dim}, device=torch.device("meta"))
        meta = torch.device("meta")
        fields = FieldInput(schema, layout.fields.id_names, embedding_dim, device=meta)
        linear = FirstOrder(schema, layout.fields.id_names, device=meta)
        self.names = fields.id_names
        self.dense_index = layout.fields.dense.index
        self.embeddings, self.tables = _bags(fields.embeddings, schema, sparse)
        self.linear, self.linear_tables = _bags(linear.weights, schema, sparse)
        width = len(self.dense_index)
        self.dense_field = nn.Linear(width, embedding_dim) if width else None
        self.dense_linear = nn.Linear(width, 1) if width else None
        fields = len(self.names) + (1 if width else 0)
        self.mlp = MLP(fields * embedding_dim, hidden_units)
        self.head = nn.Linear(self.mlp.out_features, 1)
        self.bias = nn.Parameter(torch.zeros(1))

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [*self.embeddings.parameters(), *self.linear.parameters()]

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse]

    def forward(self, batch: Batch) -> torch.Tensor:
        values, lengths = {}, {}
        for kjt in (batch.sparse_features, batch.sequence_features):
            if kjt.keys():
                values.update(zip(kjt.keys(), kjt.values().split(kjt.length_per_key())))
                lengths.update(zip(kjt.keys(), kjt.lengths().view(-1, kjt.stride())))
        fields, first = [], []
        for name in self.names:
            offsets = torch.nn.functional.pad(lengths[name].cumsum(0), (1, 0))
            fields.append(self.embeddings[self.tables[name]](values[name], offsets))
            first.append(self.linear[self.linear_tables[name]](values[name], offsets))
        dense = batch.dense[:, self.dense_index]
        linear = torch.stack(first, dim=1).sum(dim=(1, 2)) + self.bias
        if self.dense_field is not None:
            fields.append(self.dense_field(dense))
            linear = linear + self.dense_linear(dense).squeeze(1)
        stacked = torch.stack(fields, dim=1)  # [B, F', D]
        fm = 0.5 * (stacked.sum(dim=1).pow(2) - stacked.pow(2).sum(dim=1)).sum(dim=1)
        return linear + fm + self.head(self.mlp(stacked.flatten(1))).squeeze(1)


class PlainTrainer:
    """One training step of :class:`PlainDeepFM`: BCE loss; sparse Adagrad over the tables + fused Adam over
    the rest, or (a model with ``sparse=False``) one fused Adam over every parameter."""

    def __init__(self, model: PlainDeepFM, sparse_lr: float = 0.05, dense_lr: float = 0.001) -> None:
        self.model = model
        if model.sparse:
            self.optimizers = [torch.optim.Adagrad(model.sparse_parameters(), lr=sparse_lr),
                               torch.optim.Adam(model.dense_parameters(), lr=dense_lr, fused=True)]
        else:
            self.optimizers = [torch.optim.Adam(model.parameters(), lr=dense_lr, fused=True)]
        self.loss = nn.BCEWithLogitsLoss()

    def step(self, batch: Batch) -> torch.Tensor:
        for optimizer in self.optimizers:
            optimizer.zero_grad()
        loss = self.loss(self.model(batch), batch.labels[:, 0])
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss.detach()
