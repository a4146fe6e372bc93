"""``Batch``: the one input type every model of the zoo consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable


@dataclass
class Batch(Pipelineable):
    """A mini-batch of B rows.

    Attributes:
        dense: ``[B, Nd]`` float32 dense features (``Nd`` may be 0).
        sparse_features: KJT of the features whose tables live in an
            ``EmbeddingBagCollection`` (pooled); ids int64.
        sequence_features: KJT of the features whose tables live in an
            ``EmbeddingCollection`` (sequences and pooled reads of shared tables).
        labels: ``[B, T]`` float32, one column per label of the schema.
    """

    dense: torch.Tensor
    sparse_features: KeyedJaggedTensor
    sequence_features: KeyedJaggedTensor
    labels: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        return Batch(
            dense=self.dense.to(device=device, non_blocking=non_blocking),
            sparse_features=self.sparse_features.to(device=device, non_blocking=non_blocking),
            sequence_features=self.sequence_features.to(device=device, non_blocking=non_blocking),
            labels=self.labels.to(device=device, non_blocking=non_blocking),
        )

    def record_stream(self, stream: torch.Stream) -> None:
        self.dense.record_stream(stream)
        self.sparse_features.record_stream(stream)
        self.sequence_features.record_stream(stream)
        self.labels.record_stream(stream)

    def pin_memory(self) -> "Batch":
        return Batch(
            dense=self.dense.pin_memory(),
            sparse_features=self.sparse_features.pin_memory(),
            sequence_features=self.sequence_features.pin_memory(),
            labels=self.labels.pin_memory(),
        )


def select_jagged(values: torch.Tensor, lengths: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``ids`` of a jagged table, as KJT pieces.

    Args:
        values: ``[T]`` the table's values, row after row.
        lengths: ``[N]`` values per row.
        ids: ``[M]`` rows to take (any order, repeats allowed).

    Returns: ``(values [sum of the M lengths], lengths [M])`` in the order of ``ids``.
    """
    if ids.numel() == 0:  # fbgemm's kernel reads the last output offset
        return values[:0], lengths[:0]
    selected, selected_lengths = torch.ops.fbgemm.jagged_index_select(values[:, None], lengths, ids)
    return selected[:, 0], selected_lengths
