"""Wide & Deep (Cheng et al., 2016): a sparse linear model and a deep MLP trained jointly."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.inputs import FirstOrder, FlatInput
from bigrec.models.layers import MLP
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model


@register_model("widedeep")
class WideDeep(RecModel):
    """``logit = wide(batch) + head(mlp(deep embeddings))``.

    The wide part is a linear model with one scalar weight per id of every wide
    feature (:class:`~bigrec.models.inputs.FirstOrder`: sparse ``_linear`` tables,
    sharded and trained like every table) plus a linear map of wide dense features.
    Give it cross-product columns (e.g. ``user_x_item``) to memorise id-level facts
    that the deep part, through low-dimensional embeddings, generalises away. The
    deep part concatenates the deep features' embeddings and dense columns
    (:class:`~bigrec.models.inputs.FlatInput`) into an MLP.

    Args:
        schema: data schema.
        wide_features: features of the linear part (default: every non-sequence id
            feature); ``[]`` drops the wide part (the deep-only ablation).
        deep_features: features of the deep part (default: every non-sequence
            feature); ``[]`` drops the deep part (a plain linear model).
        hidden_units: deep MLP layer sizes; a final 1-unit layer is added.
        dropout_rates: one rate or one per hidden layer.
        embedding_dim: D of the deep part's embeddings.
        activation: MLP activation.
        device: device of the embedding tables (``meta`` under sharding).

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``; ``wide(batch) -> [B]``.

    Example::

        model = WideDeep(schema, wide_features=["user_id", "item_id", "user_x_item"],
                         deep_features=["user_id", "item_id", "age"], hidden_units=[64, 32])
        logits = model(batch).logits  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, wide_features: Optional[Sequence[str]] = None,
                 deep_features: Optional[Sequence[str]] = None, hidden_units: Sequence[int] = (256, 128),
                 dropout_rates: float | Sequence[float] = 0.0, embedding_dim: int = 16, activation: str = "relu",
                 device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        if wide_features is None:
            wide_features = [f.name for f in schema.features if f.kind == "sparse"]
        wide_names, deep_names = self.resolve_features(wide_features), self.resolve_features(deep_features)
        if not wide_names and not deep_names:
            raise ConfigError("model WideDeep: wide_features and deep_features are both empty; give at least one")
        self.wide_part = FirstOrder(schema, wide_names, device=device) if wide_names else None
        self.deep_input = FlatInput(schema, deep_names, embedding_dim, device=device) if deep_names else None
        if self.deep_input is not None:
            self.mlp = MLP(self.deep_input.out_features, hidden_units, dropout_rates, activation)
            self.head = nn.Linear(self.mlp.out_features, 1)

    def wide(self, batch: Batch) -> torch.Tensor:
        """The wide (linear) part's logit ``[B]``; zeros without a wide part."""
        if self.wide_part is None:
            return batch.dense.new_zeros(batch.batch_size)
        return self.wide_part(batch)

    def forward(self, batch: Batch) -> ModelOutput:
        if self.deep_input is None:
            return ModelOutput(self.wide(batch))
        deep = self.head(self.mlp(self.deep_input(batch))).squeeze(1)
        return ModelOutput(deep if self.wide_part is None else deep + self.wide_part(batch))
