"""Rules every behaviour-sequence ranking model (DIEN, BST) keeps: the most recent behaviours are
kept, bad behaviour features are one clear error, and sharded training on 2 gloo ranks under
TrainPipelineSparseDist matches 1 rank."""

from __future__ import annotations

import pytest
import torch

from bigrec.errors import ConfigError
from bigrec.models import build_model
from tests.models.test_bst import SMALL as BST_SMALL
from tests.models.test_dien import SMALL as DIEN_SMALL
from tests.test_din import tiny_batch

SMALL = {"dien": DIEN_SMALL, "bst": BST_SMALL}


@pytest.mark.parametrize("name", SMALL)
def test_histories_longer_than_max_len_keep_the_most_recent(name):
    """The schema's max_len (4) in the data path, then the model's own max_len (2)."""
    torch.manual_seed(0)
    schema, long = tiny_batch([[3, 4, 5, 6, 7, 8, 1], [3, 4, 5, 6], [5, 6], [3, 4]])
    recent = tiny_batch([[6, 7, 8, 1]])[1]
    with torch.no_grad():
        model = build_model(name, schema, SMALL[name]).eval()
        assert torch.allclose(model(long).logits[0], model(recent).logits[0])
        logits = build_model(name, schema, {**SMALL[name], "max_len": 2}).eval()(long).logits
    assert torch.allclose(logits[1], logits[2])  # [3, 4, 5, 6] reads [5, 6]
    assert not torch.allclose(logits[1], logits[3])  # ... not [3, 4]


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("behavior, message", [
    ({"item_id": "hist_missing"}, r"behavior_features names \['hist_missing'\], absent from the schema"),
    ({"item_cat": "hist_item_ids"}, "must share one table"),
    (["no_such_history"], "'no_such_history' is not in the schema"),
])
def test_bad_behavior_features_name_the_model_and_the_problem(name, behavior, message):
    schema, _ = tiny_batch([[1]])
    with pytest.raises(ConfigError, match=f"{name}: .*{message}"):
        build_model(name, schema, {**SMALL[name], "behavior_features": behavior})


@pytest.mark.dist
def test_dien_and_bst_on_two_ranks_match_one_rank(tmp_path):
    """Every table split over both ranks (row-wise), the real trainer and its pipeline: the same
    global batches give the same losses (DIEN's auxiliary loss and its sampled negatives included)
    and the same validation metrics as 1 rank."""
    from bigrec.data.synthetic_behavior import generate_behavior
    from tests.test_din import BEHAVIOR, assert_two_ranks_match_one

    source = tmp_path / "behavior"
    generate_behavior(source, rows=5000, num_items=400, num_categories=10, num_users=100, max_len=10)
    common = {"features": ["user_id", "item_id", "item_cat"], "behavior_features": BEHAVIOR, "hidden_units": [16],
              "embedding_dim": 8}
    trainer = {"dense_optimizer": {"name": "adam", "lr": 0.01}}  # predictions spread apart within 12 steps
    specs = {"dien": {"model": {"name": "dien", **common, "interest_units": 8, "attention_units": [8],
                                "auxiliary_units": [8]}, "trainer": trainer},
             "bst": {"model": {"name": "bst", **common, "num_heads": 2, "hidden_size": 8, "dropout_rate": 0.0},
                     "trainer": trainer}}
    assert_two_ranks_match_one(specs, {"dien": source, "bst": source}, tmp_path, sharding_types=("row_wise",))
