"""MMoE: gates depend on the input and route each task; experts and towers take their own dropout.

The learning proof (MMoE beats SharedBottom on unrelated tasks) is in tests/test_multitask.py;
2-rank parity in the conformance suite.
"""

from __future__ import annotations

import torch
from torch import nn

from bigrec.models import build_model
from bigrec.models.multitask.mmoe import MMoE


def mechanism(model: MMoE, batch) -> None:
    """Gates are softmax weights that vary with the input; changing task 1's gate changes task 1 only."""
    with torch.no_grad():
        gates = model.gates(batch)  # [B, T, E]
        assert torch.allclose(gates.sum(-1), torch.ones_like(gates[..., 0]))
        assert gates.std(dim=0).max() > 0
        before = model(batch).logits
        weight = model.gate_units[1].linear.weight
        saved = weight.clone()
        weight.mul_(-5.0)
        after = model(batch).logits
        weight.copy_(saved)
    assert torch.equal(after[:, 0], before[:, 0]) and not torch.allclose(after[:, 1], before[:, 1])


def test_experts_and_towers_take_their_own_per_layer_dropout(tmp_path):
    from bigrec.data.synthetic_multitask import generate_multitask
    from bigrec.features import Schema

    generate_multitask(tmp_path, rows=200, correlation=0.0)
    model = build_model("mmoe", Schema.load(tmp_path / "schema.json"),
                        {"expert_units": [16, 8], "expert_dropout_rates": [0.1, 0.2], "tower_units": [8, 4, 2],
                         "tower_dropout_rates": [0.3, 0.4, 0.5], "num_experts": 2})
    expert = [m.p for m in model.experts.experts[0].modules() if isinstance(m, nn.Dropout)]
    tower = [m.p for m in model.towers.towers[1].modules() if isinstance(m, nn.Dropout)]
    assert expert == [0.1, 0.2] and tower == [0.3, 0.4, 0.5]
