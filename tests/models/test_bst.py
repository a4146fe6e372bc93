"""BST: the candidate appended to the right-aligned history, positions that matter, padding masked
in every attention, bad input, and the proof: BST beats DIN on order-dependent data."""

from __future__ import annotations

import copy

import pytest
import torch

from bigrec.errors import ConfigError
from bigrec.models.ranking.bst import BST
from tests.model_training import fit_and_evaluate
from tests.models.conftest import BEHAVIOR, COMMON, FIT
from tests.models.test_din import tiny_batch

SMALL = {"behavior_features": BEHAVIOR, "num_heads": 2, "num_layers": 2, "hidden_size": 8, "dropout_rate": 0.0,
         "hidden_units": [8], "embedding_dim": 4}


def mechanism(model: BST, batch) -> None:
    """Attention never weighs padding and varies over real keys; positions and attention change the logits."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        weights = model.attention(batch)  # [B, heads, m + 1, m + 1]
        mask = model.sequence(batch)[3]
        assert torch.all(weights[:, :, :, :-1][~mask[:, None, None, :].expand_as(weights[:, :, :, :-1])] == 0)
        candidate_row = weights[:, :, -1, :]  # what the candidate attends to
        assert (candidate_row.amax(-1) - candidate_row.amin(-1) > 1e-6).any()
        before = model(batch).logits
        model.positions.weight.mul_(-3.0)
        moved = model(batch).logits
        assert not torch.allclose(moved, before)
        model.encoder.layers[0].self_attn.in_proj_weight.mul_(3.0)
        assert not torch.allclose(model(batch).logits, moved)


def test_candidate_is_the_last_token_and_padding_gets_no_attention():
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8], []])
    torch.manual_seed(0)
    model = BST(schema, **SMALL).eval()
    _, candidate, history, mask = model.sequence(batch)
    assert history.shape == (3, 4, 8) and candidate.shape == (3, 8)
    assert mask.tolist() == [[True] * 4, [False, False, True, True], [False] * 4]  # right-aligned, most recent last
    weights = model.attention(batch)
    assert weights.shape == (3, 2, 5, 5)
    assert torch.equal(weights[1, :, :, :2], torch.zeros(2, 5, 2))
    assert torch.equal(weights[2, :, :, :4], torch.zeros(2, 5, 4))
    assert torch.allclose(weights[2, :, :, 4], torch.ones(2, 5))  # an empty history: the candidate alone
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2, 5))
    logits = model(batch).logits
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    mechanism(model, batch)


def test_padding_content_never_reaches_the_output():
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8]])
    torch.manual_seed(0)
    model = BST(schema, **SMALL).eval()
    _, candidate, history, mask = model.sequence(batch)
    clean = model.encode(candidate, history, mask)
    poisoned = history.clone()
    poisoned[1, :2] = 1e6
    assert torch.allclose(model.encode(candidate, poisoned, mask), clean)
    assert torch.equal(clean[1, :2], torch.zeros(2, 8))


def test_order_of_the_behaviours_changes_the_prediction():
    """The same behaviours in another order: DIN's pooling cannot tell, BST's positions can."""
    schema, batch = tiny_batch([[3, 4, 5, 6], [6, 5, 4, 3]])
    torch.manual_seed(0)
    logits = BST(schema, **SMALL).eval()(batch).logits
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize("pooling", ["candidate", "mean"])
def test_pooled_outputs_feed_an_h_wide_input_and_ignore_padding(pooling):
    """``candidate`` / ``mean`` pooling: the MLP reads H values, padding never counts, an empty history works."""
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8], []])
    torch.manual_seed(0)
    model = BST(schema, **SMALL, pooling=pooling).eval()
    flat = BST(schema, **SMALL).eval()
    assert model.mlp.layers[0].in_features == flat.mlp.layers[0].in_features - 4 * 8  # (m + 1) H -> H
    _, candidate, history, mask = model.sequence(batch)
    encoded = model.encode(candidate, history, mask)
    pooled = model.pool(encoded, mask)
    expected = encoded[:, -1] if pooling == "candidate" else encoded.sum(1) / (mask.sum(1, keepdim=True) + 1)
    assert pooled.shape == (3, 8) and torch.allclose(pooled, expected, atol=1e-6)
    assert torch.allclose(pooled[2], encoded[2, -1], atol=1e-6)  # empty history: the candidate alone
    logits = model(batch).logits
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    mechanism(model, batch)


@pytest.mark.parametrize("params, message", [
    ({"num_heads": 3}, "hidden_size divisible by num_heads"),
    ({"max_len": 0}, r"max_len must be an integer in \[1, 4\]"),
    ({"pooling": "last"}, "pooling must be one of flatten, candidate, mean, got 'last'"),
])
def test_bad_parameters_name_the_model_and_the_valid_values(params, message):
    schema, _ = tiny_batch([[1]])
    with pytest.raises(ConfigError, match=f"bst: .*{message}"):
        BST(schema, **{**SMALL, **params})


def test_bst_beats_din_on_order_dependent_data(order_data, din_on_order):
    params = {**COMMON, "num_heads": 2, "num_layers": 1, "hidden_size": 16, "dropout_rate": 0.0}
    bst = fit_and_evaluate(order_data, "bst", params, **FIT)["auc"]
    print(f"BST test AUC {bst:.4f}, DIN {din_on_order:.4f} (Bayes ~0.80)")
    assert din_on_order < 0.56
    assert bst > 0.68 and bst > din_on_order + 0.15
