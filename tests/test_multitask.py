"""MMoE and SharedBottom: gates, learning two tasks, MMoE vs SharedBottom on unrelated tasks,
per-task metrics, bad input, and the data preparers behind them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from bigrec.config import TaskConfig
from bigrec.data.convert import table_to_batch
from bigrec.data.movielens import prepare_movielens
from bigrec.data.movielens_impressions import prepare_impressions
from bigrec.data.stream import open_split
from bigrec.data.synthetic_multitask import generate_multitask
from bigrec.errors import ConfigError, DataError
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.tasks import build_task
from tests.model_training import batches, fit_and_evaluate
from tests.test_data_prep import _write_grouplens

MMOE = {"expert_units": [16], "num_experts": 8, "num_tasks": 2, "tower_units": [8], "embedding_dim": 8}
SHARED_BOTTOM = {"hidden_units": [128], "num_tasks": 2, "task_hidden_units": [8], "embedding_dim": 8}  # same size


@pytest.fixture(scope="module")
def unrelated_tasks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("multitask")
    generate_multitask(out, rows=50000, correlation=0.0, seed=1, row_group_size=4096)
    return out


def test_generator_correlation_knob(tmp_path):
    same = generate_multitask(tmp_path / "same", rows=20000, correlation=1.0).metadata
    unrelated = generate_multitask(tmp_path / "unrelated", rows=20000, correlation=0.0).metadata
    assert same["label_correlation_test"] > 0.5
    assert abs(unrelated["label_correlation_test"]) < 0.05
    with pytest.raises(ValueError, match="correlation"):
        generate_multitask(tmp_path / "bad", rows=100, correlation=1.5)


def test_gates_are_softmax_over_experts_and_change_the_output(unrelated_tasks):
    schema = Schema.load(unrelated_tasks / "schema.json")
    torch.manual_seed(0)
    model = build_model("mmoe", schema, {**MMOE, "num_experts": 3}).eval()
    batch = batches(unrelated_tasks, "test", schema, 64)[0]
    gates = model.gates(batch)
    assert gates.shape == (64, 2, 3)
    assert torch.allclose(gates.sum(dim=-1), torch.ones(64, 2))
    assert gates.std(dim=0).min() > 0  # gates depend on the input, not constant
    before = model(batch).logits
    assert before.shape == (64, 2)
    with torch.no_grad():  # a different gate for task 2 changes task 2 only
        model.gate_units[1].linear.weight.mul_(-5.0)
    after = model(batch).logits
    assert torch.equal(after[:, 0], before[:, 0])
    assert not torch.allclose(after[:, 1], before[:, 1])


def test_mmoe_beats_shared_bottom_on_unrelated_tasks(unrelated_tasks):
    mmoe = fit_and_evaluate(unrelated_tasks, "mmoe", MMOE, epochs=2)
    shared = fit_and_evaluate(unrelated_tasks, "shared_bottom", SHARED_BOTTOM, epochs=2)
    print(f"MMoE {mmoe}\nSharedBottom {shared}")
    for label in ("task1", "task2"):
        assert mmoe[f"{label}/auc"] > 0.88 and shared[f"{label}/auc"] > 0.8  # both learn both tasks
    assert mmoe["auc"] > shared["auc"] + 0.005
    assert mmoe["logloss"] < shared["logloss"]


def test_task_weights_scale_the_per_task_losses(unrelated_tasks):
    schema = Schema.load(unrelated_tasks / "schema.json")
    model = build_model("shared_bottom", schema, SHARED_BOTTOM)
    batch = batches(unrelated_tasks, "test", schema, 128)[0]
    one = build_task(model, schema, TaskConfig(loss_weights=[1.0, 0.0])).wrap(model)
    two = build_task(model, schema, TaskConfig(loss_weights=[0.0, 1.0])).wrap(model)
    both = build_task(model, schema, TaskConfig(loss_weights=[1.0, 1.0])).wrap(model)
    assert torch.allclose(one(batch)[0] + two(batch)[0], both(batch)[0])


# -------------------------------------------------------------- bad input
def test_missing_label_column_names_file_and_column(unrelated_tasks, tmp_path):
    table = pq.read_table(unrelated_tasks / "train.parquet").drop(["task2"])
    pq.write_table(table, tmp_path / "train.parquet")
    schema = Schema.load(unrelated_tasks / "schema.json")
    with pytest.raises(DataError, match=r"train.parquet, column 'task2': column is missing"):
        open_split(str(tmp_path / "train.parquet"), schema, 128, 0, 1)


def test_undeclared_task_label_and_task_count_mismatch_are_config_errors(unrelated_tasks):
    schema = Schema.load(unrelated_tasks / "schema.json")
    model = build_model("mmoe", schema, MMOE)
    with pytest.raises(ConfigError, match="'ctr'"):
        build_task(model, schema, TaskConfig(labels=["task1", "ctr"]))
    with pytest.raises(ConfigError, match="num_tasks=2 but the task reads 1 label"):
        build_task(model, schema, TaskConfig(labels=["task1"]))


@pytest.mark.parametrize("name, params", [("mmoe", MMOE), ("shared_bottom", SHARED_BOTTOM)])
def test_feature_absent_from_schema_names_it(unrelated_tasks, name, params):
    schema = Schema.load(unrelated_tasks / "schema.json")
    with pytest.raises(ConfigError, match="'sparse_99'"):
        build_model(name, schema, {**params, "features": ["sparse_0", "sparse_99"]})


# ------------------------------------------------------ MovieLens impressions
def test_movielens_impressions_labels_and_splits(tmp_path):
    raw = _write_grouplens(tmp_path / "raw")
    schema = prepare_impressions(raw, tmp_path / "out", negatives_per_rating=1.0, seed=3)
    tables = {s: pq.read_table(tmp_path / "out" / f"{s}.parquet") for s in ("train", "valid", "test")}
    rows = [r for t in tables.values() for r in t.to_pylist()]
    clicks = [r for r in rows if r["click"] == 1]
    assert schema.labels == ["click", "conversion", "rating"] and not schema.sequence
    assert all(r["conversion"] <= r["click"] for r in rows)  # conversion implies click
    assert all((r["rating"] >= 1) == (r["click"] == 1) and r["conversion"] == (r["rating"] >= 4) for r in rows)
    assert len({(r["user_id"], r["item_id"]) for r in rows}) == len(rows)  # unrated samples are unrated
    rated_by_user = {u: sum(r["user_id"] == u for r in clicks) for u in {r["user_id"] for r in clicks}}
    catalogue = len({r["item_id"] for r in clicks})
    expected_unrated = sum(min(n, catalogue - n) for n in rated_by_user.values())
    assert len(rows) - len(clicks) == expected_unrated  # one unrated sample per rating where possible
    # a batch of every split converts under the schema (ids in range, two label columns)
    for table in tables.values():
        if table.num_rows:
            assert table_to_batch(table, schema).labels.shape == (table.num_rows, 3)
    again = prepare_impressions(raw, tmp_path / "again", negatives_per_rating=1.0, seed=3)
    assert again == schema
    assert pq.read_table(tmp_path / "again" / "train.parquet").equals(tables["train"])
    # rated rows keep the ranking split of the same ratings (each user's last 10% in test)
    prepare_movielens(raw, tmp_path / "ranking_data")
    for split, table in tables.items():
        ranking = pq.read_table(tmp_path / "ranking_data" / "ranking" / f"{split}.parquet").to_pylist()
        rated = {(r["user_id"], r["item_id"]) for r in table.to_pylist() if r["click"] == 1}
        assert rated == {(r["user_id"], r["item_id"]) for r in ranking}


@pytest.mark.parametrize("change, task_types, expected", [
    (lambda y: np.where(np.arange(len(y)) < 5, 2.0, y), "[binary, binary]",
     ["'task2'", "5 of", "not 0 or 1"]),
    (lambda y: np.where(np.arange(len(y)) < 3, np.nan, y), "[binary, regression]", ["'task2'", "3 NaN/inf"]),
])
def test_bad_labels_are_one_clear_error(unrelated_tasks, tmp_path, capsys, change, task_types, expected):
    import pyarrow as pa

    from tests.test_bad_input import replace_column, run

    data = tmp_path / "data"
    data.mkdir()
    for name in ("valid.parquet", "test.parquet", "schema.json"):
        (data / name).write_bytes((unrelated_tasks / name).read_bytes())
    table = pq.read_table(unrelated_tasks / "train.parquet")
    spoiled = change(table.column("task2").to_numpy().astype(np.float32)).astype(np.float32)
    pq.write_table(replace_column(table, "task2", pa.array(spoiled)), data / "train.parquet", row_group_size=100_000)
    code, err = run(tmp_path, data, capsys, model="shared_bottom", extra=f", task_types: {task_types}")
    assert code == 2 and err.count("\n") == 1 and "train.parquet" in err, err
    for fragment in expected:
        assert fragment in err, err
