"""Recall: retrieval losses and full-ranking metrics, SASRec and DSSM, synthetic sequences, export/retrieve."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from bigrec.config import DataConfig, TaskConfig, config_from_dict
from bigrec.data.convert import table_to_batch
from bigrec.data.seen import SeenItems
from bigrec.data.stream import open_split
from bigrec.data.synthetic_sequences import generate_sequences, sequences_to_rows
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models import build_model
from bigrec.tasks.retrieval.baselines import most_popular_metrics
from bigrec.tasks.retrieval.losses import SampledCandidates, full_softmax_loss, sampled_softmax_loss
from bigrec.tasks.retrieval.metrics import full_ranking, slice_top_k, target_ranks
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


def _brute_force_ranks(users, items, targets, seen: dict[int, set[int]]):
    """0-based ranks with ties against the target: other items scoring at least as high."""
    scores = users.double() @ items.double().t()
    scores[:, 0] = float("-inf")
    for row in range(len(targets)):
        for item in seen.get(row, set()) - {int(targets[row])}:
            scores[row, item] = float("-inf")
    target = scores.gather(1, targets[:, None])
    scores[torch.arange(len(targets)), targets] = float("-inf")
    return (scores >= target).sum(dim=1)


def test_full_ranking_matches_brute_force_and_slices_merge_exactly():
    torch.manual_seed(1)
    users, items = torch.randn(30, 5), torch.randn(NUM_ITEMS, 5)
    items[7] = items[8] = items[9]  # ties
    targets = torch.randint(1, NUM_ITEMS, (30,))
    targets[:3] = 8
    user_ids = torch.arange(100, 130)
    pairs = torch.randint(1, NUM_ITEMS, (30, 6))
    seen_sets = {row: set(pairs[row].tolist()) for row in range(30)}
    seen_sets[0].add(int(targets[0]))  # a seen target stays rankable
    seen = SeenItems.from_pairs(np.array([100 + r for r, s in seen_sets.items() for _ in s]),
                                np.array([i for s in seen_sets.values() for i in s]))
    metrics = full_ranking(users, targets, user_ids, seen, lambda ids: items[ids], NUM_ITEMS, ks=(5, 10))
    ranks = _brute_force_ranks(users, items, targets, seen_sets)
    assert metrics["recall@10"] == pytest.approx(float((ranks < 10).double().mean()))
    assert metrics["mrr@5"] == pytest.approx(float(torch.where(ranks < 5, 1.0 / (ranks + 1.0), 0.0).mean()))
    assert metrics["ndcg@10"] == pytest.approx(
        float(torch.where(ranks < 10, 1.0 / torch.log2(ranks + 2.0), 0.0).mean()))
    # two slices (two ranks' shares of the items) give exactly the ranks of one
    ids = torch.arange(NUM_ITEMS)
    pairs = seen.pairs(user_ids)
    one = target_ranks(*slice_top_k(users, items, ids, targets, pairs, 10, 0), 10)
    parts = [slice_top_k(users, items[s], ids[s], targets, pairs, 10, 0) for s in (slice(0, 8), slice(8, 41))]
    two = target_ranks(torch.cat([p[0] for p in parts], 1), torch.stack([p[1] for p in parts]).max(0).values, 10)
    assert torch.equal(one, two)
    assert torch.equal(one, ranks.clamp(max=10))


@pytest.mark.parametrize("params", [
    {"name": "sasrec", "max_len": 2, "hidden_size": 8, "num_heads": 2, "num_layers": 1},
    {"name": "dssm", "user_features": ["user_id"], "hidden_units": [8], "embedding_dim": 8},  # no history at all
])
def test_full_ranking_excludes_every_training_item_for_every_model(tmp_path, params):
    """Histories hold 2 items; the ranking still excludes all of the user's train (+ valid when testing) items."""
    generate_sequences(tmp_path, num_users=40, num_items=30, num_clusters=3, min_length=8, max_length=12,
                       history_len=2, embedding_dim=8)
    schema = Schema.load(tmp_path / "schema.json")
    torch.manual_seed(0)
    model = build_model(params["name"], schema, {k: v for k, v in params.items() if k != "name"})
    task = build_task(model, schema, TaskConfig(options={"loss": "full"}), DataConfig(path=str(tmp_path)))
    module = task.wrap(model).eval()
    for split, before in (("valid", ("train",)), ("test", ("train", "valid"))):
        seen: dict[int, set[int]] = {}
        for name in before:
            rows = pa.parquet.read_table(tmp_path / f"{name}.parquet")
            for user, item in zip(rows.column("user_id").to_pylist(), rows.column("item_id").to_pylist()):
                seen.setdefault(user, set()).add(item)
        metrics = task.make_metrics(module, torch.device("cpu"), split)
        steps = []
        with torch.no_grad():
            for batch in open_split(str(tmp_path / f"{split}.parquet"), schema, 16, 0, 1):
                steps.append(module(batch)[1])
                metrics.update(steps[-1])
            got = metrics.compute()
            items = model.item_vectors(torch.arange(model.num_items))
        users, targets, user_ids = (torch.cat([getattr(s, f) for s in steps]) for f in ("user", "targets", "user_ids"))
        assert len(max(seen.values(), key=len)) > 2 * 2  # far more than the histories hold
        ranks = _brute_force_ranks(users, items, targets, {r: seen[int(u)] for r, u in enumerate(user_ids)})
        for k in (10, 20):
            assert got[f"recall@{k}"] == pytest.approx(float((ranks < k).double().mean())), (split, k)
        assert got["ndcg@10"] == pytest.approx(float(torch.where(ranks < 10, 1 / torch.log2(ranks + 2.0), 0).mean()))


