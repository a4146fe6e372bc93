"""DIN: masked un-normalised attention, batch statistics over real positions only, learning
the planted behaviour signal, bad input (2-rank parity: tests/models/test_conformance.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from bigrec.data.convert import table_to_batch
from bigrec.data.synthetic_behavior import build_schema, generate_behavior
from bigrec.errors import ConfigError
from bigrec.models import build_model
from bigrec.models.ranking.din import DIN
from bigrec.models.sequence import TargetAttention
from tests.model_training import fit_and_evaluate

BEHAVIOR = {"item_id": "hist_item_ids", "item_cat": "hist_cat_ids"}
DIN_PARAMS = {"features": ["user_id", "item_id", "item_cat"], "behavior_features": BEHAVIOR,
              "attention_units": [16], "hidden_units": [32, 16], "activation": "prelu", "embedding_dim": 8}


@pytest.fixture(scope="module")
def behavior_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("behavior")
    generate_behavior(out, rows=30000, num_items=400, num_categories=10, num_users=100, max_len=10, seed=0,
                      row_group_size=2048)
    return out


# Dice's batch statistics are per rank, so the 2-rank parity run uses PReLU
PARITY_OVERRIDES = {"model": {"activation": "prelu"}}


def mechanism(model: DIN, batch) -> None:
    """The attention weights depend on the history, and silencing them changes the prediction."""
    weights = model.attention(batch)
    real = weights[model.embeddings(batch).masks[model.pairs[0][1]]]
    assert real.numel() and real.std() > 0
    before = model(batch).logits
    with torch.no_grad():
        saved = model.attention_unit.score.weight.clone(), model.attention_unit.score.bias.clone()
        model.attention_unit.score.weight.zero_()
        model.attention_unit.score.bias.zero_()
        silenced = model(batch).logits
        model.attention_unit.score.weight.copy_(saved[0])
        model.attention_unit.score.bias.copy_(saved[1])
    assert not torch.allclose(before, silenced)


def tiny_batch(histories: list[list[int]], max_len: int = 4):
    """Candidate item 1 (category 1) with the given item histories; item i has category 1 + i % 3."""
    schema = build_schema(num_items=9, num_categories=3, num_users=5, max_len=max_len, embedding_dim=4)
    n = len(histories)
    table = pa.table({
        "user_id": pa.array([0] * n, pa.int64()), "item_id": pa.array([1] * n, pa.int64()),
        "item_cat": pa.array([2] * n, pa.int64()),
        "hist_item_ids": pa.array(histories, pa.list_(pa.int64())),
        "hist_cat_ids": pa.array([[1 + i % 3 for i in h] for h in histories], pa.list_(pa.int64())),
        "label": pa.array([0.0] * n, pa.float32())})
    return schema, table_to_batch(table, schema)


def test_attention_is_zero_on_padding_and_empty_history_is_finite():
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8], []])
    torch.manual_seed(0)
    model = DIN(schema, behavior_features=BEHAVIOR, attention_units=[8], hidden_units=[8], embedding_dim=4,
                activation="dice").eval()
    weights = model.attention(batch)  # [B, L]
    assert weights.shape == (3, 4)
    assert torch.all(weights[0] != 0)
    assert torch.equal(weights[1, 2:], torch.zeros(2)) and torch.all(weights[1, :2] != 0)
    assert torch.equal(weights[2], torch.zeros(4))  # empty history
    logits = model(batch).logits
    assert logits.shape == (3,) and torch.isfinite(logits).all()


def test_padding_ids_do_not_leak_into_the_interest():
    """A padded position contributes nothing even if its (masked) key is huge."""
    unit = TargetAttention(4, [8], activation="relu")
    keys = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    query = torch.randn(2, 4)
    interest, weights = unit(query, keys, mask)
    poisoned = keys.clone()
    poisoned[0, 2] = 1e6
    poisoned[1] = 1e6
    interest_poisoned, weights_poisoned = unit(query, poisoned, mask)
    assert torch.equal(weights[1], torch.zeros(3)) and torch.equal(interest[1], torch.zeros(4))
    assert torch.equal(weights_poisoned[0, :2], weights[0, :2]) and weights_poisoned[0, 2] == 0
    assert torch.allclose(interest_poisoned, interest)


def test_attention_is_not_normalised_and_changes_the_output():
    schema, batch = tiny_batch([[3, 4, 5, 6], [3, 4, 5, 6], [7, 8]])
    torch.manual_seed(0)
    model = DIN(schema, behavior_features=BEHAVIOR, attention_units=[8], hidden_units=[8], embedding_dim=4,
                activation="relu").eval()
    weights = model.attention(batch)
    assert not torch.allclose(weights[0], weights[0, :1].expand(4))  # weights depend on the key
    assert not torch.allclose(weights[0].sum(), torch.tensor(1.0))  # the paper's weighted sum, no softmax
    before = model(batch).logits
    with torch.no_grad():  # a different scorer: different weights, different prediction
        model.attention_unit.score.weight.mul_(-3.0)
    assert not torch.allclose(model(batch).logits, before)
    with torch.no_grad():
        model.attention_unit.score.weight.zero_()
        model.attention_unit.score.bias.zero_()
    silenced = model(batch).logits
    assert torch.allclose(silenced[0], silenced[2])  # without attention the history is invisible
    assert not torch.allclose(before[0], before[2])


def test_behavior_features_as_a_list_pairs_the_candidate_reading_the_same_table():
    schema, batch = tiny_batch([[3, 4], []])
    model = DIN(schema, features=["item_id", "item_cat"], behavior_features=["hist_item_ids", "hist_cat_ids"],
                attention_units=[8], hidden_units=[8], embedding_dim=4)
    assert model.pairs == [("item_id", "hist_item_ids"), ("item_cat", "hist_cat_ids")]
    assert model(batch).logits.shape == (2,)


def test_din_beats_candidate_only_deepfm(behavior_data):
    din = fit_and_evaluate(behavior_data, "din", DIN_PARAMS, epochs=2)
    deepfm = fit_and_evaluate(behavior_data, "deepfm", {"features": ["user_id", "item_id", "item_cat"],
                                                        "hidden_units": [32, 16], "embedding_dim": 8})
    print(f"DIN test AUC {din['auc']:.4f}, DeepFM (candidate only) {deepfm['auc']:.4f}")
    assert din["auc"] > 0.75
    assert deepfm["auc"] < 0.56
    assert din["auc"] > deepfm["auc"] + 0.15


@pytest.mark.parametrize("behavior, message", [
    ({"item_id": "hist_missing"}, "hist_missing"),
    ({"item_cat": "hist_item_ids"}, "must share one table"),
    ({"item_id": "item_cat"}, "is not a sequence feature"),
    (["hist_item_ids"], "exactly one candidate"),
])
def test_bad_behavior_features_name_the_problem(behavior, message):
    schema, _ = tiny_batch([[1]])
    features = ["user_id"] if behavior == ["hist_item_ids"] else None
    with pytest.raises(ConfigError, match=message):
        DIN(schema, features=features, behavior_features=behavior, embedding_dim=4)


def test_feature_absent_from_schema_is_one_clear_error():
    schema, _ = tiny_batch([[1]])
    with pytest.raises(ConfigError, match="'no_such_feature'"):
        build_model("din", schema, {"features": ["item_id", "no_such_feature"], "behavior_features": BEHAVIOR})


def test_padding_never_enters_the_attention_batch_statistics():
    """Dice normalises with batch statistics: padded positions must not shift them (review fix)."""
    schema, short = tiny_batch([[3, 4], [5]], max_len=4)
    _, long = tiny_batch([[3, 4], [5]], max_len=12)  # the same rows, 8 more padded positions each
    torch.manual_seed(0)
    model = DIN(schema, behavior_features=BEHAVIOR, attention_units=[8], hidden_units=[8], embedding_dim=4,
                activation="dice").train()
    torch.manual_seed(0)
    wide = DIN(build_schema(num_items=9, num_categories=3, num_users=5, max_len=12, embedding_dim=4),
               behavior_features=BEHAVIOR, attention_units=[8], hidden_units=[8], embedding_dim=4,
               activation="dice").train()
    wide.load_state_dict(model.state_dict())
    assert torch.allclose(model.attention(short)[:, :2], wide.attention(long)[:, :2], atol=1e-6)


def test_max_len_keeps_the_most_recent_behaviours():
    """``max_len=2`` on ``[3, 4, 5, 6]`` reads exactly what the full model reads on ``[5, 6]``."""
    schema, batch = tiny_batch([[3, 4, 5, 6], [7], []])
    _, recent = tiny_batch([[5, 6], [7], []])
    params = {"behavior_features": BEHAVIOR, "attention_units": [8], "hidden_units": [8], "embedding_dim": 4,
              "activation": "prelu"}
    torch.manual_seed(0)
    short = DIN(schema, **params, max_len=2).eval()
    full = DIN(schema, **params).eval()
    full.load_state_dict(short.state_dict())
    assert short.attention(batch).shape == (3, 2)
    assert torch.allclose(short(batch).logits, full(recent).logits, atol=1e-6)
    with pytest.raises(ConfigError, match=r"DIN: max_len must be an integer in \[1, 4\]"):
        DIN(schema, **params, max_len=5)
