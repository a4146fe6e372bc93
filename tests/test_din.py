"""DIN: masked un-normalised attention, learning the planted behaviour signal, bad input,
and (with MMoE) 2-rank sharded training matching 1 rank."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from bigrec.data.convert import table_to_batch
from bigrec.data.synthetic_behavior import build_schema, generate_behavior
from bigrec.errors import ConfigError
from bigrec.models import build_model
from bigrec.models.ranking.din import DIN
from bigrec.models.sequence import TargetAttention
from tests.model_training import fit_and_evaluate

BEHAVIOR = {"item_id": "hist_item_ids", "item_cat": "hist_cat_ids"}
DIN_PARAMS = {"features": ["user_id", "item_id", "item_cat"], "behavior_features": BEHAVIOR,
              "attention_units": [16], "hidden_units": [32, 16], "activation": "prelu", "embedding_dim": 8}


@pytest.fixture(scope="module")
def behavior_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("behavior")
    generate_behavior(out, rows=30000, num_items=400, num_categories=10, num_users=100, max_len=10, seed=0,
                      row_group_size=2048)
    return out


def tiny_batch(histories: list[list[int]], max_len: int = 4):
    """Candidate item 1 (category 1) with the given item histories; item i has category 1 + i % 3."""
    schema = build_schema(num_items=9, num_categories=3, num_users=5, max_len=max_len, embedding_dim=4)
    n = len(histories)
    table = pa.table({
        "user_id": pa.array([0] * n, pa.int64()), "item_id": pa.array([1] * n, pa.int64()),
        "item_cat": pa.array([2] * n, pa.int64()),
        "hist_item_ids": pa.array(histories, pa.list_(pa.int64())),
        "hist_cat_ids": pa.array([[1 + i % 3 for i in h] for h in histories], pa.list_(pa.int64())),
        "label": pa.array([0.0] * n, pa.float32())})
    return schema, table_to_batch(table, schema)


def test_attention_is_zero_on_padding_and_empty_history_is_finite():
    schema, batch = tiny_batch([[3, 4, 5, 6], [7, 8], []])
    torch.manual_seed(0)
    model = DIN(schema, behavior_features=BEHAVIOR, attention_units=[8], hidden_units=[8], embedding_dim=4,
                activation="dice").eval()
    weights = model.attention(batch)  # [B, L]
    assert weights.shape == (3, 4)
    assert torch.all(weights[0] != 0)
    assert torch.equal(weights[1, 2:], torch.zeros(2)) and torch.all(weights[1, :2] != 0)
    assert torch.equal(weights[2], torch.zeros(4))  # empty history
    logits = model(batch).logits
    assert logits.shape == (3,) and torch.isfinite(logits).all()


def test_padding_ids_do_not_leak_into_the_interest():
    """A padded position contributes nothing even if its (masked) key is huge."""
    unit = TargetAttention(4, [8], activation="relu")
    keys = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    query = torch.randn(2, 4)
    interest, weights = unit(query, keys, mask)
    poisoned = keys.clone()
    poisoned[0, 2] = 1e6
    poisoned[1] = 1e6
    interest_poisoned, weights_poisoned = unit(query, poisoned, mask)
    assert torch.equal(weights[1], torch.zeros(3)) and torch.equal(interest[1], torch.zeros(4))
    assert torch.equal(weights_poisoned[0, :2], weights[0, :2]) and weights_poisoned[0, 2] == 0
    assert torch.allclose(interest_poisoned, interest)


def test_attention_is_not_normalised_and_changes_the_output():
    schema, batch = tiny_batch([[3, 4, 5, 6], [3, 4, 5, 6], [7, 8]])
    torch.manual_seed(0)
    model = DIN(schema, behavior_features=BEHAVIOR, attention_units=[8], hidden_units=[8], embedding_dim=4,
                activation="relu").eval()
    weights = model.attention(batch)
    assert not torch.allclose(weights[0], weights[0, :1].expand(4))  # weights depend on the key
    assert not torch.allclose(weights[0].sum(), torch.tensor(1.0))  # the paper's weighted sum, no softmax
    before = model(batch).logits
    with torch.no_grad():  # a different scorer: different weights, different prediction
        model.attention_unit.score.weight.mul_(-3.0)
    assert not torch.allclose(model(batch).logits, before)
    with torch.no_grad():
        model.attention_unit.score.weight.zero_()
        model.attention_unit.score.bias.zero_()
    silenced = model(batch).logits
    assert torch.allclose(silenced[0], silenced[2])  # without attention the history is invisible
    assert not torch.allclose(before[0], before[2])


def test_behavior_features_as_a_list_pairs_the_candidate_reading_the_same_table():
    schema, batch = tiny_batch([[3, 4], []])
    model = DIN(schema, features=["item_id", "item_cat"], behavior_features=["hist_item_ids", "hist_cat_ids"],
                attention_units=[8], hidden_units=[8], embedding_dim=4)
    assert model.pairs == [("item_id", "hist_item_ids"), ("item_cat", "hist_cat_ids")]
    assert model(batch).logits.shape == (2,)


def test_din_beats_candidate_only_deepfm(behavior_data):
    din = fit_and_evaluate(behavior_data, "din", DIN_PARAMS, epochs=2)
    deepfm = fit_and_evaluate(behavior_data, "deepfm", {"features": ["user_id", "item_id", "item_cat"],
                                                        "hidden_units": [32, 16], "embedding_dim": 8})
    print(f"DIN test AUC {din['auc']:.4f}, DeepFM (candidate only) {deepfm['auc']:.4f}")
    assert din["auc"] > 0.75
    assert deepfm["auc"] < 0.56
    assert din["auc"] > deepfm["auc"] + 0.15


@pytest.mark.parametrize("behavior, message", [
    ({"item_id": "hist_missing"}, "hist_missing"),
    ({"item_cat": "hist_item_ids"}, "must share one table"),
    ({"item_id": "item_cat"}, "is not a sequence feature"),
    (["hist_item_ids"], "exactly one candidate"),
])
def test_bad_behavior_features_name_the_problem(behavior, message):
    schema, _ = tiny_batch([[1]])
    features = ["user_id"] if behavior == ["hist_item_ids"] else None
    with pytest.raises(ConfigError, match=message):
        DIN(schema, features=features, behavior_features=behavior, embedding_dim=4)


def test_feature_absent_from_schema_is_one_clear_error():
    schema, _ = tiny_batch([[1]])
    with pytest.raises(ConfigError, match="'no_such_feature'"):
        build_model("din", schema, {"features": ["item_id", "no_such_feature"], "behavior_features": BEHAVIOR})


# ------------------------------------------------------- 2 ranks vs 1 rank
PARITY_MODELS = {
    "din": {"model": {"name": "din", **DIN_PARAMS}},
    "mmoe": {"model": {"name": "mmoe", "expert_units": [16], "num_experts": 3, "num_tasks": 2,
                       "tower_units": [8], "embedding_dim": 8},
             "trainer": {"early_stopping": {"metric": "task2/auc"}}},
}


def parity_config(spec: dict, data_dir: Path, out_dir: Path, batch_size: int, sharding_type: str):
    """A run config of ``spec`` (``{"model": ..., "trainer": ...}``) training STEPS steps."""
    from bigrec.config import config_from_dict
    from tests.test_distributed import STEPS

    return config_from_dict({
        "data": {"path": str(data_dir), "batch_size": batch_size, "eval_batch_size": 1000, "test": None},
        "model": spec["model"],
        "trainer": {"epochs": 1, "output_dir": str(out_dir), "progress_bar": False, "seed": 0,
                    "max_steps_per_epoch": STEPS, **spec.get("trainer", {})},
        "sharding": {"sharding_types": [sharding_type], "print_plan": False},
    })


def train_models_and_report(specs: dict[str, dict], data_dirs: dict[str, str], out_dir: str, batch_size: int,
                            sharding_types: list[str]) -> dict:
    """Per rank and model: identical initial weights, STEPS steps' global mean losses, validation metrics."""
    from bigrec.testing import train_from_seed
    from tests.test_distributed import STEPS

    return {(model, sharding_type): train_from_seed(
                parity_config(specs[model], Path(data_dir), Path(out_dir) / model / sharding_type, batch_size,
                              sharding_type), STEPS)
            for model, data_dir in data_dirs.items() for sharding_type in sharding_types}