def test_most_popular_excludes_each_users_training_items(tmp_path):
    generate_sequences(tmp_path, num_users=40, num_items=30, num_clusters=3, min_length=8, max_length=12,
                       history_len=2, embedding_dim=8)
    got = _most_popular(tmp_path)
    train = pa.parquet.read_table(tmp_path / "train.parquet")
    counts = torch.bincount(torch.tensor(train.column("item_id").to_pylist()), minlength=31).double()
    seen: dict[int, set[int]] = {}
    for name in ("train", "valid"):
        rows = pa.parquet.read_table(tmp_path / f"{name}.parquet")
        for user, item in zip(rows.column("user_id").to_pylist(), rows.column("item_id").to_pylist()):
            seen.setdefault(user, set()).add(item)
    test = pa.parquet.read_table(tmp_path / "test.parquet")
    targets = torch.tensor(test.column("item_id").to_pylist())
    ranks = _brute_force_ranks(torch.ones(len(targets), 1), counts[:, None], targets,
                               {r: seen.get(u, set()) for r, u in enumerate(test.column("user_id").to_pylist())})
    assert got["recall@10"] == pytest.approx(float((ranks < 10).double().mean()))


def test_constant_scores_rank_every_target_last():
    """Ties count against the target: equal scores must not favour small (popular) ids."""
    targets = torch.tensor([1, 2, 3, 40])
    metrics = full_ranking(torch.ones(4, 2), targets, torch.arange(4), None, lambda ids: torch.ones(ids.numel(), 2),
                           NUM_ITEMS, ks=(5, 10, 20))
    assert metrics["recall@20"] == 0.0 and metrics["ndcg@20"] == 0.0 and metrics["mrr@20"] == 0.0
    # a target tied with fewer than K other items ranks right after them
    items = torch.zeros(NUM_ITEMS, 1)
    items[[1, 2, 3]] = 1.0
    metrics = full_ranking(torch.ones(1, 1), torch.tensor([1]), torch.arange(1), None, lambda ids: items[ids],
                           NUM_ITEMS, ks=(2, 3))
    assert metrics["recall@2"] == 0.0 and metrics["recall@3"] == 1.0 and metrics["mrr@3"] == pytest.approx(1 / 3)


def test_sampled_softmax_log_q_matches_the_expected_counts_of_the_mixed_proposal():
    """log q_j = log E[count of j among the B in-batch + M sampled candidates] = log(B p_j + M r_j)."""
    torch.manual_seed(0)
    num_items, batch, negatives = 8, 6, 4
    for sampler_name in ("uniform", "popularity"):
        sampler = SampledCandidates(num_items, negatives, sampler_name, padding_item=0)
        sampler.counts.copy_(torch.tensor([0.0, 1, 2, 3, 4, 5, 6, 9]))
        p = sampler.counts / sampler.counts.sum()
        r = p if sampler_name == "popularity" else torch.tensor([0.0] + [1 / 7] * 7, dtype=torch.float64)
        ids = torch.arange(1, num_items)
        log_q = sampler.log_expected_counts(ids, batch)
        assert torch.allclose(log_q, torch.log(batch * p[1:] + negatives * r[1:]))
        # the same counts, measured: in-batch targets drawn from p, negatives from the sampler
        trials = 4000
        seen = torch.zeros(num_items, dtype=torch.float64)
        for _ in range(trials):
            candidates = torch.cat([torch.multinomial(p, batch, replacement=True), sampler.sample()])
            seen += torch.bincount(candidates, minlength=num_items)
        assert torch.allclose(seen[1:] / trials, log_q.exp(), rtol=0.06), sampler_name


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


def _most_popular(data) -> dict:
    schema = Schema.load(data / "schema.json")
    seen = SeenItems.from_splits([str(data / "train.parquet"), str(data / "valid.parquet")], schema)
    return most_popular_metrics(str(data / "train.parquet"), str(data / "test.parquet"), schema, seen)


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
    popular = _most_popular(markov)
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
def _fit(config) -> tuple[dict, list]:
    """Train in this process: ``(test metrics, the sampled loss's popularity counts or [])``."""
    from bigrec.train.trainer import Trainer, prepare

    trainer = Trainer(config, prepare(config))
    result = trainer.fit()
    sampler = getattr(trainer.model.module.loss_fn, "sampler", None)
    return result["test"], sampler.counts.tolist() if sampler is not None else []


