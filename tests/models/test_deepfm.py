"""DeepFM: its three parts (first order, FM second order, MLP) each shape the prediction.

Learning on real data: the e2e test and `make demo`; 2-rank parity: the conformance suite.
"""

from __future__ import annotations

import torch
from torch import nn

from bigrec.models.ranking.deepfm import DeepFM, factorization_machine


class _Zero(nn.Module):
    def forward(self, batch, rows=None) -> torch.Tensor:
        return torch.zeros(batch.batch_size)


def mechanism(model: DeepFM, batch) -> None:
    """The FM term varies by row, and removing the first-order part changes the logits by exactly it."""
    with torch.no_grad():
        fields, first = model.fields.with_first_order(batch)
        assert factorization_machine(fields).std() > 0
        before = model(batch).logits
        first_order = model.fields.first_order
        model.fields.first_order = _Zero()
        without = model(batch).logits
        model.fields.first_order = first_order
        assert torch.allclose(before - without, first, atol=1e-5)
        assert first.std() > 0


def test_factorization_machine_is_the_sum_of_pairwise_inner_products():
    fields = torch.randn(3, 4, 5)
    pairs = sum((fields[:, i] * fields[:, j]).sum(-1) for i in range(4) for j in range(i + 1, 4))
    assert torch.allclose(factorization_machine(fields), pairs, atol=1e-5)
