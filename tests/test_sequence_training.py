"""One-pass sequence training: the sequences layout, per-position outputs and losses (SASRec, GRU4Rec, NARM)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from bigrec.config import TaskConfig
from bigrec.data.convert import table_to_batch
from bigrec.data.sequences import check_train_layout, layout_metadata, window_ends
from bigrec.data.synthetic_sequences import build_schema, generate_sequences, sequences_to_rows
from bigrec.errors import ConfigError
from bigrec.models import build_model
from bigrec.tasks import build_task

SEQUENCE_MODELS = {
    "sasrec": {"max_len": 6, "hidden_size": 8, "num_heads": 2, "num_layers": 1, "dropout_rate": 0.0},
    "gru4rec": {"hidden_size": 12, "num_layers": 2, "embedding_dim": 8, "dropout_rate": 0.0},
    "narm": {"hidden_size": 12, "attention_size": 6, "embedding_dim": 8, "dropout_rate": 0.0},
}
NONE = torch.zeros(0, dtype=torch.int64)


def _batch(histories: list[list[int]], targets: list[int], schema):
    table = pa.table({"user_id": pa.array(range(1, len(targets) + 1), pa.int64()),
                      "item_id": pa.array(targets, pa.int64()),
                      "hist_item_ids": pa.array(histories, pa.list_(pa.int64()))})
    return table_to_batch(table, schema)


def assert_reaches_user(model, part: torch.nn.Module, batch, what: str) -> None:
    """Mechanism check: zeroing ``part``'s (first) output changes the model's evaluation user vectors."""
    model.eval()
    with torch.no_grad():
        base = model(batch, NONE).user
        hook = part.register_forward_hook(lambda module, inputs, out: (torch.zeros_like(out[0]),) + tuple(out[1:]))
        try:
            without = model(batch, NONE).user
        finally:
            hook.remove()
    assert not torch.allclose(base, without, atol=1e-6), f"{what} does not reach the user vector"


@pytest.mark.parametrize("stride", [4, 2])
def test_windows_cover_every_training_target_once(stride):
    """Windows of 4 items, the last ``stride`` positions targets: each target once, with >= 4 - stride before it."""
    walks = [np.arange(1, 14), np.arange(20, 25), np.array([30, 31])]
    tables, skipped = sequences_to_rows(np.array([1, 2, 3]), walks, history_len=4, stride=stride)
    assert skipped == 1
    windows = tables["train_sequences"].to_pylist()
    covered = {}
    for row in windows:  # position j of the history predicts hist[j + 1], the last one item_id
        history = row["hist_item_ids"]
        for j, target in enumerate(history[1:] + [row["item_id"]]):
            if j >= len(history) - stride:  # the earlier positions are context only
                covered.setdefault(row["user_id"], []).append(target)
                context = history[:j + 1]
                assert len(context) >= min(4 - stride, target - walks[row["user_id"] - 1][0])
    train = tables["train"].to_pylist()
    for user in (1, 2):
        # the per-prefix targets with a non-empty history, each exactly once
        expected = [r["item_id"] for r in train if r["user_id"] == user and r["hist_item_ids"]]
        assert sorted(covered[user]) == sorted(expected)
    assert all(len(r["hist_item_ids"]) <= 4 for r in windows)
    assert window_ends(np.array([0, 1, 5]), np.array([5, 5, 5]), 4).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="stride must be in"):
        sequences_to_rows(np.array([1]), walks[:1], history_len=4, stride=5)


def test_context_only_positions_are_not_targets():
    """With overlapping windows (stride 2 of 6) only each row's last 2 real positions are trained."""
    schema = build_schema(20, 40, 6, embedding_dim=8, metadata={"sequences": layout_metadata(6, 3, stride=2)})
    model = build_model("sasrec", schema, SEQUENCE_MODELS["sasrec"]).train()
    output = model(_batch([[1, 2, 3], [4], [8, 9, 10, 11, 12, 13]], [5, 6, 7], schema), NONE)
    assert output.position_targets.tolist() == [[-1, 3, 5, -1, -1, -1], [6, -1, -1, -1, -1, -1],
                                                [-1, -1, -1, -1, 13, 7]]


