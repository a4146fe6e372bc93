"""DCN-V2: the cross network shapes the prediction; matrix cross is the default (review fix).

The cross options are checked in tests/test_plan.py; 2-rank parity in the conformance suite.
"""

from __future__ import annotations

import inspect

import torch
from torchrec.modules.crossnet import CrossNet

from bigrec.models.ranking.dcnv2 import DCNV2


def mechanism(model: DCNV2, batch) -> None:
    """Zeroing the cross kernels makes every cross layer the identity and changes the logits."""
    with torch.no_grad():
        before = model(batch).logits
        saved = [p.clone() for p in model.cross.parameters()]
        for param in model.cross.parameters():
            param.zero_()
        without_cross = model(batch).logits
        for param, value in zip(model.cross.parameters(), saved):
            param.copy_(value)
    assert not torch.allclose(before, without_cross, atol=1e-5)


def test_matrix_cross_is_the_default():
    assert inspect.signature(DCNV2.__init__).parameters["cross_parameterization"].default == "matrix"


def test_default_cross_is_the_full_rank_matrix_form(tmp_path):
    from bigrec.data.synthetic import generate_criteo_like
    from bigrec.features import Schema

    generate_criteo_like(tmp_path, rows=200, max_cardinality=50, seed=0)
    model = DCNV2(Schema.load(tmp_path / "schema.json"), embedding_dim=4, hidden_units=[8])
    assert isinstance(model.cross, CrossNet)  # x0 * (W xl + b) + xl with a matrix W
