"""EDCN: regulation gates depend on the input (not constant), the bridge output reaches the
branches, and EDCN comes within 0.01 AUC of DCN-V2 on the planted-cross data.

2-rank parity and the meta build: the conformance suite.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from bigrec.data.convert import table_to_batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.models.ranking.edcn import EDCN
from tests.model_training import fit_and_evaluate

PARAMS = {"cross_num": 2, "hidden_units": [16], "embedding_dim": 8}


def mechanism(model: EDCN, batch) -> None:
    """Every gate varies with the input, sums to F over fields, and shapes the logits."""
    with torch.no_grad():
        num_fields = model.fields.num_fields
        for cross_gate, deep_gate in model.regulation_gates(batch):
            for gate in (cross_gate, deep_gate):
                assert torch.allclose(gate.sum(dim=1), torch.full_like(gate.sum(dim=1), num_fields), atol=1e-4)
                assert gate.std(dim=0).max() > 1e-4  # differs between rows: computed from the input
        before = model(batch).logits
        saved = [gate.weight.clone() for gate in model.cross_gates]
        for gate in model.cross_gates:
            gate.weight.zero_()  # constant, uniform gates
        constant = model(batch).logits
        for gate, weight in zip(model.cross_gates, saved):
            gate.weight.copy_(weight)
        assert not torch.allclose(before, constant, atol=1e-7)
        share = model.share.clone()
        model.share.zero_()  # the bridge output no longer enters the next depth's branches
        unshared = model(batch).logits
        model.share.copy_(share)
        assert not torch.allclose(before, unshared, atol=1e-7)


@pytest.fixture
def cross_data(planted_fields) -> Path:
    return planted_fields("cross")


def test_edcn_is_at_least_as_good_as_dcnv2_on_the_planted_cross(cross_data):
    edcn = fit_and_evaluate(cross_data, "edcn", PARAMS, epochs=2)
    dcnv2 = fit_and_evaluate(cross_data, "dcnv2", {**PARAMS, "cross_parameterization": "matrix"}, epochs=2)
    bayes = Schema.load(cross_data / "schema.json").metadata["bayes_auc_estimate"]
    print(f"EDCN {edcn['auc']:.4f}, DCN-V2 {dcnv2['auc']:.4f}, Bayes {bayes}")
    assert edcn["auc"] > bayes - 0.02
    # Within 0.01: on 2 epochs EDCN trails DCN-V2 by a few thousandths; with early stopping over up to
    # 6 epochs the two tie (docs/models.md, 3 seeds), a budget too long for a unit test.
    assert edcn["auc"] >= dcnv2["auc"] - 0.01


def test_bgu_gates_every_dimension(cross_data):
    schema = Schema.load(cross_data / "schema.json")
    model = EDCN(schema, gate_type="BGU", **PARAMS)
    batch = table_to_batch(pq.read_table(cross_data / "valid.parquet").slice(0, 16), schema)
    cross_gate, deep_gate = model.regulation_gates(batch)[0]
    assert cross_gate.shape == (16, model.fields.num_fields, 8) and deep_gate.shape == cross_gate.shape
    mechanism(model.eval(), batch)


@pytest.mark.parametrize("param, value, valid", [
    ("gate_type", "fgu", "['FGU', 'BGU']"),
    ("bridge_type", "sum", "['hadamard_product', 'pointwise_addition', 'concatenation', 'attention_pooling']"),
    ("cross_parameterization", "diagonal", "['vector', 'matrix']"),
])
def test_bad_choice_names_model_parameter_and_values(cross_data, param, value, valid):
    schema = Schema.load(cross_data / "schema.json")
    with pytest.raises(ConfigError, match=f"EDCN: {param} must be one of {valid}, got '{value}'".replace("[", r"\[")
                       .replace("]", r"\]")):
        build_model("edcn", schema, {param: value})
