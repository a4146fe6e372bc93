"""Facebook DSSM: auxiliary heads on the shared towers (labels from the batch, gradients into both towers),
offline hard-negative mining from the model's own top results, online mining, bad configs."""

from __future__ import annotations

import pytest
import torch

from bigrec.data.seen import SeenItems
from bigrec.errors import ConfigError
from bigrec.models import build_model
from bigrec.models.recall.facebook_dssm import FacebookDSSM
from bigrec.tasks.retrieval.losses import MarginLoss
from bigrec.tasks.retrieval.mining import MinedNegatives, MiningPass
from bigrec.tasks.retrieval.task import RetrievalOptions, RetrievalStep
from tests.models.recall_helpers import sequence_batch, sequence_schema

# in-batch negatives are each rank's own rows: the parity run scores against the full corpus
PARITY_OVERRIDES = {"task": {"options": {"loss": "full", "mining": "online"}}}


def mechanism(model: FacebookDSSM, batch) -> None:
    """Unit-norm towers whose vectors differ between rows; auxiliary logits follow both towers."""
    model.eval()
    with torch.no_grad():
        output = model(batch, torch.arange(1, 4))
        assert torch.allclose(output.user.norm(dim=-1), torch.ones(batch.batch_size), atol=1e-5)
        assert output.user.std(dim=0).amax() > 0 and output.target.std(dim=0).amax() > 0
        if model.num_tasks:
            logits = model.task_logits(output.user, output.target)
            assert logits.shape == (batch.batch_size, model.num_tasks) and logits.std(dim=0).amin() > 0
            assert (model.task_logits(output.user, output.target.flip(0)) - logits).abs().amax() > 1e-6
            assert set(output.aux_losses) == set(model.task_labels)


def test_auxiliary_heads_use_the_batch_labels_and_train_both_towers():
    schema = sequence_schema(labels=["click", "rating"])
    torch.manual_seed(0)
    model = build_model("facebook_dssm", schema, {"user_features": ["user_id", "hist_item_ids"],
                                                  "hidden_units": [16, 8], "embedding_dim": 8, "num_tasks": 2,
                                                  "task_types": ["binary", "regression"]})
    assert model.aux_loss_names == ("click", "rating")
    batch = sequence_batch(schema, [[1, 2], [3], [4, 5, 6]], [7, 8, 9],
                           labels={"click": [1.0, 0.0, 1.0], "rating": [5.0, 2.0, 4.0]})
    mechanism(model, batch)
    model.train()
    output = model(batch, torch.arange(1, 4))
    logits = model.task_logits(output.user, output.target)
    expected = torch.nn.functional.mse_loss(logits[:, 1], torch.tensor([5.0, 2.0, 4.0]))
    assert torch.allclose(output.aux_losses["rating"], expected)
    output.aux_losses["click"].backward()
    for tower in (model.user_tower, model.item_tower):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())


def test_facebook_dssm_bad_config_is_one_clear_error():
    schema = sequence_schema(labels=["click"])
    for params, match in (({"num_tasks": 2}, "label"), ({"num_tasks": 1, "task_types": ["ordinal"]}, "task_types"),
                          ({"task_labels": ["nope"], "num_tasks": 1}, "label"), ({"num_tasks": -1}, "num_tasks")):
        with pytest.raises(ConfigError, match=match):
            build_model("facebook_dssm", schema, params)
    with pytest.raises(ConfigError, match="mining"):
        RetrievalOptions.from_dict({"loss": "sampled", "mining": "offline"})


def test_offline_mining_takes_the_model_top_results_and_rows_draw_them():
    """Users score items by a dot product: the mined items are their best unseen ones from rank ``start``."""
    items = torch.eye(6)  # item i = e_i
    miner = MinedNegatives(num_users=4, num_items=6, count=2, padding_item=0)
    seen = SeenItems.from_pairs(torch.tensor([1, 2]).numpy(), torch.tensor([5, 1]).numpy())
    mining = MiningPass(miner, lambda ids: items[ids], seen, start=1, padding_item=0)
    users = torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0.9, 0.5, 0.4, 0.3, 0.2, 0.1]])
    # user 1 has two rows (their vectors average to the first row), user 2 one
    rows = RetrievalStep(torch.zeros(()), {}, torch.cat([users[:1] * 2, users[:1] * 0, users[1:]]),
                         torch.zeros(3, dtype=torch.int64), torch.tensor([1, 1, 2]))
    mining.update(rows)
    assert mining.compute() == {"mined_users": 2.0}
    # user 1 ranks 5 (seen), 4, 3, 2, 1 -> from rank 1: [3, 2]; user 2 ranks 0 (padding), 1 (seen), 2, 3, 4 -> [3, 4]
    assert miner.mined[1].tolist() == [3, 2] and miner.mined[2].tolist() == [3, 4]
    assert miner.mined[3].tolist() == [-1, -1]
    torch.manual_seed(0)
    draws = miner.sample(torch.tensor([1] * 50 + [3] * 50 + [-1]))
    assert set(draws[:50].tolist()) == {2, 3}
    assert draws[50:].min() >= 1 and len(set(draws[50:].tolist())) > 2  # none mined: uniform over items 1..5


