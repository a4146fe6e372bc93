"""WideDeep: the wide part's per-id weights memorise id-level exceptions that the deep part
generalises away (WideDeep beats its deep part alone on the same data and budget).

2-rank parity and the meta build: the conformance suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bigrec.data.synthetic_fields import CROSS_COLUMN
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.ranking.widedeep import WideDeep
from tests.model_training import fit_and_evaluate

DEEP = ["field_0", "field_1", "field_2", "field_3"]
WIDE = ["field_0", "field_1", CROSS_COLUMN]
PARAMS = {"wide_features": WIDE, "deep_features": DEEP, "hidden_units": [64, 32], "embedding_dim": 8}


def mechanism(model: WideDeep, batch) -> None:
    """The wide logit varies by row and is exactly what removing the wide part takes away."""
    with torch.no_grad():
        wide = model.wide(batch)
        assert wide.std() > 0
        before = model(batch).logits
        wide_part, model.wide_part = model.wide_part, None
        deep_only = model(batch).logits
        model.wide_part = wide_part
    assert torch.allclose(before - deep_only, wide, atol=1e-5)


@pytest.fixture
def memorise_data(planted_fields) -> Path:
    return planted_fields("memorise", rows=60000)


def test_wide_part_memorises_what_the_deep_part_generalises_away(memorise_data):
    wide_deep = fit_and_evaluate(memorise_data, "widedeep", PARAMS, epochs=2)
    deep_only = fit_and_evaluate(memorise_data, "widedeep", {**PARAMS, "wide_features": []}, epochs=2)
    bayes = Schema.load(memorise_data / "schema.json").metadata["bayes_auc_estimate"]
    print(f"WideDeep {wide_deep['auc']:.4f}, deep only {deep_only['auc']:.4f}, Bayes {bayes}")
    assert wide_deep["auc"] > deep_only["auc"] + 0.03
    assert wide_deep["auc"] > bayes - 0.06


def test_an_empty_model_is_one_clear_error(memorise_data):
    schema = Schema.load(memorise_data / "schema.json")
    with pytest.raises(ConfigError, match="wide_features and deep_features are both empty"):
        WideDeep(schema, wide_features=[], deep_features=[])
    with pytest.raises(ConfigError, match="'no_such_column'"):
        WideDeep(schema, wide_features=["no_such_column"])
