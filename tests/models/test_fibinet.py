"""FiBiNET: with noise fields added, SENET's field weights end lower on them than on the
field pair that carries the signal; all three bilinear types train.

2-rank parity and the meta build: the conformance suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.models.ranking.fibinet import BILINEAR_TYPES, BilinearInteraction, FiBiNET
from tests.model_training import batches, fit_and_score

PARAMS = {"hidden_units": [32], "reduction_ratio": 2, "embedding_dim": 8}


def mechanism(model: FiBiNET, batch) -> None:
    """SENET weights differ between fields and rows, and re-weighting changes the logits."""
    with torch.no_grad():
        weights = model.senet_weights(batch)  # [B, F]
        assert weights.std(dim=1).min() > 0 and weights.std(dim=0).max() > 0
        before = model(batch).logits
        excitation = model.senet.excitation
        model.senet.excitation = _Ones()
        unweighted = model(batch).logits
        model.senet.excitation = excitation
    assert not torch.allclose(before, unweighted, atol=1e-6)


class _Ones(torch.nn.Module):
    def forward(self, squeezed: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(squeezed)


@pytest.fixture
def pair_data(planted_fields) -> Path:
    return planted_fields("pair", rows=30000)


@pytest.mark.parametrize("bilinear_type", BILINEAR_TYPES)
def test_senet_weights_drop_on_noise_fields_with_every_bilinear_type(pair_data, bilinear_type):
    schema = Schema.load(pair_data / "schema.json")
    model, metrics = fit_and_score(pair_data, "fibinet", {**PARAMS, "bilinear_type": bilinear_type}, epochs=2, lr=5e-3)
    names = model.fields.id_names
    with torch.no_grad():
        weights = torch.cat([model.senet_weights(b) for b in batches(pair_data, "test", schema, 4096)]).mean(dim=0)
    signal = weights[[names.index("field_0"), names.index("field_1")]]
    noise = weights[[i for i, n in enumerate(names) if n.startswith("noise_")]]
    print(f"{bilinear_type}: AUC {metrics['auc']:.4f}, SENET weight on the signal pair {signal.tolist()}, "
          f"on noise fields {noise.tolist()}")
    assert metrics["auc"] > 0.78
    assert noise.max() < signal.min() and noise.mean() < signal.mean() - 0.05


def test_bilinear_types_follow_the_paper():
    fields = torch.randn(2, 3, 4)
    for bilinear_type, matrices in (("field_all", 1), ("field_each", 2), ("field_interaction", 3)):
        layer = BilinearInteraction(3, 4, bilinear_type)
        assert layer.weight.shape == (matrices, 4, 4)
        out = layer(fields)  # pairs (0,1), (0,2), (1,2)
        which = {"field_all": [0, 0, 0], "field_each": [0, 0, 1], "field_interaction": [0, 1, 2]}[bilinear_type]
        for p, (i, j) in enumerate([(0, 1), (0, 2), (1, 2)]):
            assert torch.allclose(out[:, p], (fields[:, i] @ layer.weight[which[p]]) * fields[:, j], atol=1e-5)


def test_bad_bilinear_type_names_model_parameter_and_values(pair_data):
    schema = Schema.load(pair_data / "schema.json")
    with pytest.raises(ConfigError, match=r"FiBiNET: bilinear_type must be one of \['field_all', 'field_each', "
                                          r"'field_interaction'\], got 'bogus'"):
        build_model("fibinet", schema, {"bilinear_type": "bogus"})
