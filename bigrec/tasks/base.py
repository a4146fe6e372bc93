"""The task protocol: what the trainer, evaluation and predict need from a task.

A task turns a model's output (:mod:`bigrec.models.output`) into a loss, metrics and
predictions. The trainer holds no branch per task kind: it calls these methods only.

* ``wrap(model) -> nn.Module`` whose ``forward(batch)`` returns ``(loss, step)``:
  ``loss`` is the scalar to back-propagate, ``step`` a tuple whose first two
  entries are the detached loss and a dict of detached named loss terms (each
  task's loss, each auxiliary loss) -- the form TorchRec's train pipelines drive;
* ``make_metrics(sharded_model, device, split)`` -> :class:`Metrics` for evaluating
  ``split`` (``valid``, ``test``; the retrieval task excludes what users saw before it);
* ``prediction_columns(step) -> {column: [B] or [B, k] tensor}`` what ``bigrec
  predict`` writes for each row;
* ``epoch_passes(sharded_model, device, epoch) -> [(split, Metrics)]``: evaluation-mode
  passes the trainer runs before training ``epoch`` (each split's batches fed to its
  ``Metrics``, then ``compute()``), e.g. the retrieval task's offline hard-negative
  mining; most tasks return none. Not run when a resume starts mid-epoch: what they
  prepare must live in checkpointed state.
* optionally ``check_labels(table, path)``: raises a DataError for label values the
  task cannot take; the data stream calls it on every slice it reads (so with
  ``data.validate`` every row is checked before any process group exists).
"""

from __future__ import annotations

from typing import Mapping, Optional, Protocol

import torch
from torch import nn

from bigrec.errors import ConfigError


class Metrics(Protocol):
    """Accumulates evaluation steps; ``compute()`` is collective over all ranks."""

    def update(self, step: tuple) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task(Protocol):
    """See the module docstring."""

    def wrap(self, model: nn.Module) -> nn.Module: ...

    def make_metrics(self, sharded_model: nn.Module, device: torch.device, split: str = "valid") -> Metrics: ...

    def prediction_columns(self, step: tuple) -> dict[str, torch.Tensor]: ...

    def epoch_passes(self, sharded_model: nn.Module, device: torch.device, epoch: int) -> list[tuple[str, Metrics]]: ...


class AuxiliaryLosses:
    """Adds a model's named auxiliary losses to the task loss with configured weights.

    ``weights``: name -> weight (``task.aux_loss_weights``); unnamed losses weigh 1.0.
    """

    def __init__(self, weights: Optional[Mapping[str, float]] = None) -> None:
        self.weights = {str(k): float(v) for k, v in (weights or {}).items()}

    def add(self, loss: torch.Tensor, aux_losses: Mapping[str, torch.Tensor],
            terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``loss + sum_name w_name * aux[name]``; records each aux loss in ``terms`` (detached)."""
        for name, value in aux_losses.items():
            terms[f"aux/{name}"] = value.detach()
            loss = loss + self.weights.get(name, 1.0) * value
        return loss

    def check(self, known: Optional[list[str]]) -> None:
        """Weights for losses a model never produces are config typos."""
        if known is None:
            return
        unknown = sorted(set(self.weights) - set(known))
        if unknown:
            raise ConfigError(f"task.aux_loss_weights names {unknown}, but the model's auxiliary losses are "
                              f"{sorted(known)}")