def assert_two_ranks_match_one(specs: dict[str, dict], sources: dict[str, Path], tmp_path: Path,
                               sharding_types: tuple[str, ...] = ("table_wise", "row_wise")) -> None:
    """Train every model of ``specs`` on its data on 1 rank and on 2 ranks (each of ``sharding_types``):
    both ranks agree, 2 ranks match 1 rank step by step, and the plans place the tables as asked."""
    from bigrec.testing import run_ranks
    from tests.test_distributed import ROWS_PER_RANK_BATCH, write_rank_data

    one, two = {}, {}
    for model, source in sources.items():
        one[model], two[model] = str(tmp_path / f"{model}_1"), str(tmp_path / f"{model}_2")
        write_rank_data(source, Path(one[model]), Path(two[model]))
    [single] = run_ranks(train_models_and_report, 1, specs, one, str(tmp_path / "out1"), 2 * ROWS_PER_RANK_BATCH,
                         ["table_wise"])
    results = run_ranks(train_models_and_report, 2, specs, two, str(tmp_path / "out2"), ROWS_PER_RANK_BATCH,
                        list(sharding_types))
    for model in sources:
        reference = single[(model, "table_wise")]
        assert reference["losses"][-1] < reference["losses"][0], model  # it trains
        for sharding_type in sharding_types:
            rank0, rank1 = results[0][(model, sharding_type)], results[1][(model, sharding_type)]
            assert rank0["losses"] == pytest.approx(rank1["losses"], rel=1e-6)
            assert rank0["losses"] == pytest.approx(reference["losses"], rel=2e-4, abs=2e-5), (model, sharding_type)
            for key, value in reference["valid"].items():
                assert rank0["valid"][key] == pytest.approx(value, abs=2e-4), (model, sharding_type, key)
            placement = rank0["placement"]
            assert {kind for kind, _ in placement.values()} == {sharding_type}
            if sharding_type == "row_wise":  # every table split over both ranks
                assert {tuple(ranks) for _, ranks in placement.values()} == {(0, 1)}
            else:
                assert {tuple(ranks) for _, ranks in placement.values()} <= {(0,), (1,)}
                assert len({tuple(ranks) for _, ranks in placement.values()}) == 2  # both ranks hold tables


@pytest.mark.dist
def test_din_and_mmoe_on_two_ranks_match_one_rank(tmp_path):
    from bigrec.data.synthetic_multitask import generate_multitask

    sources = {"din": tmp_path / "behavior", "mmoe": tmp_path / "multitask"}
    generate_behavior(sources["din"], rows=5000, num_items=400, num_categories=10, num_users=100, max_len=10)
    generate_multitask(sources["mmoe"], rows=5000, correlation=0.0)
    assert_two_ranks_match_one(PARITY_MODELS, sources, tmp_path)
