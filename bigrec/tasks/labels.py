"""Label tasks: one or more label columns, each ``binary`` or ``regression``.

A ranking model (``logits [B]``) is the one-task case; a multi-task model
(``logits [B, T]``) declares ``task_types`` (one per task, default all
``binary``). Per task type:

============== ============================= ===================== ==================
type           prediction                    loss                  metrics
============== ============================= ===================== ==================
``binary``     ``sigmoid(logit)``            BCE with logits       AUC, logloss
``regression`` the logit itself              MSE                   MSE, MAE
============== ============================= ===================== ==================

The per-task losses are combined by ``task.loss_weighting`` (:mod:`bigrec.tasks.weighting`:
``fixed`` ``sum_t w_t * loss_t`` with ``task.loss_weights``, learned ``uncertainty``
weights, or ``gradnorm``), plus the model's auxiliary losses (``task.aux_loss_weights``).
ESMM fits here unchanged: its outputs are the logits of pCTR and of pCTCVR = pCTR x pCVR,
both labelled on every impression; it declares ``nested_labels`` (a conversion implies a
click), which :meth:`LabelTask.check_labels` enforces on the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from torch.nn import functional as F

from bigrec.batch import Batch
from bigrec.config import DataConfig, TaskConfig
from bigrec.errors import ConfigError, DataError
from bigrec.features import Schema
from bigrec.models.output import TASK_TYPES
from bigrec.tasks.base import AuxiliaryLosses
from bigrec.tasks.metrics import LabelMetrics
from bigrec.tasks.weighting import make_weighting, parse_weighting


class LabelStep(NamedTuple):
    """What a :class:`LabelModule` step gives the trainer, metrics and predict.

    ``loss`` ``[]`` and ``terms`` (name -> ``[]``) detached; ``predictions`` ``[B, T]``
    (probabilities for binary tasks, values for regression); ``targets`` ``[B, T]``;
    ``extras`` the model's per-row extras.
    """

    loss: torch.Tensor
    terms: dict
    predictions: torch.Tensor
    targets: torch.Tensor
    extras: dict


@dataclass(frozen=True)
class LabelTask:
    """Label columns of a ranking or multi-task model, with types and loss weights."""

    label_names: tuple[str, ...]
    label_columns: tuple[int, ...]
    task_types: tuple[str, ...]
    weights: tuple[float, ...]
    aux_loss_weights: tuple[tuple[str, float], ...] = ()
    weighting: tuple[str, tuple[tuple[str, Any], ...]] = ("fixed", ())  # (name, options) of task.loss_weighting
    nested_labels: tuple[tuple[str, str], ...] = ()  # (inner, outer): inner = 1 needs outer = 1

    @classmethod
    def for_model(cls, model, schema: Schema, labels: Optional[Sequence[str]] = None,
                  weights: Optional[Sequence[float]] = None, aux_loss_weights: Optional[dict] = None,
                  weighting: Any = "fixed") -> "LabelTask":
        if model.task not in ("ranking", "multitask"):
            raise ConfigError(f"task '{model.task}' is not a label (binary / regression) task")
        if labels is None:
            num_tasks = getattr(model, "num_tasks", None)
            labels = schema.labels[:1] if model.task == "ranking" else schema.labels[:num_tasks]
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
        task_types = tuple(getattr(model, "task_types", None) or ["binary"] * len(labels))
        bad = [t for t in task_types if t not in TASK_TYPES]
        if bad or len(task_types) != len(labels):
            raise ConfigError(f"task_types {list(task_types)} must give one of {TASK_TYPES} per label "
                              f"{list(labels)}")
        aux = AuxiliaryLosses(aux_loss_weights)
        aux.check(getattr(model, "aux_loss_names", None))
        name, options = parse_weighting(weighting)
        shared = getattr(model, "last_shared_layer", lambda: None)()
        make_weighting({"name": name, **options}, weights, task_types, shared,
                       type(model).__name__)  # a bad choice fails here, before any process group
        nested = tuple((labels[inner], labels[outer]) for inner, outer in getattr(model, "nested_labels", ()))
        return cls(tuple(labels), tuple(schema.labels.index(n) for n in labels), task_types, weights,
                   tuple(aux.weights.items()), (name, tuple(sorted(options.items()))), nested)

    @classmethod
    def from_config(cls, model, schema: Schema, config: TaskConfig, data: Optional[DataConfig] = None) -> "LabelTask":
        return cls.for_model(model, schema, config.labels, config.loss_weights, config.aux_loss_weights,
                             config.loss_weighting)

    @property
    def binary_columns(self) -> list[str]:
        """The label columns read as 0/1 labels (the data layer checks their values)."""
        return [n for n, t in zip(self.label_names, self.task_types) if t == "binary"]

    def check_labels(self, table: pa.Table, path: str) -> None:
        """Raise a DataError naming ``path``, the column and the number of bad rows when a nested
        label is 1 where its outer label is 0 (the data layer calls this on every slice it reads;
        binary labels outside {0, 1} and NaN are its own checks, :mod:`bigrec.data.labels`)."""
        for inner, outer in self.nested_labels:
            bad = int(np.count_nonzero((table.column(inner).to_numpy() == 1) & (table.column(outer).to_numpy() != 1)))
            if bad:
                raise DataError(path, f"{bad} row(s) have {inner} = 1 where {outer} = 0 ({inner} must imply "
                                      f"{outer}: the model multiplies their probabilities)", column=inner)

    def wrap(self, model: nn.Module) -> "LabelModule":
        return LabelModule(model, self)

    def make_metrics(self, sharded_model: nn.Module, device: torch.device, split: str = "valid") -> LabelMetrics:
        return LabelMetrics(self.label_names, self.task_types, device)

    def epoch_passes(self, sharded_model: nn.Module, device: torch.device, epoch: int) -> list:
        return []  # nothing to prepare before an epoch

    def prediction_columns(self, step: LabelStep) -> dict[str, torch.Tensor]:
        """``score`` (one task) or ``score_<label>``, the model's per-row extras, and the labels."""
        columns: dict[str, torch.Tensor] = {}
        if len(self.label_names) == 1:
            columns["score"] = step.predictions[:, 0]
        else:
            columns.update({f"score_{n}": step.predictions[:, t] for t, n in enumerate(self.label_names)})
        columns.update({k: v for k, v in step.extras.items() if v.dim() >= 1 and v.shape[0] == step.targets.shape[0]})
        columns.update({n: step.targets[:, t] for t, n in enumerate(self.label_names)})
        return columns

    def targets(self, batch: Batch) -> torch.Tensor:
        """``[B, T]`` labels of this task."""
        return batch.labels[:, list(self.label_columns)]

    def per_task_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[B, T] x [B, T] -> [T]`` mean loss of each task (BCE or MSE by type)."""
        losses = []
        for t, kind in enumerate(self.task_types):
            if kind == "binary":
                losses.append(F.binary_cross_entropy_with_logits(logits[:, t], targets[:, t]))
            else:
                losses.append(F.mse_loss(logits[:, t], targets[:, t]))
        return torch.stack(losses)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` logits -> probabilities (binary) / values (regression)."""
        columns = [torch.sigmoid(logits[:, t]) if kind == "binary" else logits[:, t]
                   for t, kind in enumerate(self.task_types)]
        return torch.stack(columns, dim=1)