def test_train_layout_mismatch_is_one_clear_error(tmp_path):
    schema = generate_sequences(tmp_path, num_users=30, num_items=40, num_clusters=4, min_length=4, max_length=8,
                                history_len=8)
    assert (tmp_path / "train_sequences.parquet").exists()
    with pytest.raises(ConfigError, match="data.train=train_sequences.parquet"):
        check_train_layout(schema, "train.parquet", True, "gru4rec")
    with pytest.raises(ConfigError, match="data.train=train.parquet"):
        check_train_layout(schema, "train_sequences.parquet", False, "dssm")
    check_train_layout(schema, "train_sequences.parquet", True, "gru4rec")
    # full ranking excludes every training interaction, read from the per-prefix rows, not the windows' targets
    from bigrec.config import DataConfig

    model = build_model("gru4rec", schema, {"embedding_dim": 8})
    users = torch.arange(1, 31)
    seen = {train: build_task(model, schema, TaskConfig(), DataConfig(path=str(tmp_path), train=train))
            .seen_items("test").lists(users) for train in ("train.parquet", "train_sequences.parquet")}
    assert seen["train_sequences.parquet"] == seen["train.parquet"]
    assert sum(map(len, seen["train.parquet"])) > 2 * 30
    with pytest.raises(ConfigError, match="max_len >= 8"):
        build_model("sasrec", schema, {"max_len": 4, "hidden_size": 8})


@pytest.mark.parametrize("name", sorted(SEQUENCE_MODELS))
def test_one_pass_equals_every_prefix_and_its_loss(name):
    """Each position's training vector is the evaluation vector of that prefix (causal, padding-free),
    and the one-pass full-softmax loss is the mean of the per-prefix losses."""
    torch.manual_seed(0)
    schema = build_schema(20, 40, 6, embedding_dim=8)
    model = build_model(name, schema, SEQUENCE_MODELS[name])
    histories, targets = [[1, 2, 3], [4], [8, 9, 10, 11, 12, 13], []], [5, 6, 7, 9]
    batch = _batch(histories, targets, schema)
    module = build_task(model, schema, TaskConfig(options={"loss": "full"})).wrap(model)
    module.train()
    output = model(batch, NONE)
    assert output.position_targets.tolist() == [[2, 3, 5, -1, -1, -1], [6, -1, -1, -1, -1, -1],
                                                [9, 10, 11, 12, 13, 7], [-1] * 6]
    one_pass = module(batch)[0]

    prefixes = [h[:t + 1] for h in histories for t in range(len(h))]
    next_items = [t for h, target in zip(histories, targets) if h for t in h[1:] + [target]]
    prefix_batch = _batch(prefixes, next_items, schema)
    model.eval()
    with torch.no_grad():
        expected = model(prefix_batch, NONE).user
    keep = output.position_targets >= 0
    torch.testing.assert_close(output.user[keep], expected, atol=1e-5, rtol=1e-4)
    model.all_positions = False
    module.train()
    torch.testing.assert_close(one_pass, module(prefix_batch)[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("loss", ["full", "sampled", "bpr_max", "top1_max", "margin"])
def test_a_batch_without_positions_trains_nothing_and_stays_finite(loss):
    torch.manual_seed(0)
    schema = build_schema(20, 40, 6, embedding_dim=8)
    model = build_model("gru4rec", schema, SEQUENCE_MODELS["gru4rec"])
    module = build_task(model, schema, TaskConfig(options={"loss": loss, "num_negatives": 4})).wrap(model).train()
    value = module(_batch([[], []], [3, 4], schema))[0]
    value.backward()
    assert value.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    with pytest.raises(ConfigError, match="bpr_reg"):
        build_task(model, schema, TaskConfig(options={"loss": "bpr_max", "bpr_reg": -1}))


@pytest.mark.parametrize("loss", ["bpr_max", "top1_max"])
def test_ranking_losses_match_their_formulas_and_exclude_the_own_item(loss):
    from bigrec.models.output import RecallOutput
    from bigrec.tasks.retrieval.losses import LOSSES

    torch.manual_seed(0)
    user, items = torch.randn(3, 4), torch.randn(5, 4)
    targets, negative_ids = torch.tensor([1, 2, 1]), torch.tensor([3, 2])
    output = RecallOutput(user, items[targets], items[negative_ids])
    value = LOSSES[loss](num_items=5, temperature=1.0, padding_item=None, bpr_reg=0.5)(output, targets, negative_ids)
    rows = []
    for b in range(3):
        ids = torch.cat([targets, negative_ids])
        scores = user[b] @ torch.cat([items[targets], items[negative_ids]]).T
        negative = ids != targets[b]
        s, r = scores[negative], user[b] @ items[targets[b]]
        w = torch.softmax(s, 0)
        if loss == "bpr_max":
            rows.append(-torch.log((w * torch.sigmoid(r - s)).sum()) + 0.5 * (w * s * s).sum())
        else:
            rows.append((w * (torch.sigmoid(s - r) + torch.sigmoid(s * s))).sum())
    torch.testing.assert_close(value, torch.stack(rows).mean())
