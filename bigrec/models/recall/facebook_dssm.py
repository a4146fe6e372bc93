"""Facebook DSSM: embedding-based retrieval (Huang et al., 2020, "Embedding-based Retrieval in Facebook Search")."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.nn import functional as F

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.experts import TaskTowers
from bigrec.models.multitask import check_task_types
from bigrec.models.recall import RecallOutput
from bigrec.models.recall.dssm import DSSM
from bigrec.models.registry import register_model


@register_model("facebook_dssm")
class FacebookDSSM(DSSM):
    """Two towers trained as embedding-based retrieval, with auxiliary task heads on the shared towers.

    The towers are :class:`~bigrec.models.recall.dssm.DSSM`'s: the user tower over
    the user-side features (history mean included), the item tower over the item
    id and item-side features (the item catalogue for candidates), both
    L2-normalised, so a score is a cosine. The retrieval loss is the task's
    ``margin`` loss (``relu(margin - cos(u, v+) + cos(u, v-))``) with random
    negatives and hard negatives mined from the model's own top results, online in
    the batch (``task.options.hard_negatives: true``) or offline once per epoch
    (``task.options.mining: offline``); see :mod:`bigrec.tasks.retrieval.mining`.

    Auxiliary tasks: ``num_tasks`` heads (``task_types``: ``binary`` or
    ``regression``) read ``[u, v, u * v]`` of each row's user and target vectors,
    so their gradients reach both towers; head ``t`` predicts label
    ``task_labels[t]`` of the batch (default: the schema's labels in order, e.g.
    MovieLens ``click``) with BCE or MSE, emitted as the auxiliary loss named after
    the label (weighted by ``task.aux_loss_weights``).

    Args:
        schema: data schema (leave-last-out recall layout).
        user_features, item_features: tower inputs (default: the schema's user / item side).
        hidden_units: tower MLP sizes; the last is the output dim H.
        num_tasks: auxiliary heads (0: none).
        task_types: one of ``binary`` / ``regression`` per head (default all binary).
        task_labels: the label column of each head (default: the schema's first ``num_tasks`` labels).
        task_hidden_units: MLP of each head.
        dropout_rates, embedding_dim, temperature, activation, item_feature: as in DSSM.

    Shapes: ``forward(batch, candidate_ids [M]) -> RecallOutput(user [B, H], target [B, H], candidates [M, H],
    aux_losses {label: []})``; :meth:`task_logits` ``-> [B, T]``.

    Example::

        model = FacebookDSSM(schema, hidden_units=[64, 32], num_tasks=1, task_types=["binary"])
        out = model(batch, torch.arange(10))  # out.aux_losses["click"]
    """

    def __init__(self, schema: Schema, user_features: Optional[Sequence[str]] = None,
                 item_features: Optional[Sequence[str]] = None, hidden_units: Sequence[int] = (128, 64),
                 num_tasks: int = 0, task_types: Optional[Sequence[str]] = None,
                 task_labels: Optional[Sequence[str]] = None, task_hidden_units: Sequence[int] = (32,),
                 dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 32, temperature: float = 0.05,
                 activation: str = "relu", item_feature: str = "item_id",
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema, user_features=user_features, item_features=item_features, hidden_units=hidden_units,
                         dropout_rates=dropout_rates, embedding_dim=embedding_dim, temperature=temperature,
                         activation=activation, item_feature=item_feature, device=device)
        if int(num_tasks) < 0:
            raise ConfigError(f"facebook_dssm: num_tasks must be >= 0, got {num_tasks}")
        if int(num_tasks) == 0 and not task_types:
            self.num_tasks, self.task_types = 0, []
        else:
            self.num_tasks, self.task_types = check_task_types("facebook_dssm", int(num_tasks), task_types)
        labels = list(task_labels) if task_labels is not None else list(schema.labels[:self.num_tasks])
        unknown = [n for n in labels if n not in schema.labels]
        if len(labels) != self.num_tasks or unknown:
            raise ConfigError(f"facebook_dssm: {self.num_tasks} auxiliary task(s) need as many label columns, got "
                              f"{labels} (schema labels: {list(schema.labels)})")
        self.task_labels = labels
        self.aux_loss_names = tuple(labels)
        self.label_columns = [list(schema.labels).index(n) for n in labels]
        out = int(list(hidden_units)[-1])
        self.heads = TaskTowers(3 * out, list(task_hidden_units), self.num_tasks, activation=activation) \
            if self.num_tasks else None

    def task_logits(self, user: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` auxiliary logits from the ``[B, H]`` user and target vectors."""
        joint = torch.cat([user, target, user * target], dim=1)
        return self.heads([joint] * self.num_tasks)

    def forward(self, batch: Batch, candidate_ids: torch.Tensor) -> RecallOutput:
        output = super().forward(batch, candidate_ids)
        if self.heads is not None:
            logits = self.task_logits(output.user, output.target)
            for t, (label, kind) in enumerate(zip(self.task_labels, self.task_types)):
                y = batch.labels[:, self.label_columns[t]]
                loss = (F.binary_cross_entropy_with_logits(logits[:, t], y) if kind == "binary"
                        else F.mse_loss(logits[:, t], y))
                output.aux_losses[label] = loss
        return output
