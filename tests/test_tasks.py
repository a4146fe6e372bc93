"""Tasks: label tasks with binary and regression types, auxiliary losses, predictions;
retrieval scoring of multi-interest users and the margin loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bigrec.config import TaskConfig
from bigrec.errors import ConfigError
from bigrec.features import DenseFeature, Schema
from bigrec.models.output import ModelOutput, RecallOutput, paired_score, score
from bigrec.tasks import build_task
from bigrec.tasks.retrieval.losses import LOSSES, MarginLoss, full_softmax_loss


class TwoTasks(nn.Module):
    """A stand-in multi-task model: logits are the first two dense columns; one aux loss."""

    task = "multitask"
    num_tasks = 2
    task_types = ["binary", "regression"]
    aux_loss_names = ("penalty",)

    def forward(self, batch):
        return ModelOutput(batch.dense[:, :2], aux_losses={"penalty": batch.dense[:, 2].mean()},
                           extras={"p_extra": batch.dense[:, 0] * 0 + 0.5})


def _batch(dense, labels):
    from bigrec.batch import Batch
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    empty = KeyedJaggedTensor.empty()
    return Batch(torch.tensor(dense), empty, empty, torch.tensor(labels))


SCHEMA = Schema([DenseFeature("a"), DenseFeature("b"), DenseFeature("c")], labels=["click", "rating"])


def test_binary_and_regression_losses_aux_terms_and_predictions():
    model = TwoTasks()
    task = build_task(model, SCHEMA, TaskConfig(loss_weights=[1.0, 0.5], aux_loss_weights={"penalty": 0.1}))
    batch = _batch([[0.0, 3.0, 2.0], [2.0, 4.0, 4.0]], [[0.0, 5.0], [1.0, 2.0]])
    loss, step = task.wrap(model)(batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 1.0]))
    mse = torch.tensor(((3 - 5) ** 2 + (4 - 2) ** 2) / 2)
    assert torch.allclose(loss, bce + 0.5 * mse + 0.1 * 3.0)
    assert set(step.terms) == {"loss/click", "loss/rating", "aux/penalty", "weight/click", "weight/rating"}
    assert float(step.terms["weight/rating"]) == 0.5  # the loss weights are logged per step
    assert torch.allclose(step.terms["loss/rating"], mse)
    assert torch.allclose(step.predictions[:, 1], torch.tensor([3.0, 4.0]))  # regression: the value itself
    assert torch.allclose(step.predictions[:, 0], torch.sigmoid(torch.tensor([0.0, 2.0])))
    columns = task.prediction_columns(step)
    assert set(columns) == {"score_click", "score_rating", "p_extra", "click", "rating"}
    metrics = task.make_metrics(model, torch.device("cpu"))
    metrics.update(step)
    values = metrics.compute()
    assert values["rating/mse"] == pytest.approx(4.0) and values["rating/mae"] == pytest.approx(2.0)
    assert values["click/auc"] == pytest.approx(1.0) and "click/logloss" in values


def test_misspelt_aux_loss_weight_and_bad_task_type_are_config_errors():
    with pytest.raises(ConfigError, match="penalti"):
        build_task(TwoTasks(), SCHEMA, TaskConfig(aux_loss_weights={"penalti": 1.0}))
    bad = TwoTasks()
    bad.task_types = ["binary", "ordinal"]
    with pytest.raises(ConfigError, match="ordinal"):
        build_task(bad, SCHEMA, TaskConfig())


def test_multi_interest_users_score_items_by_their_best_interest():
    user = torch.randn(3, 4, 8)
    items = torch.randn(10, 8)
    expected = torch.stack([(user[:, k] @ items.t()) for k in range(4)]).amax(dim=0)
    assert torch.allclose(score(user, items), expected, atol=1e-6)
    assert torch.allclose(score(user[:, 0], items), user[:, 0] @ items.t(), atol=1e-6)
    assert torch.allclose(paired_score(user, items[:3]), expected[torch.arange(3), torch.arange(3)], atol=1e-6)
    targets = torch.tensor([1, 2, 3])
    direct = torch.nn.functional.cross_entropy(expected, targets)
    assert torch.allclose(full_softmax_loss(user, items, targets), direct, atol=1e-6)


def test_margin_loss_is_zero_beyond_the_margin_and_mines_the_hardest_negative():
    assert set(LOSSES) >= {"full", "sampled", "margin"}
    users = torch.eye(3)
    loss = MarginLoss(num_items=10, temperature=1.0, padding_item=0, margin=0.5, hard_negatives=True)
    easy = RecallOutput(users, torch.eye(3), torch.zeros(0, 3))  # positives score 1, negatives 0
    assert loss(easy, torch.tensor([1, 2, 3]), torch.zeros(0, dtype=torch.int64)) == 0
    hard = RecallOutput(users, torch.eye(3), torch.tensor([[0.9, 0.0, 0.0]]))  # close to user 0's positive
    value = loss(hard, torch.tensor([1, 2, 3]), torch.tensor([7]))
    assert value == pytest.approx((0.5 - 1 + 0.9) / 3)  # only row 0 violates the margin
