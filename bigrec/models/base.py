"""The interface every model of the zoo implements."""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema


class RecModel(nn.Module):
    """Base class of bigrec models.

    A model declares its ``task`` (``ranking``, ``multitask`` or ``retrieval``);
    the trainer derives the loss, metrics and checkpoint contents from it, so no
    model needs a branch of its own in the trainer.

    Every constructor has the shape ``Model(schema, *, <reference parameters>,
    device=None)``; ``features`` defaults to all non-sequence features of the
    schema. ``device`` is where the embedding tables are created (``meta`` under
    sharding). Dense layers may be built there too only if their module has
    ``reset_parameters`` (DMP re-initialises meta modules through it; ``build_model``
    checks this); otherwise build them on the CPU and let DMP move them.

    ``forward(batch)`` returns logits: ``[B]`` for ranking, ``[B, T]`` for multi-task.
    """

    task: ClassVar[str] = "ranking"

    def __init__(self, schema: Schema) -> None:
        super().__init__()
        self.schema = schema

    def forward(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def resolve_features(self, features: Optional[Sequence[str]]) -> list[str]:
        """Check ``features`` against the schema (default: all non-sequence features)."""
        if features is None:
            return [f.name for f in self.schema.features if f.kind != "sequence"]
        missing = [n for n in features if n not in self.schema]
        if missing:
            raise ConfigError(f"model {type(self).__name__}: feature(s) {missing} are not in the schema; "
                              f"known features: {[f.name for f in self.schema.features]}")
        return list(features)
