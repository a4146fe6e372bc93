"""Tasks: losses and metrics, chosen by the task a model declares.

A task object has two methods the trainer uses, and nothing else:

* ``wrap(model) -> nn.Module`` whose ``forward(batch)`` returns
  ``(loss, output)`` with ``output[0]`` the detached loss (the contract of
  TorchRec's train pipelines);
* ``make_metrics(sharded_model, device)`` -> an object with ``update(output)``
  and ``compute() -> dict[str, float]`` (synchronised over all ranks);

and optionally ``label_checks()`` -> :class:`~bigrec.data.labels.BinaryLabels`,
the label columns the data stream checks hold 0/1 (or [0, 1]).

``build_task(model, schema, task_config)`` picks the task class registered for
``model.task``; new task kinds register with :func:`register_task`. So the
trainer has no branch for any model or task kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bigrec.batch import Batch
from bigrec.config import TaskConfig
from bigrec.data.labels import BinaryLabels, binary_labels
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel


@dataclass(frozen=True)
class BinaryTasks:
    """One or more binary labels, each with a loss weight.

    ``logits`` are ``[B]`` (one task) or ``[B, T]``; ``labels`` the matching
    columns of ``Batch.labels``.
    """

    label_names: tuple[str, ...]
    label_columns: tuple[int, ...]
    weights: tuple[float, ...]
    soft_labels: bool = False  # labels may be any value in [0, 1]

    @classmethod
    def for_model(cls, model: RecModel, schema: Schema, labels: Optional[Sequence[str]] = None,
                  weights: Optional[Sequence[float]] = None, soft_labels: bool = False) -> "BinaryTasks":
        if model.task not in ("ranking", "multitask"):
            raise ConfigError(f"task '{model.task}' is not a binary-classification task")
        if labels is None:
            labels = schema.labels[:1] if model.task == "ranking" else schema.labels
        missing = [name for name in labels if name not in schema.labels]
        if missing or not labels:
            raise ConfigError(f"label column(s) {missing or labels} not among the schema's labels {schema.labels}")
        weights = tuple(float(w) for w in (weights or [1.0] * len(labels)))
        if len(weights) != len(labels):
            raise ConfigError(f"{len(weights)} loss weights for {len(labels)} labels")
        num_tasks = getattr(model, "num_tasks", None)  # multi-task models declare T
        if num_tasks is not None and num_tasks != len(labels):
            raise ConfigError(f"model {type(model).__name__} has num_tasks={num_tasks} but the task reads "
                              f"{len(labels)} label(s) {list(labels)}; set task.labels or model.num_tasks")
        return cls(tuple(labels), tuple(schema.labels.index(n) for n in labels), weights, soft_labels)

    @classmethod
    def from_config(cls, model: RecModel, schema: Schema, config: TaskConfig) -> "BinaryTasks":
        return cls.for_model(model, schema, config.labels, config.loss_weights, config.soft_labels)

    def label_checks(self) -> BinaryLabels:
        """The values the data may hold in this task's label columns (checked as it is read)."""
        return binary_labels(self.label_names, self.soft_labels)

    def wrap(self, model: RecModel) -> nn.Module:
        return TrainingModule(model, self)

    def make_metrics(self, sharded_model: nn.Module, device: torch.device):
        from bigrec.train.metrics import BinaryMetrics

        return BinaryMetrics(self.label_names, device)

    def targets(self, batch: Batch) -> torch.Tensor:
        """``[B, T]`` labels of this task."""
        return batch.labels[:, list(self.label_columns)]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Weighted sum over tasks of the mean BCE: ``[B, T] x [B, T] -> []``."""
        per_task = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=0)
        return (per_task * torch.tensor(self.weights, device=logits.device)).sum()


class TrainingModule(nn.Module):
    """``model`` plus its loss, in the form TorchRec's pipelines drive.

    ``forward(batch) -> (loss [], (loss [] detached, probabilities [B, T], labels [B, T]))``.
    """

    def __init__(self, model: RecModel, task: BinaryTasks) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Batch):
        logits = self.model(batch)
        if self.model.task == "ranking":  # [B] -> [B, 1]; a static branch keeps this FX-traceable
            logits = logits.unsqueeze(1)
        targets = self.task.targets(batch)
        loss = self.task.loss(logits, targets)
        return loss, (loss.detach(), torch.sigmoid(logits.detach()), targets)


_TASKS: dict[str, Callable[[RecModel, Schema, TaskConfig], object]] = {
    "ranking": BinaryTasks.from_config,
    "multitask": BinaryTasks.from_config,
}


def register_task(kind: str, builder: Callable[[RecModel, Schema, TaskConfig], object]) -> None:
    """Register the task builder for models whose ``task`` is ``kind``."""
    _TASKS[kind] = builder


def build_task(model: RecModel, schema: Schema, config: TaskConfig):
    """The task object for ``model`` (see the module docstring)."""
    if model.task not in _TASKS:
        raise ConfigError(f"model {type(model).__name__} declares task '{model.task}', which has no "
                          f"registered task; known: {sorted(_TASKS)}")
    return _TASKS[model.task](model, schema, config)
