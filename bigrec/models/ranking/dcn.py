"""DCN (Wang et al., 2017): vector cross layers beside a deep MLP."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from bigrec.features import Schema
from bigrec.models.ranking.dcnv2 import DCNV2
from bigrec.models.registry import register_model


@register_model("dcn")
class DCN(DCNV2):
    """Deep & Cross Network: ``head([cross(x0), mlp(x0)])`` with the original vector cross layers.

    Each cross layer is ``x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l`` (TorchRec's
    ``VectorCrossNet``): ``cross_num`` layers represent every polynomial of degree up to
    ``cross_num + 1`` in the entries of ``x_0`` with ``O(cross_num * F' * D)`` weights,
    where a plain MLP has to approximate the products. This is DCN-V2's parallel
    structure with ``cross_parameterization: vector``; ``x0`` is built the same way
    (one D-dim field per id feature, dense features projected to one more field).

    Args:
        schema: data schema.
        features: feature names (default: every non-sequence feature).
        cross_num: number of cross layers (0: none, the plain-MLP ablation).
        hidden_units: deep MLP layer sizes.
        dropout_rates: one rate or one per hidden layer.
        embedding_dim: D, shared by all fields.
        activation: MLP activation.
        device: device of the embedding tables (``meta`` under sharding).

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``.

    Example::

        model = DCN(schema, cross_num=3, hidden_units=[256, 128], embedding_dim=16)
        logits = model(batch).logits  # [B]
    """

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None, cross_num: int = 2,
                 hidden_units: Sequence[int] = (256, 128), dropout_rates: float | Sequence[float] = 0.0,
                 embedding_dim: int = 16, activation: str = "relu", device: Optional[torch.device] = None) -> None:
        super().__init__(schema, features=features, cross_num=cross_num, cross_parameterization="vector",
                         hidden_units=hidden_units, dropout_rates=dropout_rates, embedding_dim=embedding_dim,
                         activation=activation, device=device)