def test_margin_loss_adds_the_mined_triplet():
    loss = MarginLoss(num_items=6, temperature=1.0, padding_item=0, margin=0.5, mining="offline", mined_count=2,
                      num_users=4)
    loss.miner.mined[1] = torch.tensor([4, 4])
    ids = loss.candidate_ids(torch.tensor([1, 1]))
    assert ids.tolist() == [4, 4]  # no sampled negatives, one mined per row
    from bigrec.models.output import RecallOutput

    user, target = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mined = torch.tensor([[0.8, 0.6], [0.8, 0.6]])
    value = loss(RecallOutput(user, target, mined), torch.tensor([2, 3]), ids)
    # row 0: random negative = row 1's target (score 0) -> 0; mined 0.8 -> 0.5 - 1 + 0.8 = 0.3
    # row 1: positive 0, random negative row 0's target (1) -> 1.5; mined 0.8 -> 1.3
    assert value.item() == pytest.approx((0.3 + 1.5 + 1.3) / 2)


def test_margin_loss_averages_several_random_negatives_never_the_own_item():
    from bigrec.models.output import RecallOutput
    from bigrec.tasks.retrieval.task import RetrievalOptions

    user, target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sampled = torch.tensor([[0.9, 0.0], [0.0, 0.2], [0.5, 0.5]])  # scores row 0: 0.9 0 0.5, row 1: 0 0.2 0.5
    ids, targets = torch.tensor([2, 5, 4]), torch.tensor([2, 3])  # item 2 is row 0's own target: never a negative
    every = MarginLoss(num_items=6, temperature=1.0, padding_item=0, margin=0.5, random_negatives=8)
    value = every(RecallOutput(user, target, sampled), targets, ids)
    # row 0 (positive 1): negatives row 1's target 0, item 5 0, item 4 0.5 -> triplets 0, 0, 0
    # row 1 (positive 1): negatives row 0's target 0, item 2 0, item 5 0.2, item 4 0.5 -> 0, 0, 0, 0
    assert value.item() == pytest.approx(0.0)
    user = torch.tensor([[0.5, 0.0], [0.0, 0.5]])  # positives score 0.5: a triplet is the negative's score
    value = every(RecallOutput(user, target, sampled), targets, ids)
    # row 0: 0 (row 1's target), 0 (item 5), 0.25 (item 4); row 1: 0, 0 (item 2), 0.1, 0.25
    assert value.item() == pytest.approx((0.25 / 3 + 0.35 / 4) / 2)
    torch.manual_seed(0)
    one = MarginLoss(num_items=6, temperature=1.0, padding_item=0, margin=0.5)  # one random negative per row
    user = torch.tensor([[0.5, 0.0], [0.5, 0.5]])  # row 0: only row 1's target (0); row 1: row 0's (0.5) or item 2
    draws = {round(one(RecallOutput(user, target, sampled[:1]), targets, ids[:1]).item(), 4) for _ in range(30)}
    assert draws == {0.25, 0.225}
    with pytest.raises(ConfigError, match="random_negatives"):
        RetrievalOptions.from_dict({"loss": "margin", "random_negatives": 0})


def test_mined_negatives_are_checkpointed_and_a_mid_epoch_resume_keeps_them(tmp_path):
    """The mined table is checkpointed: a run resumed mid-epoch trains on it, without mining again."""
    from bigrec.testing import SYNTHETIC_SETS
    from bigrec.train.distributed import destroy_process_group
    from bigrec.train.trainer import Trainer, prepare
    from tests.models.recall_helpers import run_config

    SYNTHETIC_SETS["interests"](tmp_path / "data", 0)
    model = {"name": "facebook_dssm", "user_features": ["hist_item_ids"], "hidden_units": [16, 8], "embedding_dim": 8}
    config = run_config(model, tmp_path / "data", tmp_path / "run",
                        {"loss": "margin", "num_negatives": 8, "mining": "offline", "mined_start": 2,
                         "mined_count": 4}, epochs=2)
    config.trainer.max_steps_per_epoch, config.trainer.checkpoint_every_steps = 3, 5  # saved mid-epoch 2
    try:
        first = Trainer(config, prepare(config))
        first.train_epoch(0)
        first.train_epoch(1)  # mines before it
        mined = first.model.module.loss_fn.miner.mined.clone()
        assert (mined >= 0).any()
        config.trainer.resume = "auto"
        resumed = Trainer(config, prepare(config))
        assert (resumed.progress.epoch, resumed.progress.batches_done) == (1, 2)
        assert torch.equal(resumed.model.module.loss_fn.miner.mined, mined)
        resumed.task.epoch_passes = lambda *_: pytest.fail("a mid-epoch resume mined again")
        resumed.train_epoch(1, 2)
    finally:
        destroy_process_group()
