"""Recall: retrieval losses and full-ranking metrics, SASRec and DSSM, synthetic sequences, export/retrieve."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest
import torch

from bigrec.config import TaskConfig, config_from_dict
from bigrec.data.convert import table_to_batch
from bigrec.data.synthetic_sequences import generate_sequences, sequences_to_rows
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.tasks.retrieval.baselines import most_popular_metrics
from bigrec.tasks.retrieval.losses import full_softmax_loss, sampled_softmax_loss
from bigrec.tasks.retrieval.metrics import full_ranking, merge_top_k, slice_top_k
from bigrec.tasks import build_task

NUM_ITEMS = 41  # ids 1..40, 0 = padding


def _schema(max_len: int = 8, num_items: int = NUM_ITEMS) -> Schema:
    from bigrec.data.synthetic_sequences import build_schema

    return build_schema(20, num_items - 1, max_len, embedding_dim=8)


def _batch(histories: list[list[int]], targets: list[int], schema: Schema):
    table = pa.table({"user_id": pa.array(range(1, len(targets) + 1), pa.int64()),
                      "item_id": pa.array(targets, pa.int64()),
                      "hist_item_ids": pa.array(histories, pa.list_(pa.int64()))})
    return table_to_batch(table, schema)


# ------------------------------------------------------------ losses, metrics
def test_full_softmax_masks_padding_and_matches_cross_entropy():
    torch.manual_seed(0)
    user, items, targets = torch.randn(4, 3), torch.randn(6, 3), torch.tensor([1, 2, 5, 1])
    invalid = torch.tensor([True] + [False] * 5)
    expected = torch.nn.functional.cross_entropy((user @ items[1:].t()), targets - 1)
    assert torch.allclose(full_softmax_loss(user, items, targets, invalid=invalid), expected)


def test_sampled_softmax_log_q_and_accidental_hits():
    torch.manual_seed(0)
    user, pos = torch.randn(3, 4), torch.randn(3, 4)
    ids = torch.tensor([7, 7, 9])  # rows 0 and 1 share a target: not each other's negative
    zeros = torch.zeros(3)
    loss = sampled_softmax_loss(user, pos, ids, pos[:0], ids[:0], zeros, zeros[:0])
    logits = user @ pos.t()
    logits[0, 1] = logits[1, 0] = float("-inf")
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, torch.arange(3)))
    # log-Q: subtracting log q of a popular item raises its loss as a negative less
    log_q = torch.tensor([0.0, 0.0, 2.0])
    assert not torch.allclose(loss, sampled_softmax_loss(user, pos, ids, pos[:0], ids[:0], log_q, zeros[:0]))


def _brute_force_ranks(users, items, targets, seen):
    scores = users.double() @ items.double().t()
    scores[:, 0] = float("-inf")
    for row, items_seen in enumerate(seen.tolist()):
        for item in items_seen:
            if item >= 0 and item != targets[row]:
                scores[row, item] = float("-inf")
    return (scores > scores.gather(1, targets[:, None])).sum(dim=1)


def test_full_ranking_matches_brute_force_and_slices_merge_exactly():
    torch.manual_seed(1)
    users, items = torch.randn(30, 5), torch.randn(NUM_ITEMS, 5)
    targets = torch.randint(1, NUM_ITEMS, (30,))
    seen = torch.randint(-1, NUM_ITEMS, (30, 6))
    seen[0, 0] = targets[0]  # a seen target stays rankable
    metrics = full_ranking(users, targets, seen, lambda ids: items[ids], NUM_ITEMS, ks=(5, 10))
    ranks = _brute_force_ranks(users, items, targets, seen)
    assert metrics["recall@10"] == pytest.approx(float((ranks < 10).double().mean()))
    assert metrics["mrr@5"] == pytest.approx(float(torch.where(ranks < 5, 1.0 / (ranks + 1.0), 0.0).mean()))
    assert metrics["ndcg@10"] == pytest.approx(
        float(torch.where(ranks < 10, 1.0 / torch.log2(ranks + 2.0), 0.0).mean()))
    # two slices merged == one slice
    ids = torch.arange(NUM_ITEMS)
    one = merge_top_k(*slice_top_k(users, items, ids, targets, seen, 10, 0), 10)
    parts = [slice_top_k(users, items[s], ids[s], targets, seen, 10, 0) for s in (slice(0, 21), slice(21, 41))]
    two = merge_top_k(torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1), 10)
    assert torch.equal(one, two)
    # seen items never appear in the lists
    for row in range(30):
        excluded = {i for i in seen[row].tolist() if i >= 0 and i != targets[row]}
        assert not excluded & set(one[row].tolist())


# ------------------------------------------------------------------ SASRec
def test_sasrec_attention_order_truncation_and_empty_history():
    torch.manual_seed(0)
    schema = _schema(max_len=8)
    model = build_model("sasrec", schema, {"max_len": 4, "hidden_size": 8, "num_heads": 2, "num_layers": 1,
                                           "dropout_rate": 0.0, "all_positions": False})
    model.eval()
    none = torch.zeros(0, dtype=torch.int64)

    def user(histories):
        return model(_batch(histories, [1] * len(histories), schema), none).user

    base = user([[1, 2, 3, 4]])
    assert not torch.allclose(base, user([[2, 1, 3, 4]]), atol=1e-5), "attention must see the order"
    assert not torch.allclose(base, user([[9, 2, 3, 4]]), atol=1e-5), "older items must change the state"
    # histories longer than max_len keep the most recent max_len items
    assert torch.allclose(user([[7, 8, 9, 1, 2, 3, 4]]), base, atol=1e-6)
    # empty and padded histories give finite vectors; padding does not leak into shorter rows
    both = user([[], [5, 6]])
    assert torch.isfinite(both).all()
    assert torch.allclose(both[1], user([[5, 6]])[0], atol=1e-6)
    # the order-free ablation ignores order
    mean = build_model("sasrec", schema, {"max_len": 4, "hidden_size": 8, "order_free": True, "all_positions": False})
    assert torch.allclose(mean(_batch([[1, 2, 3]], [1], schema), none).user,
                          mean(_batch([[3, 1, 2]], [1], schema), none).user, atol=1e-6)


def test_bad_model_input_is_one_clear_error():
    schema = _schema()
    with pytest.raises(ConfigError, match="not_a_column"):
        build_model("dssm", schema, {"user_features": ["not_a_column"]})
    with pytest.raises(ConfigError, match="no_history"):
        build_model("sasrec", schema, {"history_feature": "no_history"})
    with pytest.raises(ConfigError, match="item_num"):
        build_model("sasrec", schema, {"item_num": 7})
    model = build_model("sasrec", schema, {"hidden_size": 8})
    with pytest.raises(ConfigError, match="task.options"):
        build_task(model, schema, TaskConfig(options={"losss": "full"}))


def test_synthetic_sequences_skip_short_and_leave_last_out(tmp_path, capsys):
    tables, skipped = sequences_to_rows(torch.tensor([1, 2, 3]).numpy(),
                                        [torch.tensor([5]).numpy(), torch.tensor([1, 2]).numpy(),
                                         torch.tensor([3, 4, 5, 6]).numpy()], history_len=2)
    assert skipped == 2
    assert tables["test"].to_pydict() == {"user_id": [3], "item_id": [6], "hist_item_ids": [[4, 5]]}
    assert tables["valid"].column("item_id").to_pylist() == [5]
    assert tables["train"].column("hist_item_ids").to_pylist() == [[], [3]]
    generate_sequences(tmp_path, num_users=50, num_items=40, num_clusters=4, min_length=1, max_length=6)
    assert "skipped" in capsys.readouterr().out


# -------------------------------------------------- learning (one rank, in process)
def _config(model: dict, data: str, out: str, options: dict, epochs: int) -> object:
    one_pass = model["name"] == "sasrec"  # trains every position: one row per sequence
    return config_from_dict({
        "data": {"path": data, "train": "train_sequences.parquet" if one_pass else "train.parquet",
                 "batch_size": 32 if one_pass else 128, "eval_batch_size": 1024, "shuffle_buffer": 100000},
        "model": model, "task": {"options": options},
        "trainer": {"epochs": epochs, "output_dir": out, "progress_bar": False, "log_every": 1000,
                    "dense_optimizer": {"name": "adam", "lr": 0.005},
                    "sparse_optimizer": {"name": "exact_row_wise_adagrad", "lr": 0.1},
                    "early_stopping": {"metric": "recall@10", "mode": "max", "patience": 5}},
        "sharding": {"print_plan": False}})


SASREC = {"name": "sasrec", "max_len": 10, "hidden_size": 16, "num_heads": 2, "num_layers": 1, "dropout_rate": 0.0}
DSSM_MEAN = {"name": "dssm", "user_features": ["hist_item_ids"], "hidden_units": [32, 16], "embedding_dim": 16,
             "temperature": 0.1}


@pytest.fixture(scope="module")
def markov(tmp_path_factory):
    path = tmp_path_factory.mktemp("markov")
    generate_sequences(path, num_users=1200, num_items=200, num_clusters=20, min_length=6, max_length=16,
                       history_len=10, embedding_dim=16)
    return path


@pytest.mark.e2e
def test_sasrec_beats_order_free_mean_and_most_popular_then_exports(markov, tmp_path):
    from bigrec.serving.export import retrieve
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import train

    try:
        sasrec = train(_config(SASREC, str(markov), str(tmp_path / "s"), {"loss": "full"}, 3))["test"]
        dssm = train(_config(DSSM_MEAN, str(markov), str(tmp_path / "d"),
                             {"loss": "sampled", "num_negatives": 64}, 3))["test"]
    finally:
        destroy_process_group()
    popular = most_popular_metrics(str(markov / "train.parquet"), str(markov / "test.parquet"), 201)
    print(json.dumps({"sasrec": sasrec["recall@10"], "dssm_mean": dssm["recall@10"],
                      "popular": popular["recall@10"]}))
    assert sasrec["recall@10"] > 2 * popular["recall@10"]
    assert sasrec["recall@10"] > dssm["recall@10"] + 0.05
    assert dssm["recall@10"] > popular["recall@10"]

    from bigrec.serving.export import export_embeddings

    meta = export_embeddings(tmp_path / "s" / "checkpoints" / "best", tmp_path / "export")
    assert meta["num_items"] == 200
    top = retrieve(tmp_path / "export", [1, 2], k=5, backend="torch")
    assert all(len(items) == 5 for items in top.values())
    users = pa.parquet.read_table(tmp_path / "export" / "users.parquet")
    seen = dict(zip(users.column("user_id").to_pylist(), users.column("seen_item_ids").to_pylist()))
    assert not set(seen[1]) & {i for i, _ in top[1]}


# ------------------------------------------------------- two ranks vs one
def _train_two_ranks(markov: str, out: str) -> dict:
    from bigrec.train.trainer import train

    sasrec = _config(SASREC, markov, out + "/s", {"loss": "full"}, 2)
    sasrec.sharding.sharding_types = ["row_wise"]
    dssm = _config(DSSM_MEAN, markov, out + "/d", {"loss": "sampled", "num_negatives": 64}, 2)
    dssm.sharding.sharding_types = ["table_wise"]
    return {"sasrec": train(sasrec)["test"], "dssm": train(dssm)["test"]}


@pytest.mark.dist
def test_two_ranks_sharded_match_one_rank_and_full_ranking_is_exact(markov, tmp_path):
    from bigrec.testing import run_ranks
    from bigrec.train.checkpoint import load_model_state
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import Trainer, prepare, train

    two = run_ranks(_train_two_ranks, 2, str(markov), str(tmp_path / "two"))
    assert two[0] == two[1]
    plan = json.loads((tmp_path / "two" / "s" / "plan.json").read_text())["plan"]
    assert {t["sharding_type"] for m in plan.values() for t in m.values()} == {"row_wise"}
    try:
        # the 2-rank checkpoint evaluated on one rank: identical full-ranking metrics
        config = _config(SASREC, str(markov), str(tmp_path / "eval"), {"loss": "full"}, 1)
        trainer = Trainer(config, prepare(config))
        load_model_state(tmp_path / "two" / "s" / "checkpoints" / "best", trainer.model)
        one_eval = trainer.evaluate("test")
        for key, value in two[0]["sasrec"].items():
            if key != "loss":
                assert one_eval[key] == value, key
        one = train(_config(SASREC, str(markov), str(tmp_path / "one"), {"loss": "full"}, 2))["test"]
    finally:
        destroy_process_group()
    assert math.isclose(one["recall@10"], two[0]["sasrec"]["recall@10"], abs_tol=0.05)
    popular = most_popular_metrics(str(markov / "train.parquet"), str(markov / "test.parquet"), 201)
    assert two[0]["dssm"]["recall@10"] > popular["recall@10"]