class LabelModule(nn.Module):
    """``model`` plus its loss, in the form TorchRec's pipelines drive.

    ``forward(batch) -> (loss [], LabelStep)``. ``weighting`` (an ``nn.Module`` of
    :mod:`bigrec.tasks.weighting`, trained with the model when it has parameters) maps
    the per-task losses ``[T]`` to one loss; multi-task runs log its weights as ``weight/<label>``.
    """

    def __init__(self, model: nn.Module, task: LabelTask) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.aux = AuxiliaryLosses(dict(task.aux_loss_weights))
        name, options = task.weighting
        self.weighting = make_weighting({"name": name, **dict(options)}, task.weights, task.task_types,
                                        getattr(model, "last_shared_layer", lambda: None)(), type(model).__name__)
        self.needs_shared_layer = self.weighting.needs_shared_layer
        self.one_task = model.task == "ranking"

    def forward(self, batch: Batch):
        output = self.model(batch)
        logits = output.logits
        if self.one_task:  # [B] -> [B, 1]; a static branch keeps this FX-traceable
            logits = logits.unsqueeze(1)
        targets = self.task.targets(batch)
        per_task = self.task.per_task_losses(logits, targets)
        shared = list(self.model.last_shared_layer().parameters()) if self.needs_shared_layer else []
        loss, weights = self.weighting(per_task, shared)
        terms = {f"loss/{name}": per_task[t].detach() for t, name in enumerate(self.task.label_names)}
        if not self.one_task:
            terms.update({f"weight/{name}": weights[t] for t, name in enumerate(self.task.label_names)})
        loss = self.aux.add(loss, output.aux_losses, terms)
        extras = {k: v.detach() for k, v in output.extras.items()}
        return loss, LabelStep(loss.detach(), terms, self.task.predictions(logits.detach()), targets, extras)