def _train_two_ranks(markov: str, movielens: str, out: str) -> dict:
    sasrec = _config(SASREC, markov, out + "/s", {"loss": "full"}, 2)
    sasrec.sharding.sharding_types = ["row_wise"]
    # the user id rides in a bag that the train pipeline owns; candidates must not call it again
    dssm = _config({**DSSM_MEAN, "user_features": ["user_id", "hist_item_ids"]}, markov, out + "/d",
                   {"loss": "sampled", "num_negatives": 64}, 2)
    dssm.sharding.sharding_types = ["table_wise"]
    features = _config(DSSM_FEATURES, movielens, out + "/f", {"loss": "sampled", "num_negatives": 8}, 1)
    features.sharding.sharding_types = ["table_wise"]
    dssm_test, counts = _fit(dssm)
    return {"sasrec": _fit(sasrec)[0], "dssm": dssm_test, "counts": counts, "features": _fit(features)[0]}


def _evaluate_on_one_rank(config, checkpoint) -> dict:
    from bigrec.train.checkpoint import load_model_state
    from bigrec.train.trainer import Trainer, prepare

    trainer = Trainer(config, prepare(config))
    load_model_state(checkpoint, trainer.model)
    return trainer.evaluate("test")


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    """The tiny MovieLens of the data-prep tests, recall layout (item features and an item catalogue)."""
    from bigrec.data.movielens import prepare_movielens
    from tests.test_data_prep import _write_grouplens

    root = tmp_path_factory.mktemp("movielens")
    prepare_movielens(_write_grouplens(root / "raw"), root / "out", history_len=3, embedding_dim=8)
    return root / "out" / "recall"


DSSM_FEATURES = {"name": "dssm", "item_features": ["item_id", "genres", "year"], "hidden_units": [16, 8],
                 "embedding_dim": 8, "temperature": 0.1}


@pytest.mark.dist
def test_two_ranks_sharded_match_one_rank_and_full_ranking_is_exact(markov, movielens, tmp_path):
    from bigrec.train.distributed import destroy_process_group
    from bigrec.testing import run_ranks

    two = run_ranks(_train_two_ranks, 2, str(markov), str(movielens), str(tmp_path / "two"))
    assert two[0] == two[1]  # metrics, and the sampled softmax's popularity counts, on both ranks
    plan = json.loads((tmp_path / "two" / "s" / "plan.json").read_text())["plan"]
    assert {t["sharding_type"] for m in plan.values() for t in m.values()} == {"row_wise"}
    # log-Q counts are global: every rank's targets, each of the 2 epochs, add-one smoothed, padding never
    targets = torch.tensor(pa.parquet.read_table(markov / "train.parquet").column("item_id").to_pylist())
    expected = 1 + 2 * torch.bincount(targets, minlength=201).double()
    expected[0] = 0
    assert torch.equal(torch.tensor(two[0]["counts"], dtype=torch.float64), expected)
    plan = json.loads((tmp_path / "two" / "f" / "plan.json").read_text())["plan"]
    assert {"genres", "year", "item"} <= {name for m in plan.values() for name in m}
    try:
        # 2-rank checkpoints evaluated on one rank: identical full-ranking metrics (item features included)
        for name, params, data, options in (("s", SASREC, markov, {"loss": "full"}),
                                            ("f", DSSM_FEATURES, movielens, {"loss": "sampled"})):
            one_eval = _evaluate_on_one_rank(_config(params, str(data), str(tmp_path / f"eval{name}"), options, 1),
                                             tmp_path / "two" / name / "checkpoints" / "best")
            for key, value in two[0]["sasrec" if name == "s" else "features"].items():
                if key != "loss":
                    assert one_eval[key] == value, (name, key)
        one = _fit(_config(SASREC, str(markov), str(tmp_path / "one"), {"loss": "full"}, 2))[0]
    finally:
        destroy_process_group()
    assert math.isclose(one["recall@10"], two[0]["sasrec"]["recall@10"], abs_tol=0.05)
    assert two[0]["dssm"]["recall@10"] > _most_popular(markov)["recall@10"]


def test_popularity_counts_survive_a_checkpoint_resume(markov, tmp_path):
    """The sampled softmax's log-Q counts are checkpointed: a resumed run continues from them, not from zero."""
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import Trainer, prepare

    config = _config(DSSM_MEAN, str(markov), str(tmp_path / "run"), {"loss": "sampled", "num_negatives": 8}, 1)
    config.trainer.max_steps_per_epoch = 5
    try:
        first = Trainer(config, prepare(config))
        first.fit()
        counts = first.model.module.loss_fn.sampler.counts.clone()
        assert counts.sum() > counts.numel()  # it counted this run's targets
        config.trainer.epochs, config.trainer.resume = 2, "auto"
        resumed = Trainer(config, prepare(config))
        assert resumed.resumed_from is not None
        assert torch.equal(resumed.model.module.loss_fn.sampler.counts, counts)
    finally:
        destroy_process_group()
