"""DCN-V2 (Wang et al., 2021): an explicit cross network beside a deep MLP."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torchrec.modules.crossnet import CrossNet, LowRankCrossNet, LowRankMixtureCrossNet, VectorCrossNet

from bigrec.batch import Batch
from bigrec.errors import ConfigError
from bigrec.features import Schema
from bigrec.models.base import RecModel
from bigrec.models.inputs import FieldInput
from bigrec.models.layers import MLP
from bigrec.models.output import ModelOutput
from bigrec.models.registry import register_model

CROSS_PARAMETERIZATIONS = ("vector", "matrix")


def make_cross_net(in_features: int, cross_num: int, cross_parameterization: str, low_rank: Optional[int],
                   num_experts: int, owner: str = "dcnv2") -> Optional[nn.Module]:
    """TorchRec's cross network for the DCN-V2 options (``owner`` names the model in errors).

    ``cross_num: 0`` gives no cross network (None): the model is its plain MLP, the
    ablation its cross layers are measured against.

    ``vector``: ``x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l`` (DCN, ``VectorCrossNet``);
    ``matrix``: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (``CrossNet``), with ``W_l = U_l V_l``
    of rank ``low_rank`` (``LowRankCrossNet``) or a gated mixture of ``num_experts``
    such low-rank experts (``LowRankMixtureCrossNet``).
    """
    if cross_parameterization not in CROSS_PARAMETERIZATIONS:
        raise ConfigError(f"{owner}: cross_parameterization must be one of {CROSS_PARAMETERIZATIONS}, "
                          f"got '{cross_parameterization}'")
    if cross_num < 0:
        raise ConfigError(f"{owner}: cross_num must be >= 0 (0: no cross network), got {cross_num}")
    if num_experts < 1:
        raise ConfigError(f"{owner}: num_experts must be >= 1, got {num_experts}")
    if cross_parameterization == "vector":
        if low_rank is not None or num_experts > 1:
            raise ConfigError(f"{owner}: low_rank / num_experts need cross_parameterization: matrix")
        return VectorCrossNet(in_features, cross_num) if cross_num else None
    if low_rank is None:
        if num_experts > 1:
            raise ConfigError(f"{owner}: num_experts > 1 needs low_rank (the mixture is of low-rank experts)")
        return CrossNet(in_features, cross_num) if cross_num else None
    if low_rank < 1:
        raise ConfigError(f"{owner}: low_rank must be >= 1, got {low_rank}")
    if not cross_num:
        return None
    if num_experts == 1:
        return LowRankCrossNet(in_features, cross_num, low_rank)
    return LowRankMixtureCrossNet(in_features, cross_num, num_experts, low_rank)


@register_model("dcnv2")
class DCNV2(RecModel):
    """DCN-V2, parallel structure: ``head([cross(x0), mlp(x0)])``.

    ``x0`` concatenates one D-dim embedding per id feature and, when the model
    reads dense features, their linear projection to one more D-dim field (as
    DLRM's dense arch does; raw counts would blow up through the multiplicative
    cross layers): ``[B, F' * D]``.

    Args:
        schema: data schema.
        features: feature names (default: every non-sequence feature).
        cross_num: number of cross layers (0: none, the plain-MLP ablation).
        cross_parameterization: ``vector`` (DCN) or ``matrix`` (DCN-V2).
        low_rank: rank of the matrix cross kernels (None: full rank).
        num_experts: low-rank experts mixed by a gate (needs ``low_rank``).
        hidden_units: deep MLP layer sizes.
        dropout_rates: one rate or one per hidden layer.
        embedding_dim: D, shared by all id features (fbgemm needs a multiple of 4).
        activation: MLP activation.
        device: device of the embedding tables (``meta`` under sharding); dense layers
            are built on the CPU and moved by ``DistributedModelParallel``.

    Shapes: ``forward(batch) -> ModelOutput(logits [B])``.

    Example::

        model = DCNV2(schema, cross_num=3, cross_parameterization="matrix", low_rank=64,
                      hidden_units=[256, 128], embedding_dim=16)
        logits = model(batch).logits  # [B]
    """

    task = "ranking"

    def __init__(self, schema: Schema, features: Optional[Sequence[str]] = None, cross_num: int = 2,
                 cross_parameterization: str = "matrix", low_rank: Optional[int] = None, num_experts: int = 1,
                 hidden_units: Sequence[int] = (256, 128), dropout_rates: float | Sequence[float] = 0.0,
                 embedding_dim: int = 16, activation: str = "relu", device: Optional[torch.device] = None) -> None:
        super().__init__(schema)
        self.fields = FieldInput(schema, self.resolve_features(features), embedding_dim, device=device)
        in_features = self.fields.num_fields * embedding_dim
        self.cross = make_cross_net(in_features, cross_num, cross_parameterization, low_rank, num_experts,
                                    owner=self.registry_name)
        self.mlp = MLP(in_features, hidden_units, dropout_rates, activation)
        self.head = nn.Linear((in_features if self.cross is not None else 0) + self.mlp.out_features, 1)

    def forward(self, batch: Batch) -> ModelOutput:
        x0 = self.fields(batch).flatten(1)  # [B, F' * D]
        deep = self.mlp(x0)
        return ModelOutput(self.head(deep if self.cross is None else torch.cat([self.cross(x0), deep], dim=1))
                           .squeeze(1))
