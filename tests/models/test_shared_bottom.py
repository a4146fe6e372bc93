"""SharedBottom: reference parameter names, one tower per task, separate dropout per part.

Learning both tasks and MMoE's advantage: tests/models/test_mmoe.py; parity: conformance suite.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bigrec.errors import ConfigError
from bigrec.models import build_model
from bigrec.models.multitask.shared_bottom import SharedBottom


def mechanism(model: SharedBottom, batch) -> None:
    """Each task has its own tower: changing tower 1 changes task 1's logits only."""
    with torch.no_grad():
        before = model(batch).logits
        head = model.towers.towers[1][-1]
        saved = head.weight.clone()
        head.weight.mul_(-3.0)
        after = model(batch).logits
        head.weight.copy_(saved)
    assert torch.equal(after[:, 0], before[:, 0]) and not torch.allclose(after[:, 1], before[:, 1])


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    from bigrec.data.synthetic_multitask import generate_multitask
    from bigrec.features import Schema

    out = tmp_path_factory.mktemp("mt")
    generate_multitask(out, rows=200, correlation=0.0)
    return Schema.load(out / "schema.json")


def test_reference_parameter_names_build_the_model(schema):
    model = build_model("shared_bottom", schema, {"hidden_units": [32, 16], "task_hidden_units": [8],
                                                  "task_types": ["binary", "regression"]})
    assert model.num_tasks == 2 and model.task_types == ["binary", "regression"]
    assert model.bottom.out_features == 16
    with pytest.raises(ConfigError, match="num_tasks=3 but task_types has 2"):
        build_model("shared_bottom", schema, {"num_tasks": 3, "task_types": ["binary", "binary"]})
    with pytest.raises(ConfigError, match="ranking"):
        build_model("shared_bottom", schema, {"task_types": ["binary", "ranking"]})


def test_bottom_and_towers_take_their_own_per_layer_dropout(schema):
    model = build_model("shared_bottom", schema, {"hidden_units": [32, 16], "dropout_rates": [0.1, 0.2],
                                                  "task_hidden_units": [8, 4, 2],
                                                  "tower_dropout_rates": [0.3, 0.4, 0.5]})
    bottom = [m.p for m in model.bottom.modules() if isinstance(m, nn.Dropout)]
    tower = [m.p for m in model.towers.towers[0].modules() if isinstance(m, nn.Dropout)]
    assert bottom == [0.1, 0.2] and tower == [0.3, 0.4, 0.5]
