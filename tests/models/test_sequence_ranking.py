"""Rules every behaviour-sequence ranking model (DIEN, BST) keeps: the most recent behaviours are
kept and bad behaviour features are one clear error (sharded 2-rank parity:
tests/models/test_conformance.py)."""

from __future__ import annotations

import pytest
import torch

from bigrec.errors import ConfigError
from bigrec.models import build_model
from tests.models.test_bst import SMALL as BST_SMALL
from tests.models.test_dien import SMALL as DIEN_SMALL
from tests.models.test_din import tiny_batch

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

