"""The interface every model of the zoo implements."""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.output import ModelOutput


class RecModel(nn.Module):
    """Base class of bigrec models.

    A model declares its ``task`` (``ranking``, ``multitask`` or ``retrieval``);
    :func:`bigrec.tasks.build_task` picks the loss, metrics and predictions from it,
    so no model needs a branch of its own in the trainer. A model imports only the
    schema, the batch, :mod:`bigrec.models` blocks and TorchRec, never the task, the
    training loop or the sharding code.

    Every constructor has the shape ``Model(schema, *, <reference parameters>,
    device=None)``; ``features`` defaults to all non-sequence features of the
    schema. ``device`` is where the embedding tables are created (``meta`` under
    sharding); dense layers are always built on the CPU and moved by DMP
    (``build_model`` checks that no dense parameter is left on the meta device).

    ``forward(batch)`` returns a :class:`~bigrec.models.output.ModelOutput`: logits
    ``[B]`` for ranking, ``[B, T]`` for multi-task (multi-task models also set
    ``num_tasks`` and ``task_types``), plus named auxiliary losses and extras. A model
    with auxiliary losses lists their names in ``aux_loss_names`` so configs naming
    others fail early. Recall models (:class:`~bigrec.models.recall.RecallModel`)
    return a :class:`~bigrec.models.output.RecallOutput`.
    """

    task: ClassVar[str] = "ranking"
    aux_loss_names: ClassVar[tuple[str, ...]] = ()
    # (inner, outer) task indices whose labels nest: inner = 1 needs outer = 1 (ESMM: conversion implies click)
    nested_labels: ClassVar[tuple[tuple[int, int], ...]] = ()

    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.schema = schema

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def last_shared_layer(self) -> Optional[nn.Module]:
        """The last layer whose parameters every task's loss reaches (multi-task models), or None.

        GradNorm (:mod:`bigrec.tasks.weighting`) measures each task's gradient norm on its
        parameters, as the paper does on "the last shared layer of weights".
        """
        return None

    def resolve_features(self, features: Optional[Sequence[str]]) -> list[str]:
        """Check ``features`` against the schema (default: all non-sequence features)."""
        if features is None:
            return [f.name for f in self.schema.features if f.kind != "sequence"]
        missing = [n for n in features if n not in self.schema]
        if missing:
            raise ConfigError(f"model {type(self).__name__}: feature(s) {missing} are not in the schema; "
                              f"known features: {[f.name for f in self.schema.features]}")
        return list(features)
