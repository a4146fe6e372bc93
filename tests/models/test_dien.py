"""DIEN: attention-driven evolution with masked GRU updates, the auxiliary next-behaviour loss and
its sampled negatives, bad input, and the proof: DIEN beats DIN on order-dependent data."""

from __future__ import annotations

import copy

import pytest
import torch

from bigrec.config import TaskConfig
from bigrec.errors import ConfigError
from bigrec.models.ranking.dien import DIEN, GRU_TYPES, NEGATIVE_SUFFIX, InterestEvolution, append_negatives
from bigrec.tasks import build_task
from tests.model_training import fit_and_evaluate
from tests.models.conftest import BEHAVIOR, COMMON, FIT
from tests.models.test_din import tiny_batch

SMALL = {"behavior_features": BEHAVIOR, "interest_units": 8, "attention_units": [8], "auxiliary_units": [8],
         "hidden_units": [8], "embedding_dim": 4}


def mechanism(model: DIEN, batch) -> None:
    """The evolution attention varies over real positions and is 0 on padding; it drives the
    evolution GRU (other weights, other interest, other logits); the auxiliary loss is there."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        _, candidate, history, negatives, mask = model.sequence(batch)
        interest, weights, aux = model.evolve(candidate, history, negatives, mask)
        assert torch.all(weights[~mask] == 0)
        spread = weights.masked_fill(~mask, float("nan"))
        spread = spread.nan_to_num(float("-inf")).amax(1) + spread.nan_to_num(float("inf")).amin(1).neg()
        assert (spread[mask.sum(1) >= 2] > 1e-6).any(), "attention is constant over every history"
        assert torch.isfinite(aux) and aux > 0
        states = model.extractor(history)[0] * mask[:, :, None]
        assert not torch.allclose(model.evolution(states, torch.zeros_like(weights), mask), interest)
        before = model(batch).logits
        model.attention_unit.score.weight.mul_(-3.0)
        assert not torch.allclose(model(batch).logits, before)


@pytest.mark.parametrize("gru_type", GRU_TYPES)
def test_attention_is_a_softmax_over_real_positions_and_empty_history_is_finite(gru_type):
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8], []])
    torch.manual_seed(0)
    model = DIEN(schema, gru_type=gru_type, **SMALL).eval()
    weights = model.attention(batch)  # [B, L]
    assert weights.shape == (3, 4)
    assert torch.all(weights[0] > 0) and torch.all(weights[1, :2] > 0)
    assert torch.equal(weights[1, 2:], torch.zeros(2)) and torch.equal(weights[2], torch.zeros(4))
    assert torch.allclose(weights[:2].sum(1), torch.ones(2))
    output = model(batch)
    assert output.logits.shape == (3,) and torch.isfinite(output.logits).all()
    assert torch.isfinite(output.aux_losses["next_behavior"])
    mechanism(model, batch)


@pytest.mark.parametrize("gru_type", GRU_TYPES)
def test_padding_never_updates_the_gru_state(gru_type):
    """Huge values on padded steps (inputs, negatives, even attention) leave every result unchanged."""
    torch.manual_seed(0)
    evolution = InterestEvolution(3, 5, gru_type, steps=4)
    states, attention = torch.randn(2, 4, 3), torch.rand(2, 4)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    final = evolution(states, attention, mask)
    poisoned_states, poisoned_attention = states.clone(), attention.clone()
    poisoned_states[0, 2:], poisoned_attention[0, 2:] = 1e6, 1.0
    assert torch.equal(evolution(poisoned_states, poisoned_attention, mask), final)
    shorter = InterestEvolution(3, 5, gru_type, steps=2)
    shorter.load_state_dict(evolution.state_dict())
    assert torch.allclose(shorter(states[:1, :2], attention[:1, :2], mask[:1, :2]), final[:1])  # the last real state

    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8]])
    model = DIEN(schema, gru_type=gru_type, **SMALL).eval()
    _, candidate, history, negatives, mask = model.sequence(batch)
    results = model.evolve(candidate, history, negatives, mask)
    history, negatives = history.clone(), negatives.clone()
    history[1, 2:], negatives[1, 2:] = 1e6, -1e6
    for clean, poisoned in zip(results, model.evolve(candidate, history, negatives, mask)):
        assert torch.allclose(clean, poisoned)


def test_negatives_are_table_ids_independent_of_the_row_split():
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8], [1], []])
    features, rows = batch.sequence_features, schema.tables["item"].num_embeddings
    step = torch.tensor(1)
    appended = append_negatives(features, "hist_item_ids", rows, step, "item_id")
    negatives, positives = appended["hist_item_ids" + NEGATIVE_SUFFIX], features["hist_item_ids"]
    assert torch.equal(negatives.lengths(), positives.lengths())
    assert ((negatives.values() >= 1) & (negatives.values() < rows)).all()
    assert (negatives.values() != positives.values()).all()
    for rows_alone, values in (([[3, 4, 5, 6], [7, 8]], negatives.values()[:6]), ([[1], []], negatives.values()[6:])):
        alone = append_negatives(tiny_batch(rows_alone)[1].sequence_features, "hist_item_ids", rows, step,
                                 "item_id")
        assert torch.equal(alone["hist_item_ids" + NEGATIVE_SUFFIX].values(), values)  # same rows, same negatives
    later = append_negatives(features, "hist_item_ids", rows, torch.tensor(2), "item_id")
    assert not torch.equal(later["hist_item_ids" + NEGATIVE_SUFFIX].values(), negatives.values())


def test_auxiliary_loss_is_weighted_by_the_config_and_logged():
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8]])
    torch.manual_seed(0)
    model = DIEN(schema, **SMALL).eval()
    assert model.aux_loss_names == ("next_behavior",)
    losses = {}
    for weight in (0.0, 2.0):
        module = build_task(model, schema, TaskConfig(aux_loss_weights={"next_behavior": weight})).wrap(model)
        loss, step = module(batch)
        losses[weight] = loss
    aux = step[1]["aux/next_behavior"]  # the logged loss term
    assert aux > 0 and torch.allclose(losses[2.0] - losses[0.0], 2.0 * aux)
    with pytest.raises(ConfigError, match="next_behavior"):
        build_task(model, schema, TaskConfig(aux_loss_weights={"interest": 1.0}))


def test_auxiliary_loss_teaches_the_states_the_next_behaviour(tmp_path):
    """On histories drawn from a few interests, the auxiliary loss alone teaches the interest states
    to tell the clicked next behaviour from a sampled one: it falls well below log 2."""
    from bigrec.data.synthetic_behavior import generate_behavior
    from bigrec.features import Schema
    from tests.model_training import batches

    # 12 items in 6 categories: the clicked items and the uniform negatives are equally frequent,
    # so only what the state knows of the row's interests can tell them apart
    schema = generate_behavior(tmp_path, rows=12000, num_items=12, num_categories=6, num_users=10, max_len=8)
    torch.manual_seed(0)
    model = DIEN(Schema.load(tmp_path / "schema.json"), **{**SMALL, "interest_units": 16, "embedding_dim": 8})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = []
        for batch in batches(tmp_path, "train", schema, 64)[:120]:
            aux = model(batch).aux_losses["next_behavior"]
            losses.append(aux.item())
            optimizer.zero_grad()
            aux.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    assert sum(losses[-10:]) < 0.85 * sum(losses[:10]), losses


@pytest.mark.parametrize("params, message", [
    ({"gru_type": "LSTM"}, r"dien: gru_type 'LSTM' is not one of \['AUGRU', 'AIGRU', 'AGRU'\]"),
    ({"interest_units": [16]}, "interest_units must be a positive integer"),
    ({"max_len": 9}, r"max_len must be an integer in \[1, 4\]"),
])
def test_bad_parameters_name_the_model_and_the_valid_values(params, message):
    schema, _ = tiny_batch([[1]])
    with pytest.raises(ConfigError, match=message):
        DIEN(schema, **{**SMALL, **params})


def test_dien_beats_din_on_order_dependent_data(order_data, din_on_order):
    """AUGRU (the paper's choice; all three types: tools/bench/models_sequence.py) against DIN's pooling."""
    params = {**COMMON, "interest_units": 16, "attention_units": [16], "auxiliary_units": [16], "gru_type": "AUGRU"}
    dien = fit_and_evaluate(order_data, "dien", params, **FIT)["auc"]
    print(f"DIEN (AUGRU) test AUC {dien:.4f}, DIN {din_on_order:.4f} (Bayes ~0.80)")
    assert din_on_order < 0.56
    assert dien > 0.67 and dien > din_on_order + 0.15
