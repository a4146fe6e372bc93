"""DCN: vector cross layers learn a planted degree-3 cross that a plain MLP of the same
size learns worse (DCN with ``cross_num: 0`` is that MLP).

2-rank parity and the meta build: the conformance suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torchrec.modules.crossnet import VectorCrossNet

from bigrec.features import Schema
from bigrec.models import build_model
from tests.model_training import fit_and_evaluate
from tests.models.test_dcnv2 import mechanism  # noqa: F401 - the same cross network, the same check

DCN = {"cross_num": 2, "hidden_units": [16], "embedding_dim": 8}


@pytest.fixture
def cross_data(planted_fields) -> Path:
    return planted_fields("cross")


def _dense_size(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if "embedding" not in name)


def test_vector_cross_layers_beat_a_plain_mlp_of_the_same_size(cross_data):
    schema = Schema.load(cross_data / "schema.json")
    dcn = build_model("dcn", schema, DCN)
    assert isinstance(dcn.cross, VectorCrossNet)
    mlp_params = {**DCN, "cross_num": 0, "hidden_units": [20]}
    mlp = build_model("dcn", schema, mlp_params)
    assert mlp.cross is None and _dense_size(mlp) >= 0.95 * _dense_size(dcn)  # the same size (+-5%)

    with_cross = fit_and_evaluate(cross_data, "dcn", DCN, epochs=2)
    plain = fit_and_evaluate(cross_data, "dcn", mlp_params, epochs=2)
    bayes = schema.metadata["bayes_auc_estimate"]
    print(f"DCN {with_cross['auc']:.4f}, plain MLP {plain['auc']:.4f}, Bayes {bayes}")
    assert with_cross["auc"] > plain["auc"] + 0.03
    assert with_cross["auc"] > bayes - 0.02
