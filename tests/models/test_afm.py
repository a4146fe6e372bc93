"""AFM: on data where one field pair carries the interaction (next to noise fields), the
attention over pairs concentrates on that pair and AFM beats the same model without
attention (an FM with a projection).

2-rank parity and the meta build: the conformance suite.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from bigrec.data.convert import table_to_batch
from bigrec.features import Schema
from bigrec.models.ranking.afm import AFM
from tests.model_training import batches, fit_and_score

PARAMS = {"attention_units": 16, "embedding_dim": 8}


def mechanism(model: AFM, batch) -> None:
    """Weights sum to 1 over pairs, differ between pairs and rows, and equal weights change the logits."""
    with torch.no_grad():
        weights = model.attention(batch)  # [B, P]
        assert torch.allclose(weights.sum(dim=1), torch.ones(batch.batch_size), atol=1e-5)
        assert weights.std(dim=1).min() > 0 and weights.std(dim=0).max() > 0
        before = model(batch).logits
        saved = model.attention_score.weight.clone()
        model.attention_score.weight.zero_()  # every pair scores 0: uniform weights
        uniform = model(batch).logits
        model.attention_score.weight.copy_(saved)
    assert not torch.allclose(before, uniform, atol=1e-6)


@pytest.fixture
def pair_data(planted_fields) -> Path:
    return planted_fields("pair")


def test_attention_concentrates_on_the_signal_pair_and_beats_fm(pair_data):
    schema = Schema.load(pair_data / "schema.json")
    afm, with_attention = fit_and_score(pair_data, "afm", PARAMS, epochs=2, lr=5e-3)
    _, fm = fit_and_score(pair_data, "afm", {**PARAMS, "use_attention": False}, epochs=2, lr=5e-3)
    with torch.no_grad():
        weights = torch.cat([afm.attention(b) for b in batches(pair_data, "test", schema, 4096)]).mean(dim=0)
    signal_pair = 0  # (field_0, field_1): the first pair in triu order
    others = torch.cat([weights[:signal_pair], weights[signal_pair + 1:]])
    print(f"AFM {with_attention['auc']:.4f}, FM {fm['auc']:.4f}; mean attention on the signal pair "
          f"{weights[signal_pair]:.3f}, largest other {others.max():.3f}, uniform {1 / weights.numel():.3f}")
    assert weights[signal_pair] > 5 * others.max()
    assert with_attention["auc"] > fm["auc"] + 0.005
    assert with_attention["auc"] > 0.8


def test_one_weight_per_pair_of_the_chosen_features(pair_data):
    schema = Schema.load(pair_data / "schema.json")
    model = AFM(schema, features=["field_0", "field_1", "field_2"], embedding_dim=4)
    table = pq.read_table(pair_data / "valid.parquet").slice(0, 8)
    assert model.attention(table_to_batch(table, schema)).shape == (8, 3)
